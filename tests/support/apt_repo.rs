//! A signed apt repository made by a test and served on loopback: `.deb`s built with
//! `dpkg-deb --build` from files the test gives (or by hand, for malformed ones), indexed with
//! `apt-ftparchive`, signed with a throwaway gpg key, with knobs for the failure cases (an
//! expired `Valid-Until`, a bad signature, no signature, a `.deb` altered after indexing).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::tools;

/// The suite and component every test repository has.
pub const SUITE: &str = "stable";
pub const COMPONENT: &str = "main";

/// A package to build: its control fields, files and maintainer scripts.
#[derive(Clone, Debug)]
pub struct DebSpec {
    pub name: String,
    pub version: String,
    /// `all` unless set.
    pub arch: String,
    pub depends: Option<String>,
    /// Path (relative to the root, `usr/bin/hello`), contents, mode.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// More control fields (`Provides`, `Conflicts`, `Multi-Arch`, …).
    pub control_extra: Vec<(String, String)>,
    /// Maintainer scripts by name (`postinst`, `preinst`, …) and their text.
    pub scripts: Vec<(String, String)>,
}

impl DebSpec {
    pub fn new(name: &str, version: &str) -> DebSpec {
        DebSpec {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: "all".to_owned(),
            depends: None,
            files: Vec::new(),
            control_extra: Vec::new(),
            scripts: Vec::new(),
        }
    }

    pub fn arch(mut self, arch: &str) -> DebSpec {
        self.arch = arch.to_owned();
        self
    }

    pub fn depends(mut self, depends: &str) -> DebSpec {
        self.depends = Some(depends.to_owned());
        self
    }

    pub fn file(mut self, path: &str, contents: &[u8], mode: u32) -> DebSpec {
        self.files.push((path.to_owned(), contents.to_vec(), mode));
        self
    }

    pub fn control(mut self, field: &str, value: &str) -> DebSpec {
        self.control_extra
            .push((field.to_owned(), value.to_owned()));
        self
    }

    pub fn script(mut self, name: &str, text: &str) -> DebSpec {
        self.scripts.push((name.to_owned(), text.to_owned()));
        self
    }

    fn control_file(&self) -> String {
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: layerize tests <tests@layerize.invalid>\n",
            self.name, self.version, self.arch
        );
        if let Some(depends) = &self.depends {
            writeln!(control, "Depends: {depends}").unwrap();
        }
        for (field, value) in &self.control_extra {
            writeln!(control, "{field}: {value}").unwrap();
        }
        control.push_str("Description: a package made by a layerize test\n");
        control
    }

    fn deb_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version, self.arch)
    }
}

/// A `.deb` built by hand, whose `data.tar` holds entries exactly as given, `../` and all.
#[derive(Clone, Debug)]
pub struct RawDeb {
    pub spec: DebSpec,
    /// Tar entry names as written (no normalisation) and file contents.
    pub entries: Vec<(String, Vec<u8>)>,
}

/// Builds an [`AptRepo`].
#[derive(Debug, Default)]
pub struct AptRepoBuilder {
    packages: Vec<DebSpec>,
    raw: Vec<RawDeb>,
    architectures: Vec<String>,
    valid_until: Option<SystemTime>,
    corrupt_signature: bool,
    unsigned: bool,
    detached_only: bool,
    by_hash: bool,
    tamper: Vec<String>,
}

impl AptRepoBuilder {
    pub fn package(mut self, spec: DebSpec) -> Self {
        self.packages.push(spec);
        self
    }

    /// A package whose `data.tar` has exactly `entries` (for `../` paths and the like).
    pub fn raw_deb(mut self, spec: DebSpec, entries: Vec<(String, Vec<u8>)>) -> Self {
        self.raw.push(RawDeb { spec, entries });
        self
    }

    /// The architectures the Release lists (default `amd64`); each gets a `Packages`.
    pub fn architectures(mut self, architectures: &[&str]) -> Self {
        self.architectures = architectures.iter().map(|a| a.to_string()).collect();
        self
    }

    /// A `Valid-Until:` in the Release (in the past, for the expired case).
    pub fn valid_until(mut self, time: SystemTime) -> Self {
        self.valid_until = Some(time);
        self
    }

    /// The Release text altered after signing: `InRelease` and `Release.gpg` no longer verify.
    pub fn corrupt_signature(mut self) -> Self {
        self.corrupt_signature = true;
        self
    }

    /// No `InRelease`, no `Release.gpg`: only a plain `Release`.
    pub fn unsigned(mut self) -> Self {
        self.unsigned = true;
        self
    }

    /// `Release` + `Release.gpg` only, no `InRelease`.
    pub fn detached_only(mut self) -> Self {
        self.detached_only = true;
        self
    }

    /// `Acquire-By-Hash: yes`, with the indexes also under `by-hash/SHA256/`.
    pub fn by_hash(mut self) -> Self {
        self.by_hash = true;
        self
    }

    /// Package `name`'s `.deb` is changed after indexing (same size, other SHA256).
    pub fn tamper_deb(mut self, name: &str) -> Self {
        self.tamper.push(name.to_owned());
        self
    }

    pub fn build(self) -> AptRepo {
        let work = crate::scratch_dir();
        let root = work.path().join("repo");
        let pool = root.join("pool").join(COMPONENT);
        std::fs::create_dir_all(&pool).expect("create pool");
        for spec in &self.packages {
            build_deb(
                spec,
                &work.path().join("build"),
                &pool.join(spec.deb_name()),
            );
        }
        for raw in &self.raw {
            write_raw_deb(raw, &pool.join(raw.spec.deb_name()));
        }
        let architectures = if self.architectures.is_empty() {
            vec!["amd64".to_owned()]
        } else {
            self.architectures.clone()
        };
        let dists = root.join("dists").join(SUITE);
        for arch in &architectures {
            let dir = dists.join(COMPONENT).join(format!("binary-{arch}"));
            std::fs::create_dir_all(&dir).expect("create binary dir");
            let packages = tools::run_bytes(
                tools::command("apt-ftparchive")
                    .current_dir(&root)
                    .args(["--arch", arch, "packages", "pool"]),
            );
            std::fs::write(dir.join("Packages"), &packages).expect("write Packages");
            let xz = tools::run_bytes(
                tools::command("xz")
                    .args(["-c", "-9"])
                    .arg(dir.join("Packages")),
            );
            std::fs::write(dir.join("Packages.xz"), &xz).expect("write Packages.xz");
            if self.by_hash {
                let by_hash = dir.join("by-hash").join("SHA256");
                std::fs::create_dir_all(&by_hash).expect("create by-hash");
                for file in ["Packages", "Packages.xz"] {
                    let bytes = std::fs::read(dir.join(file)).expect("read index");
                    std::fs::write(by_hash.join(sha256_hex(&bytes)), bytes).expect("write by-hash");
                }
            }
        }
        let mut release = tools::run(
            tools::command("apt-ftparchive")
                .current_dir(&dists)
                .arg("-o")
                .arg(format!("APT::FTPArchive::Release::Suite={SUITE}"))
                .arg("-o")
                .arg(format!("APT::FTPArchive::Release::Codename={SUITE}"))
                .arg("-o")
                .arg("APT::FTPArchive::Release::Label=layerize-test")
                .arg("-o")
                .arg(format!("APT::FTPArchive::Release::Components={COMPONENT}"))
                .arg("-o")
                .arg(format!(
                    "APT::FTPArchive::Release::Architectures={}",
                    architectures.join(" ")
                ))
                .args(["release", "."]),
        );
        let mut header = String::new();
        if let Some(time) = self.valid_until {
            writeln!(header, "Valid-Until: {}", rfc2822(time)).unwrap();
        }
        if self.by_hash {
            header.push_str("Acquire-By-Hash: yes\n");
        }
        if !header.is_empty() {
            release = match release.split_once("MD5Sum:") {
                Some((head, tail)) => format!("{head}{header}MD5Sum:{tail}"),
                None => format!("{header}{release}"),
            };
        }
        std::fs::write(dists.join("Release"), &release).expect("write Release");

        let key = GpgKey::generate(&work.path().join("gnupg"));
        if !self.unsigned {
            key.sign(&dists);
        }
        if self.unsigned || self.detached_only {
            let _ = std::fs::remove_file(dists.join("InRelease"));
        }
        if self.corrupt_signature {
            for file in ["InRelease", "Release"] {
                let path = dists.join(file);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let altered = text.replace("Label: layerize-test", "Label: layerize-TEST");
                    assert_ne!(altered, text, "{file} has no Label to alter");
                    std::fs::write(&path, altered).expect("alter Release");
                }
            }
        }
        for name in &self.tamper {
            let spec = self
                .packages
                .iter()
                .find(|spec| &spec.name == name)
                .unwrap_or_else(|| panic!("tamper_deb({name}): no such package"));
            let path = pool.join(spec.deb_name());
            let mut bytes = std::fs::read(&path).expect("read deb to tamper");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&path, bytes).expect("tamper deb");
        }
        let server = FileServer::start(root.clone());
        AptRepo {
            root,
            public_key: key.public_key.clone(),
            public_key_armored: key.public_key_armored.clone(),
            server,
            _work: work,
        }
    }
}

/// A repository on disk, served over HTTP on loopback until dropped.
pub struct AptRepo {
    root: PathBuf,
    public_key: PathBuf,
    public_key_armored: String,
    server: FileServer,
    _work: tempfile::TempDir,
}

impl AptRepo {
    pub fn builder() -> AptRepoBuilder {
        AptRepoBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, the repository's base URI.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// The signing key's public half, a binary keyring file.
    pub fn public_key_path(&self) -> &Path {
        &self.public_key
    }

    /// The signing key's public half, ASCII-armored.
    pub fn public_key_armored(&self) -> &str {
        &self.public_key_armored
    }

    /// The served directory (`dists/`, `pool/`).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The one-line source for this repository, its key at `keyring_path`.
    pub fn sources_line(&self, keyring_path: &str) -> String {
        format!(
            "deb [signed-by={keyring_path}] {} {SUITE} {COMPONENT}\n",
            self.url()
        )
    }

    /// Every request so far: path and status answered.
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.server.log.lock().expect("request log").clone()
    }
}

/// A throwaway signing key in its own GNUPGHOME.
struct GpgKey {
    home: PathBuf,
    public_key: PathBuf,
    public_key_armored: String,
}

impl GpgKey {
    fn generate(home: &Path) -> GpgKey {
        std::fs::create_dir_all(home).expect("create GNUPGHOME");
        std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod GNUPGHOME");
        let gpg = |args: &[&str]| {
            let mut command = tools::command("gpg");
            command
                .env("GNUPGHOME", home)
                .args([
                    "--batch",
                    "--quiet",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(args);
            command
        };
        tools::run(&mut gpg(&[
            "--quick-gen-key",
            "layerize test archive <archive@layerize.invalid>",
            "ed25519",
            "sign",
            "0",
        ]));
        let public_key = home.join("archive-key.gpg");
        let binary = tools::run_bytes(&mut gpg(&["--export"]));
        assert!(!binary.is_empty(), "gpg exported no key");
        std::fs::write(&public_key, binary).expect("write public key");
        let public_key_armored = tools::run(&mut gpg(&["--armor", "--export"]));
        GpgKey {
            home: home.to_owned(),
            public_key,
            public_key_armored,
        }
    }

    /// Writes `InRelease` and `Release.gpg` for `dir/Release`.
    fn sign(&self, dir: &Path) {
        for (flag, output) in [
            ("--clearsign", "InRelease"),
            ("--detach-sign", "Release.gpg"),
        ] {
            tools::run(
                tools::command("gpg")
                    .env("GNUPGHOME", &self.home)
                    .args(["--batch", "--quiet", "--yes", "--pinentry-mode", "loopback"])
                    .args([
                        "--passphrase",
                        "",
                        "--digest-algo",
                        "SHA256",
                        flag,
                        "--armor",
                    ])
                    .arg("--output")
                    .arg(dir.join(output))
                    .arg(dir.join("Release")),
            );
        }
    }
}

/// `text` clear-signed (`gpg --clearsign`, SHA256) by a new test key, with the key's armored
/// export: signed texts of any shape, for the readers of the cleartext framework.
pub fn clearsigned(text: &str) -> (String, String) {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let key = GpgKey::generate(&scratch.path().join("gnupg"));
    let input = scratch.path().join("text");
    std::fs::write(&input, text).expect("write the text to sign");
    let signed = tools::run(
        tools::command("gpg")
            .env("GNUPGHOME", &key.home)
            .args(["--batch", "--quiet", "--pinentry-mode", "loopback"])
            .args(["--passphrase", "", "--digest-algo", "SHA256", "--clearsign"])
            .arg("--output")
            .arg("-")
            .arg(&input),
    );
    (signed, key.public_key_armored.clone())
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        // The agent gpg started for this home; it would outlive the test otherwise.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn build_deb(spec: &DebSpec, scratch: &Path, output: &Path) {
    let tree = scratch.join(format!("{}-{}", spec.name, spec.version));
    let debian = tree.join("DEBIAN");
    std::fs::create_dir_all(&debian).expect("create DEBIAN");
    std::fs::write(debian.join("control"), spec.control_file()).expect("write control");
    for (name, text) in &spec.scripts {
        write_with_mode(&debian.join(name), text.as_bytes(), 0o755);
    }
    for (path, contents, mode) in &spec.files {
        let target = tree.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("file in a directory"))
            .expect("create package dirs");
        write_with_mode(&target, contents, *mode);
    }
    tools::run(
        tools::command("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&tree)
            .arg(output),
    );
}

fn write_with_mode(path: &Path, contents: &[u8], mode: u32) {
    std::fs::write(path, contents).expect("write package file");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod package file");
}

/// A `.deb` assembled without dpkg-deb (which refuses bad paths): an `ar` archive of
/// `debian-binary`, an uncompressed `control.tar` and an uncompressed `data.tar` whose entry
/// names are written byte for byte.
fn write_raw_deb(raw: &RawDeb, output: &Path) {
    let control = tar(&[("./control".to_owned(), raw.spec.control_file().into_bytes())]);
    let data = tar(&raw.entries);
    let mut deb = b"!<arch>\n".to_vec();
    for (name, contents) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", control),
        ("data.tar", data),
    ] {
        writeln!(
            deb,
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`",
            name,
            0,
            0,
            0,
            "100644",
            contents.len()
        )
        .expect("ar header");
        deb.extend_from_slice(&contents);
        if contents.len() % 2 == 1 {
            deb.push(b'\n');
        }
    }
    std::fs::write(output, deb).expect("write raw deb");
}

/// A tar of regular files whose names are set without the tar crate's path checks.
fn tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, contents) in entries {
        let mut header = tar::Header::new_ustar();
        let field = &mut header.as_old_mut().name;
        assert!(name.len() < field.len(), "tar name {name:?} too long");
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append(&header, contents.as_slice())
            .expect("append tar entry");
    }
    builder.into_inner().expect("finish tar")
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `Sat, 10 Jun 2023 08:52:43 UTC`, as Release files write dates.
fn rfc2822(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .expect("time after the epoch")
        .as_secs();
    let date = time::OffsetDateTime::from_unix_timestamp(seconds as i64).expect("a valid time");
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] UTC",
    )
    .expect("a date format");
    date.format(&format).expect("format a date")
}

/// Static files of a directory over HTTP/1.1 on loopback: 404 for what is missing, an ETag
/// for each file and 304 for a matching `If-None-Match`.
struct FileServer {
    port: u16,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<(String, u16)>>>,
}

impl FileServer {
    fn start(root: PathBuf) -> FileServer {
        let http = tiny_http::Server::http("127.0.0.1:0").expect("start the apt repo server");
        let port = http.server_addr().to_ip().expect("an IP address").port();
        let http = Arc::new(http);
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (http, log) = (http.clone(), log.clone());
            std::thread::Builder::new()
                .name("apt-repo".into())
                .spawn(move || {
                    for request in http.incoming_requests() {
                        serve(&root, request, &log);
                    }
                })
                .expect("spawn the apt repo server")
        };
        FileServer {
            port,
            http,
            thread: Some(thread),
            log,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(root: &Path, request: tiny_http::Request, log: &Mutex<Vec<(String, u16)>>) {
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let file = (!path.split('/').any(|part| part == ".."))
        .then(|| root.join(path.trim_start_matches('/')))
        .filter(|file| file.is_file())
        .and_then(|file| std::fs::read(file).ok());
    let status = match &file {
        None => 404,
        Some(bytes) => {
            let etag = format!("\"{}\"", sha256_hex(bytes));
            let matches = request
                .headers()
                .iter()
                .any(|h| h.field.equiv("If-None-Match") && h.value.as_str() == etag);
            if matches {
                304
            } else {
                200
            }
        }
    };
    log.lock()
        .expect("request log")
        .push((path.clone(), status));
    let response = match (status, file) {
        (200, Some(bytes)) => {
            let etag = format!("\"{}\"", sha256_hex(&bytes));
            tiny_http::Response::from_data(bytes)
                .with_header(tiny_http::Header::from_bytes("ETag", etag).expect("an ETag header"))
        }
        (status, _) => tiny_http::Response::from_data(Vec::new()).with_status_code(status),
    };
    let _ = request.respond(response);
}
