//! Extracting layers into a Rootfs: whiteouts, opaque directories, replacement rules,
//! metadata, and entries that try to leave the root.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{rootfs, Layer};
use layerize_sandbox::Rootfs;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn lower() -> Vec<u8> {
    Layer::new()
        .dir("etc", 0o755)
        .file("etc/keep", 0o644, b"keep")
        .file("etc/gone", 0o644, b"gone")
        .dir("etc/dir", 0o755)
        .file("etc/dir/child", 0o644, b"c")
        .dir("opq", 0o755)
        .file("opq/lower", 0o644, b"l")
        .dir("opq/sub", 0o755)
        .file("opq/sub/lower", 0o644, b"l")
        .finish()
}

#[test]
fn whiteouts_remove_lower_files_and_directories() {
    let upper = Layer::new()
        .file("etc/.wh.gone", 0o644, b"")
        .file("etc/.wh.dir", 0o644, b"")
        .file("etc/.wh.never-existed", 0o644, b"")
        .finish();
    let fs = rootfs(&[lower(), upper]);
    let root = fs.path();
    assert!(root.join("etc/keep").exists());
    assert!(!root.join("etc/gone").exists());
    assert!(!root.join("etc/dir").exists());
    assert!(!root.join("etc/.wh.gone").exists());
}

/// A layer that whites out `etc/dir` and has an `etc/dir` of its own, its whiteout before or
/// after its entries: the lower layer's `etc/dir/child` is gone, the layer's own files stay.
fn whiteout_and_own_dir(whiteout_first: bool) -> Vec<u8> {
    let mut layer = Layer::new();
    if whiteout_first {
        layer = layer.file("etc/.wh.dir", 0o644, b"");
    }
    layer = layer
        .dir("etc/dir", 0o750)
        .file("etc/dir/new", 0o644, b"n")
        .file("etc/.wh.gone", 0o644, b"");
    if !whiteout_first {
        layer = layer.file("etc/.wh.dir", 0o644, b"");
    }
    layer.finish()
}

#[test]
fn a_whiteout_hides_only_the_lower_layers_path_not_the_layer_s_own_whatever_the_order() {
    for whiteout_first in [true, false] {
        let fs = rootfs(&[lower(), whiteout_and_own_dir(whiteout_first)]);
        let root = fs.path();
        let context = format!("whiteout first: {whiteout_first}");
        assert!(!root.join("etc/dir/child").exists(), "{context}");
        assert!(!root.join("etc/gone").exists(), "{context}");
        assert_eq!(
            std::fs::read(root.join("etc/dir/new")).unwrap(),
            b"n",
            "{context}"
        );
        let mode = std::fs::metadata(root.join("etc/dir")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750, "{context}");
        assert!(root.join("etc/keep").exists(), "{context}");
    }
}

/// The same through overlayfs, from layer directories, as a step's overlay root stacks them.
#[test]
fn stacked_layer_directories_show_what_extracting_in_turn_gives() {
    if !is_root() {
        // Layer directories keep owners and overlay whiteouts, which only root can set.
        let dest = tempfile::tempdir().unwrap();
        let made = layerize_sandbox::make_layer_dir(&lower()[..], &dest.path().join("d"));
        assert!(made.is_err());
        return;
    }
    for whiteout_first in [true, false] {
        let scratch = tempfile::tempdir().unwrap();
        let dir = |name: &str, layer: Vec<u8>| {
            let path = scratch.path().join(name);
            layerize_sandbox::make_layer_dir(&layer[..], &path).unwrap();
            path
        };
        let (bottom, top) = (
            dir("bottom", lower()),
            dir("top", whiteout_and_own_dir(whiteout_first)),
        );
        let mounted = scratch.path().join("mnt");
        std::fs::create_dir(&mounted).unwrap();
        let options = format!("lowerdir={}:{}", top.display(), bottom.display());
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (source, target) = (c("overlay"), c(mounted.to_str().unwrap()));
        let (kind, data) = (c("overlay"), c(&options));
        // SAFETY: valid C strings; the mount is undone below.
        let status = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                libc::MS_RDONLY,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(status, 0, "mount: {}", std::io::Error::last_os_error());
        let seen = (
            mounted.join("etc/dir/child").exists(),
            mounted.join("etc/gone").exists(),
            std::fs::read(mounted.join("etc/dir/new")).ok(),
            mounted.join("etc/keep").exists(),
        );
        // SAFETY: the mount made above.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let context = format!("whiteout first: {whiteout_first}");
        assert_eq!(seen, (false, false, Some(b"n".to_vec()), true), "{context}");
    }
}

/// A layer directory starts empty, so only the layer's own earlier entries can stand where an
/// entry goes: each path holds its last entry, with that entry's metadata.
#[test]
fn a_layer_directory_holds_the_last_entry_of_each_path_the_layer_names_twice() {
    let layer = Layer::new()
        .file("x", 0o644, b"a file first")
        .dir("x", 0o750)
        .file("x/y", 0o600, b"y")
        .file("f", 0o644, b"one")
        .file_owned("f", 0o4755, 1000, 50, b"two")
        .dir("d", 0o755)
        .file("d/inner", 0o644, b"inner")
        .symlink("d", "x")
        .symlink("s", "nowhere")
        .file("s", 0o640, b"real")
        .hardlink("h", "x/y")
        .file("h", 0o644, b"own")
        .finish();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("layer");
    let made = layerize_sandbox::make_layer_dir(&layer[..], &dir);
    if !is_root() {
        // A layer directory keeps owners, which only root can set.
        assert!(made.is_err());
        return;
    }
    made.unwrap();
    let meta = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap();
    assert!(meta("x").is_dir());
    assert_eq!(meta("x").mode() & 0o7777, 0o750);
    assert_eq!(std::fs::read(dir.join("x/y")).unwrap(), b"y");
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"two");
    assert_eq!(meta("f").mode() & 0o7777, 0o4755);
    assert_eq!((meta("f").uid(), meta("f").gid()), (1000, 50));
    assert_eq!(meta("f").mtime(), common::MTIME as i64);
    assert_eq!(std::fs::read_link(dir.join("d")).unwrap(), Path::new("x"));
    assert!(meta("s").is_file());
    assert_eq!(std::fs::read(dir.join("s")).unwrap(), b"real");
    assert_eq!(meta("s").mode() & 0o7777, 0o640);
    // The file replacing the hard link is a new inode: its target keeps its content.
    assert_eq!(std::fs::read(dir.join("h")).unwrap(), b"own");
    assert_ne!(meta("h").ino(), meta("x/y").ino());
    assert_eq!(std::fs::read(dir.join("x/y")).unwrap(), b"y");
}

#[test]
fn opaque_directories_hide_lower_content_but_not_their_own_whatever_the_order() {
    for marker_first in [true, false] {
        let mut upper = Layer::new();
        if marker_first {
            upper = upper.file("opq/.wh..wh..opq", 0o644, b"");
        }
        upper = upper
            .file("opq/new", 0o644, b"n")
            .dir("opq/sub", 0o750)
            .file("opq/sub/new", 0o644, b"n");
        if !marker_first {
            upper = upper.file("opq/.wh..wh..opq", 0o644, b"");
        }
        let fs = rootfs(&[lower(), upper.finish()]);
        let root = fs.path();
        assert!(
            !root.join("opq/lower").exists(),
            "marker first: {marker_first}"
        );
        assert!(
            !root.join("opq/sub/lower").exists(),
            "marker first: {marker_first}"
        );
        assert_eq!(std::fs::read(root.join("opq/new")).unwrap(), b"n");
        assert_eq!(std::fs::read(root.join("opq/sub/new")).unwrap(), b"n");
        let sub_mode = std::fs::metadata(root.join("opq/sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(sub_mode & 0o7777, 0o750);
        assert!(!root.join("opq/.wh..wh..opq").exists());
    }
}

#[test]
fn entries_replace_what_is_at_their_path() {
    let upper = Layer::new()
        // A dir over a dir keeps its children and takes the new mode.
        .dir("etc/dir", 0o700)
        // A file over a dir replaces the dir.
        .file("opq", 0o600, b"now a file")
        // A dir over a file replaces the file.
        .dir("etc/keep", 0o755)
        // A symlink over a file.
        .symlink("etc/gone", "keep")
        .finish();
    let fs = rootfs(&[lower(), upper]);
    let root = fs.path();
    assert!(root.join("etc/dir/child").exists());
    assert_eq!(
        std::fs::metadata(root.join("etc/dir")).unwrap().mode() & 0o7777,
        0o700
    );
    assert_eq!(std::fs::read(root.join("opq")).unwrap(), b"now a file");
    assert!(std::fs::symlink_metadata(root.join("etc/keep"))
        .unwrap()
        .is_dir());
    assert_eq!(
        std::fs::read_link(root.join("etc/gone")).unwrap(),
        Path::new("keep")
    );
}

#[test]
fn metadata_hardlinks_and_xattrs() {
    let layer = Layer::new()
        .dir("usr", 0o755)
        .file("usr/suid", 0o4755, b"s")
        .dir("usr/sticky", 0o1777)
        .file_owned("usr/owned", 0o640, 1000, 50, b"o")
        .hardlink("usr/again", "usr/owned")
        .file_with_xattr("usr/tagged", "user.layerize", b"yes")
        .finish();
    let fs = rootfs(&[layer]);
    let root = fs.path();
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(meta("usr/suid").mode() & 0o7777, 0o4755);
    assert_eq!(meta("usr/sticky").mode() & 0o7777, 0o1777);
    assert_eq!(meta("usr/owned").mode() & 0o7777, 0o640);
    assert_eq!(meta("usr/owned").mtime(), common::MTIME as i64);
    assert_eq!(meta("usr/again").ino(), meta("usr/owned").ino());
    if is_root() {
        assert_eq!(
            (meta("usr/owned").uid(), meta("usr/owned").gid()),
            (1000, 50)
        );
    }
    let name = std::ffi::CString::new("user.layerize").unwrap();
    let path = std::ffi::CString::new(root.join("usr/tagged").to_str().unwrap()).unwrap();
    let mut value = [0u8; 16];
    // SAFETY: valid strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(&value[..n.max(0) as usize], b"yes");
}

#[test]
fn dotdot_entries_are_refused_with_the_entry_named() {
    let parent = tempfile::tempdir().unwrap();
    let mut fs = Rootfs::new_in(parent.path()).unwrap();
    let layer = Layer::new().raw_file(b"../escaped-dotdot", b"x").finish();
    let err = fs.apply_layer(&layer[..]).unwrap_err().to_string();
    assert!(
        err.contains("../escaped-dotdot") && err.contains("`..`"),
        "{err}"
    );
    assert!(!parent.path().join("escaped-dotdot").exists());
    let listing: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert_eq!(listing.len(), 1, "only the rootfs itself is in its parent");
}

#[test]
fn symlinked_parents_resolve_inside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let mut fs = Rootfs::new_in(parent.path()).unwrap();
    let outside = parent.path().join("etc");
    let layer = Layer::new()
        .symlink("a", "/")
        .symlink("up", "../../../../../..")
        .dir("etc", 0o755)
        .file("a/etc/x", 0o644, b"through a")
        .file("up/etc/y", 0o644, b"through up")
        .hardlink("a/etc/z", "up/etc/x")
        .finish();
    fs.apply_layer(&layer[..]).unwrap();
    let root = fs.path();
    assert_eq!(std::fs::read(root.join("etc/x")).unwrap(), b"through a");
    assert_eq!(std::fs::read(root.join("etc/y")).unwrap(), b"through up");
    assert_eq!(std::fs::read(root.join("etc/z")).unwrap(), b"through a");
    assert!(!outside.exists());
    // The final component is never followed: an entry replaces the symlink itself.
    let over = Layer::new().file("a", 0o644, b"plain").finish();
    fs.apply_layer(&over[..]).unwrap();
    assert_eq!(std::fs::read(fs.path().join("a")).unwrap(), b"plain");
}

/// A directory resolved for one entry is no longer one once replaced by a symlink: the entries
/// after it resolve through the symlink inside the root, never through a remembered path that
/// the host's kernel would follow out of it. In a written root and in a layer directory.
#[test]
fn a_directory_replaced_by_a_symlink_is_resolved_again_for_the_entries_after_it() {
    let parent = tempfile::tempdir().unwrap();
    let outside = parent.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let layer = Layer::new()
        .dir("d", 0o755)
        .file("d/first", 0o644, b"1")
        .file("sub/deep/first", 0o644, b"1")
        .symlink("d", outside.to_str().unwrap())
        .symlink("sub", outside.to_str().unwrap())
        .file("d/second", 0o644, b"2")
        .file("sub/deep/second", 0o644, b"2")
        .finish();
    let inside = |root: &Path, name: &str| {
        let below = outside.strip_prefix("/").unwrap().join(name);
        std::fs::read(root.join(below)).ok()
    };
    let mut fs = Rootfs::new_in(parent.path()).unwrap();
    fs.apply_layer(&layer[..]).unwrap();
    assert_eq!(inside(fs.path(), "second"), Some(b"2".to_vec()));
    assert_eq!(inside(fs.path(), "deep/second"), Some(b"2".to_vec()));
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    if is_root() {
        let dir = parent.path().join("layer");
        layerize_sandbox::make_layer_dir(&layer[..], &dir).unwrap();
        assert_eq!(inside(&dir, "second"), Some(b"2".to_vec()));
        assert_eq!(inside(&dir, "deep/second"), Some(b"2".to_vec()));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}

#[test]
fn read_only_directories_are_removed_on_drop() {
    let fs = rootfs(&[Layer::new()
        .dir("ro", 0o555)
        .dir("ro/inner", 0o500)
        .finish()]);
    let path = fs.path().to_path_buf();
    std::fs::write(path.join("ro/inner/../inner").join("../../marker"), b"m").unwrap();
    drop(fs);
    assert!(!path.exists());
}

#[test]
fn a_root_removed_in_the_background_is_gone_once_its_handle_is_dropped() {
    let parent = tempfile::tempdir().unwrap();
    let mut fs = Rootfs::new_in(parent.path()).unwrap();
    fs.apply_layer(&lower()[..]).unwrap();
    let root = fs.path().to_path_buf();
    // A directory a step left read-only must not keep the removal from finishing.
    std::fs::set_permissions(root.join("etc/dir"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let removal = fs.remove_in_background();
    drop(removal);
    assert!(!root.exists(), "{} is still there", root.display());
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}

/// A whiteout of `..`, `.` or nothing is refused, extracted into a root or into a layer
/// directory, and the files beside the root are still there.
#[test]
fn whiteouts_of_dot_dotdot_or_nothing_are_refused() {
    for name in [&b".wh..."[..], b"sub/.wh...", b".wh..", b".wh."] {
        let parent = tempfile::tempdir().unwrap();
        let beside = parent.path().join("beside");
        std::fs::write(&beside, b"keep").unwrap();
        let layer = Layer::new().dir("sub", 0o755).raw_file(name, b"").finish();
        let mut fs = Rootfs::new_in(parent.path()).unwrap();
        let err = fs.apply_layer(&layer[..]).unwrap_err().to_string();
        assert!(err.contains("a whiteout of no file"), "{err}");
        if is_root() {
            let dest = parent.path().join("layer-dir");
            let err = layerize_sandbox::make_layer_dir(&layer[..], &dest).unwrap_err();
            assert!(err.to_string().contains("a whiteout of no file"), "{err}");
        }
        assert_eq!(std::fs::read(&beside).unwrap(), b"keep");
    }
}

#[test]
fn parents_a_layer_leaves_out_are_0755_whatever_the_umask() {
    let layer = Layer::new()
        .file("opt/tool/bin/run", 0o755, b"#!/bin/sh\n")
        .finish();
    // SAFETY: umask cannot fail; every other test here sets the modes it checks.
    let umask = unsafe { libc::umask(0o077) };
    let fs = rootfs(&[layer]);
    unsafe { libc::umask(umask) };
    for dir in ["opt", "opt/tool", "opt/tool/bin"] {
        let mode = std::fs::metadata(fs.path().join(dir)).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{dir}");
    }
}

#[test]
fn an_overlay_that_does_not_mount_fails_as_a_mount_error_before_the_step_runs() {
    if !is_root() {
        // Overlay roots are only made as root, which `overlay_available` says.
        assert!(layerize_sandbox::overlay_available(Path::new("/tmp"), Path::new("/tmp")).is_err());
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    layerize_sandbox::overlay_available(scratch.path(), scratch.path())
        .expect("overlays mount here");
    let lowers: Vec<_> = ["bottom", "top"]
        .iter()
        .map(|name| {
            let dir = scratch.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            dir
        })
        .collect();
    let mut rootfs = Rootfs::overlay_in(scratch.path(), lowers.clone()).unwrap();
    // Gone between making the root and running the step (what a lease keeps `cache clean`
    // from doing): the mount fails, and says so as its own kind of error.
    std::fs::remove_dir(&lowers[1]).unwrap();
    let step = layerize_sandbox::Step {
        argv: vec!["/bin/true".into()],
        env: Vec::new(),
        workdir: "/".into(),
        user: None,
        network: false,
    };
    let ran = layerize_sandbox::run(
        &mut rootfs,
        &step,
        layerize_sandbox::Mode::Namespaces,
        &mut |_| {},
    );
    assert!(
        matches!(
            ran,
            Err(layerize_sandbox::SandboxError::OverlayMount { .. })
        ),
        "{:?}",
        ran.map(|_| ())
    );
}
