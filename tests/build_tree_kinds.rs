//! End-to-end: the tree kinds beyond files, directories and links. A Debian root filesystem
//! directory made by mmdebstrap, `/dev` nodes included, through `--dir`; sockets and whiteout
//! names inside `--dir` trees; file capabilities from a GNU tar `--xattrs` archive through
//! `--tar`. Images are built on an empty base (`umoci new`) into OCI layouts and checked with
//! podman (pull + image mount), `stat`, `chroot`, GNU tar and `getcap`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use support::images;
use support::layerize::{built_layers, error_line, read_report, run_err, run_ok};
use support::podman::PulledImage;
use support::{scratch_dir, tools};

/// `oci:OUT/out:TAG`.
fn target_ref(out: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", out.join("out").display())
}

/// Builds one layer of `inputs` (layer flags) on an empty base into `target`; returns stderr and
/// the path of the built layer's blob.
fn build_on_empty_base(out: &Path, tag: &str, inputs: &[String]) -> (String, std::path::PathBuf) {
    let base = images::empty_layout();
    let report = out.join(format!("{tag}.json"));
    let output = run_ok(
        support::layerize!()
            .args(["build", "--base", &base.reference()])
            .args(["--target", &target_ref(out, tag)])
            .args(inputs)
            .arg("--report")
            .arg(&report),
    );
    let report = read_report(&report);
    let built = built_layers(&report);
    assert_eq!(built.len(), 1, "{report}");
    let digest = built[0]["digest"].as_str().expect("a layer digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let blob = out.join("out/blobs/sha256").join(hex);
    (String::from_utf8_lossy(&output.stderr).into_owned(), blob)
}

/// `stat -c FORMAT PATH`, without following a symlink.
fn stat(format: &str, path: &Path) -> String {
    let output = tools::run(tools::command("stat").arg("-c").arg(format).arg(path));
    output.trim_end().to_owned()
}

#[test]
fn an_mmdebstrap_rootfs_directory_keeps_its_device_nodes() {
    let rootfs = images::debian_rootfs_dir();
    let out = scratch_dir();
    build_on_empty_base(
        out.path(),
        "rootfs",
        &[format!("--dir={}:/", rootfs.display())],
    );

    let image = PulledImage::pull(&target_ref(out.path(), "rootfs"), None);
    let root = image.root();
    // Major and minor in hex, as stat prints them.
    assert_eq!(
        stat("%F %t:%T %a", &root.join("dev/null")),
        "character special file 1:3 666"
    );
    assert_eq!(
        stat("%F %t:%T", &root.join("dev/console")),
        "character special file 5:1"
    );
    // Every entry of the rootfs's /dev as mmdebstrap made it: kind, permission bits, numbers,
    // link targets.
    let mut compared = 0;
    for entry in std::fs::read_dir(rootfs.join("dev")).expect("read the rootfs's /dev") {
        let entry = entry.expect("a /dev entry");
        let format = "%F %a %t:%T %N";
        let name = entry.file_name();
        let made = stat(format, &entry.path());
        let seen = stat(format, &root.join("dev").join(&name));
        let made = made.replace(&*rootfs.to_string_lossy(), "");
        let seen = seen.replace(&*root.to_string_lossy(), "");
        assert_eq!(seen, made, "/dev/{}", name.to_string_lossy());
        compared += 1;
    }
    assert!(
        compared >= 10,
        "mmdebstrap made only {compared} /dev entries"
    );
    image.chroot_run(&["/bin/sh", "-c", "true"]);
    assert_eq!(
        image.chroot_run(&[
            "/bin/sh",
            "-c",
            "readlink /bin; head -c 3 /dev/zero | wc -c"
        ]),
        "usr/bin\n3\n"
    );
}

#[test]
fn sockets_in_a_dir_are_skipped_with_a_warning_naming_them() {
    let tree = scratch_dir();
    let app = tree.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("config"), "port=1\n").unwrap();
    let socket = app.join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());

    let out = scratch_dir();
    let (stderr, blob) = build_on_empty_base(
        out.path(),
        "sockets",
        &[format!("--dir={}:/srv", tree.path().display())],
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("socket ignored") && warnings[0].contains(&*socket.to_string_lossy()),
        "{stderr}"
    );
    let listing = tools::run(tools::command("tar").arg("-tzf").arg(&blob));
    assert_eq!(listing, "srv/\nsrv/app/\nsrv/app/config\n");
}

#[test]
fn whiteout_names_in_a_dir_are_refused_naming_the_host_file() {
    let tree = scratch_dir();
    std::fs::create_dir(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let whiteout = tree.path().join("etc/.wh.passwd");
    std::fs::write(&whiteout, "").unwrap();

    let base = images::empty_layout();
    let out = scratch_dir();
    let stderr = run_err(
        support::layerize!()
            .args(["build", "--base", &base.reference()])
            .args(["--target", &target_ref(out.path(), "refused")])
            .arg(format!("--dir={}:/", tree.path().display())),
    );
    assert_eq!(
        error_line(&stderr),
        format!(
            "error: layer-1: {}: a host directory cannot hold whiteout names (`.wh.*`), which would \
             delete base files; use --delete or --opaque",
            whiteout.display()
        )
    );
    let target = target_ref(out.path(), "refused");
    let inspect = tools::output(tools::command("skopeo").arg("inspect").arg(&target));
    assert!(!inspect.status.success(), "a refused build wrote {target}");
    let blobs = std::fs::read_dir(out.path().join("out/blobs/sha256"))
        .map(|dir| dir.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "a refused build wrote blobs");
}

#[test]
fn file_capabilities_from_a_gnu_tar_reach_the_image() {
    let tree = scratch_dir();
    let bin = tree.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    // The second capability set is stored with a newline byte (0x0a) in its value.
    let capabilities = [
        ("pinger", "cap_net_raw=ep"),
        ("owner", "cap_dac_override,cap_fowner=ep"),
    ];
    for (name, capability) in capabilities {
        std::fs::write(bin.join(name), "#!/bin/sh\n").unwrap();
        tools::run(tools::command("setcap").arg(capability).arg(bin.join(name)));
    }
    let archive = tree.path().join("caps.tar");
    tools::run(
        tools::command("tar")
            .args(["--xattrs", "--format=posix", "-C"])
            .arg(tree.path())
            .arg("-cf")
            .arg(&archive)
            .arg("usr"),
    );

    let out = scratch_dir();
    build_on_empty_base(
        out.path(),
        "caps",
        &[format!("--tar={}", archive.display())],
    );
    let image = PulledImage::pull(&target_ref(out.path(), "caps"), None);
    for (name, capability) in capabilities {
        let file = image.root().join("usr/local/bin").join(name);
        assert_eq!(
            tools::run(tools::command("getcap").arg(&file)),
            format!("{} {capability}\n", file.display())
        );
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o644);
    }
}
