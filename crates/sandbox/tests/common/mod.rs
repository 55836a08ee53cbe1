//! Test layers built in memory (tar crate) and a tiny static rootfs: the host's busybox with
//! its applets as symlinks, /etc/passwd and /etc/group with root and `app` (1000).

#![allow(dead_code)] // each test binary uses its own part of the helpers

use layerize_sandbox::{Change, ChangeKind, Changes, Mode, Output, Rootfs, RunOutcome, Step};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_700_000_000;

/// An uncompressed layer tar, entry by entry.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    pub fn dir(self, path: &str, mode: u32) -> Layer {
        self.dir_owned(path, mode, 0, 0)
    }

    pub fn dir_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Layer {
        let mut h = Self::header(EntryType::Directory, mode, uid, gid, 0);
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn file(self, path: &str, mode: u32, content: &[u8]) -> Layer {
        self.file_owned(path, mode, 0, 0, content)
    }

    pub fn file_owned(
        mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        content: &[u8],
    ) -> Layer {
        let mut h = Self::header(EntryType::Regular, mode, uid, gid, content.len() as u64);
        self.builder.append_data(&mut h, path, content).unwrap();
        self
    }

    /// A file with pax xattrs (`SCHILY.xattr.NAME`).
    pub fn file_with_xattr(mut self, path: &str, name: &str, value: &[u8]) -> Layer {
        let key = format!("SCHILY.xattr.{name}");
        self.builder
            .append_pax_extensions([(key.as_str(), value)])
            .unwrap();
        self.file(path, 0o644, b"x")
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        let mut h = Self::header(EntryType::Symlink, 0o777, 0, 0, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Layer {
        let mut h = Self::header(EntryType::Link, 0o644, 0, 0, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    /// An entry whose name is written raw into the header (no validation by the tar crate),
    /// for names like `../x`.
    pub fn raw_file(mut self, name: &[u8], content: &[u8]) -> Layer {
        let mut h = Self::header(EntryType::Regular, 0o644, 0, 0, content.len() as u64);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.builder.append(&h, content).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

const APPLETS: &[&str] = &[
    "sh", "cat", "chmod", "chown", "chroot", "echo", "env", "hostname", "id", "ip", "kill", "ln",
    "ls", "mkdir", "mknod", "mv", "printf", "pwd", "rm", "sed", "sleep", "stat", "test", "touch",
    "true", "grep", "wc", "head", "cp",
];

/// The base layer every run test starts from.
pub fn busybox_layer() -> Vec<u8> {
    let busybox =
        std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
    let mut layer = Layer::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .dir("etc", 0o755)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .file(
            "etc/group",
            0o644,
            b"root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
        )
        .file("etc/motd", 0o644, b"welcome\n")
        .file("etc/issue", 0o644, b"busybox test rootfs\n")
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .dir("var", 0o755)
        .dir("var/log", 0o755)
        // A directory under a dropped prefix: its files are never recorded, its deletion is.
        .dir("var/log/apt", 0o755)
        .file("var/log/apt/history.log", 0o644, b"h")
        .dir("var/old", 0o755)
        .file("var/old/a", 0o644, b"a")
        .dir("var/old/sub", 0o755)
        .file("var/old/sub/b", 0o644, b"b")
        .dir("srv", 0o755)
        .file("srv/lower", 0o644, b"lower");
    for applet in APPLETS {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer.finish()
}

/// What a test runs its step with: the mode, and whether the root is an overlay of layer
/// directories instead of the layers extracted into it.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub mode: Mode,
    pub overlay: bool,
}

impl Case {
    pub fn rootfs(&self, layers: &[Vec<u8>]) -> TestRoot {
        if !self.overlay {
            return TestRoot {
                rootfs: rootfs(layers),
                _layer_dirs: None,
            };
        }
        let dirs = tempfile::tempdir().unwrap();
        let lowers: Vec<std::path::PathBuf> = layers
            .iter()
            .enumerate()
            .map(|(number, layer)| {
                let dir = dirs.path().join(number.to_string());
                layerize_sandbox::make_layer_dir(&layer[..], &dir).unwrap();
                dir
            })
            .collect();
        TestRoot {
            rootfs: Rootfs::overlay_in(&std::env::temp_dir(), lowers).unwrap(),
            _layer_dirs: Some(dirs),
        }
    }
}

/// A test's root, with the layer directories an overlay root stacks.
pub struct TestRoot {
    rootfs: Rootfs,
    _layer_dirs: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestRoot {
    type Target = Rootfs;
    fn deref(&self) -> &Rootfs {
        &self.rootfs
    }
}

impl std::ops::DerefMut for TestRoot {
    fn deref_mut(&mut self) -> &mut Rootfs {
        &mut self.rootfs
    }
}

pub fn rootfs(layers: &[Vec<u8>]) -> Rootfs {
    let mut rootfs = Rootfs::new_in(&std::env::temp_dir()).unwrap();
    for layer in layers {
        rootfs.apply_layer(&layer[..]).unwrap();
    }
    rootfs
}

pub fn script_step(script: &str) -> Step {
    Step {
        argv: vec!["/bin/sh".into(), "-e".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        workdir: "/".into(),
        user: None,
        network: false,
    }
}

/// Runs `step` and returns its outcome, changes and output lines (`out: ` / `err: ` prefixed).
pub fn run_step(
    rootfs: &mut Rootfs,
    step: &Step,
    mode: Mode,
) -> (RunOutcome, Changes, Vec<String>) {
    let mut lines = Vec::new();
    let mut on_output = |o: Output<'_>| {
        let prefix = match o.stream {
            layerize_sandbox::Stream::Stdout => "out",
            layerize_sandbox::Stream::Stderr => "err",
        };
        lines.push(format!("{prefix}: {}", o.line));
    };
    let (outcome, changes) = layerize_sandbox::run(rootfs, step, mode, &mut on_output).unwrap();
    (outcome, changes, lines)
}

pub fn find<'a>(changes: &'a Changes, path: &str) -> Option<&'a Change> {
    changes.entries.iter().find(|c| c.path == path)
}

/// The changes with host paths made relative, for comparing two runs.
pub fn portable(changes: &Changes, root: &std::path::Path) -> Vec<Change> {
    changes
        .entries
        .iter()
        .cloned()
        .map(|mut c| {
            if let ChangeKind::File { host_path, .. } = &mut c.kind {
                *host_path = host_path.strip_prefix(root).unwrap().to_path_buf();
            }
            c
        })
        .collect()
}

/// A name no earlier run can have left behind.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
