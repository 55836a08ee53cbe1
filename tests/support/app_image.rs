//! The application layer the end-to-end builds put on the busybox base: its host files
//! ([`AppFiles`]), the flags that add them, and what podman must see in the pulled image
//! ([`assert_podman_sees_the_app`]). Suites differ only in the [`App`] they describe.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;

use crate::images::busybox;
use crate::podman::PulledImage;

/// What one suite's app layer holds and how it edits the config.
#[derive(Clone, Copy, Debug)]
pub struct App {
    /// `/usr/local/bin/hello` prints `hello from {greeting}`.
    pub greeting: &'static str,
    /// `settings.conf` holds `mode={mode}` and the config gains `APP_MODE={mode}`.
    pub mode: &'static str,
    /// Mode of `site/assets/app.js` on the host, which the layer keeps.
    pub asset_mode: u32,
    /// Adds [`data_text`] at `/opt/data/data.txt`: a few MiB, so the gzip stream has several
    /// members.
    pub data: bool,
    /// A `--label` the build sets.
    pub label: Option<(&'static str, &'static str)>,
}

impl App {
    fn script(&self) -> String {
        format!("#!/bin/sh\necho hello from {}\n", self.greeting)
    }
}

/// Host files for the new layer: a script, a config file, a directory with a nested file and a
/// symlink, and (if [`App::data`]) the data file.
pub struct AppFiles {
    app: App,
    dir: tempfile::TempDir,
}

impl AppFiles {
    pub fn new(app: App) -> AppFiles {
        let dir = crate::scratch_dir();
        let root = dir.path();
        let write = |name: &str, contents: &[u8], mode: u32| {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("hello.sh", app.script().as_bytes(), 0o755);
        write(
            "settings.conf",
            format!("mode={}\n", app.mode).as_bytes(),
            0o644,
        );
        write("site/index.html", b"<h1>layerize</h1>\n", 0o644);
        write("site/assets/app.js", b"console.log(1)\n", app.asset_mode);
        if app.data {
            write("data.txt", &data_text(), 0o644);
        }
        std::os::unix::fs::symlink("index.html", root.join("site/default.html")).unwrap();
        AppFiles { app, dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Layer and config flags: files, a directory, a deletion of a base file, env, entrypoint
    /// and the label if any.
    pub fn build_args(&self) -> Vec<String> {
        let mut args = vec![
            "--file".into(),
            format!("{}:/usr/local/bin/hello", self.path("hello.sh")),
            "--file".into(),
            format!("{}:/etc/app/settings.conf:640", self.path("settings.conf")),
        ];
        if self.app.data {
            args.extend([
                "--file".into(),
                format!("{}:/opt/data/data.txt", self.path("data.txt")),
            ]);
        }
        args.extend([
            "--dir".into(),
            format!("{}:/srv/www", self.path("site")),
            "--delete".into(),
            format!("/{}", busybox::DELETABLE),
            "--env".into(),
            format!("APP_MODE={}", self.app.mode),
            "--entrypoint".into(),
            r#"["/usr/local/bin/hello"]"#.into(),
        ]);
        if let Some((key, value)) = self.app.label {
            args.extend(["--label".into(), format!("{key}={value}")]);
        }
        args
    }
}

/// 3 MiB of deterministic, non-repeating text.
pub fn data_text() -> Vec<u8> {
    let mut text = Vec::with_capacity(3 << 20);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while text.len() < 3 << 20 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        writeln!(text, "{:016x} {}", state, state >> 40).unwrap();
    }
    text
}

/// Permission bits of `path`, not following a symlink.
pub fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Everything a user of the image built from `app` on busybox would check, through podman's
/// eyes: the new files with their contents, modes, owners and symlink, the deleted base file
/// gone, the base's files underneath, the script running, and the config edits on top of the
/// inherited config.
pub fn assert_podman_sees_the_app(app: &App, target: &str, creds: Option<&str>) {
    let image = PulledImage::pull(target, creds);
    let root = image.root();
    assert_eq!(
        std::fs::read_to_string(root.join("usr/local/bin/hello")).unwrap(),
        app.script()
    );
    assert_eq!(mode_of(&root.join("usr/local/bin/hello")), 0o755);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app/settings.conf")).unwrap(),
        format!("mode={}\n", app.mode)
    );
    assert_eq!(mode_of(&root.join("etc/app/settings.conf")), 0o640);
    assert_eq!(
        std::fs::read_to_string(root.join("srv/www/assets/app.js")).unwrap(),
        "console.log(1)\n"
    );
    assert_eq!(mode_of(&root.join("srv/www/assets/app.js")), app.asset_mode);
    assert_eq!(mode_of(&root.join("srv/www")), 0o755);
    if app.data {
        assert_eq!(
            std::fs::read(root.join("opt/data/data.txt")).unwrap(),
            data_text()
        );
    }
    assert_eq!(
        std::fs::read_link(root.join("srv/www/default.html")).unwrap(),
        Path::new("index.html")
    );
    let meta = std::fs::metadata(root.join("srv/www/index.html")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert!(
        !root.join(busybox::DELETABLE).exists(),
        "the deleted base file is still visible"
    );
    // The base's content and symlinks survive underneath.
    for (path, mode) in busybox::FILES {
        assert_eq!(mode_of(&root.join(path)), mode, "{path}");
    }
    for (link, link_target) in busybox::SYMLINKS {
        assert_eq!(
            std::fs::read_link(root.join(link)).unwrap(),
            Path::new(link_target)
        );
    }
    assert_eq!(
        image.chroot_run(&["/usr/local/bin/hello"]),
        format!("hello from {}\n", app.greeting)
    );

    let config = &image.inspect()["Config"];
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap())
        .collect();
    let app_mode = format!("APP_MODE={}", app.mode);
    assert!(env.contains(&app_mode.as_str()), "{env:?}");
    for inherited in busybox::ENV {
        assert!(env.contains(&inherited), "{inherited} lost: {env:?}");
    }
    assert_eq!(config["Entrypoint"], json!(["/usr/local/bin/hello"]));
    assert_eq!(config["Cmd"], json!(busybox::CMD));
    assert_eq!(config["WorkingDir"], busybox::WORKDIR);
    if let Some((key, value)) = app.label {
        assert_eq!(config["Labels"][key], value);
    }
    assert_eq!(config["Labels"][busybox::LABEL.0], busybox::LABEL.1);
    assert!(config["ExposedPorts"]
        .as_object()
        .unwrap()
        .contains_key(busybox::EXPOSED_PORT));
}
