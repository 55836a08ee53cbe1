//! A real `docker-registry` (distribution 2.8) on a free port with its own storage dir, open,
//! with htpasswd (Basic) auth, or with token auth against a token server of the tests; on
//! loopback over plain HTTP unless its [`Listener`] says otherwise. Its log (access log included)
//! goes to a file so tests can assert on what it saw, e.g. blob mounts; the process is killed on
//! drop, and with the test process however that ends.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{children, tools};

/// How clients must authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    Open,
    /// Basic auth checked against a bcrypt htpasswd file holding this one user.
    Htpasswd {
        user: String,
        password: String,
    },
    /// Bearer tokens: clients are sent to `realm`; tokens must be issued by `issuer` for
    /// `service` and signed by a key whose certificate chains to `root_cert_bundle`.
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_bundle: PathBuf,
    },
}

/// Where the registry listens, and whether it speaks TLS.
#[derive(Clone, Debug)]
pub struct Listener {
    /// The address it binds: loopback by default; `0.0.0.0` to be reachable on every interface.
    /// Either way it covers loopback, where [`Registry::host`] points and readiness is probed.
    pub address: IpAddr,
    /// Serve HTTPS with this certificate and key (PEM files) instead of plain HTTP.
    pub tls: Option<Tls>,
}

impl Default for Listener {
    fn default() -> Listener {
        Listener {
            address: Ipv4Addr::LOCALHOST.into(),
            tls: None,
        }
    }
}

/// A server certificate and its private key, both PEM files.
#[derive(Clone, Debug)]
pub struct Tls {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// A running `docker-registry serve`.
pub struct Registry {
    child: Child,
    port: u16,
    auth: Auth,
    tls: bool,
    dir: TempDir,
}

impl Registry {
    /// A registry on loopback over plain HTTP.
    pub fn start(auth: Auth) -> Registry {
        Registry::start_with(auth, Listener::default())
    }

    /// A registry listening as `listener` says.
    pub fn start_with(auth: Auth, listener: Listener) -> Registry {
        let dir = crate::scratch_dir();
        let auth_section = auth_config(&auth, dir.path());
        let config = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        // Another test may take the port between our probe and the registry's bind: retry.
        for _ in 0..5 {
            let port = free_port();
            let yaml = config_yaml(&listener, port, dir.path(), &auth_section);
            std::fs::write(&config, yaml).expect("write registry config");
            let log = std::fs::File::create(&log_path).expect("create registry log");
            let mut serve = tools::command("docker-registry");
            serve
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("registry log"))
                .stderr(log);
            let mut child = children::spawn(serve).expect("start docker-registry");
            if wait_until_serving(&mut child, port, &log_path) {
                return Registry {
                    child,
                    port,
                    auth,
                    tls: listener.tls.is_some(),
                    dir,
                };
            }
        }
        panic!("docker-registry did not start on a loopback port after 5 tries");
    }

    pub fn open() -> Registry {
        Registry::start(Auth::Open)
    }

    pub fn htpasswd(user: &str, password: &str) -> Registry {
        Registry::start(Auth::Htpasswd {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on, whatever its address.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process ID of `docker-registry`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a TLS registry.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// `USER:PASSWORD` for an htpasswd registry, as `--creds` flags want them.
    pub fn creds(&self) -> Option<String> {
        match &self.auth {
            Auth::Htpasswd { user, password } => Some(format!("{user}:{password}")),
            _ => None,
        }
    }

    /// Everything the registry has logged so far, access log included.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).expect("read registry log")
    }

    /// The registry's access-log lines (`"GET /v2/... HTTP/1.1" 200 ...`).
    pub fn access_log(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|line| line.contains("\" ") && line.contains(" HTTP/1.1\""))
            .map(str::to_owned)
            .collect()
    }

    /// [`Registry::access_log`] once every request answered before this call is in it.
    ///
    /// distribution writes a request's access-log line after sending the response, so the last
    /// requests of a client that has just exited may not be logged yet; a test asserting that
    /// something did *not* happen must not read the log before they are. A marker request, sent
    /// now and so answered after all of them, is waited for; marker lines are left out.
    pub fn settled_access_log(&self) -> Vec<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let marker = format!(
            "layerize-log-barrier={}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let host = self.host();
        assert!(
            answers_http_at(&host, &format!("/v2/?{marker}")),
            "the registry on {host} did not answer the log barrier"
        );
        let deadline = Instant::now() + START_HANG_GUARD;
        loop {
            let log = self.access_log();
            if log.iter().any(|line| line.contains(&marker)) {
                return log
                    .into_iter()
                    .filter(|line| !line.contains("layerize-log-barrier="))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "hang guard: the registry did not log {marker} in {START_HANG_GUARD:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hang guard for a registry's start, which takes well under a second even on a busy machine.
const START_HANG_GUARD: Duration = Duration::from_secs(120);

/// True once the registry logged that it listens on `port` and answers `GET /v2/` on loopback
/// (any status: 401 is the answer of an auth-protected one, 400 that of a TLS one to plain HTTP);
/// false when it exited first (port taken).
fn wait_until_serving(child: &mut Child, port: u16, log_path: &Path) -> bool {
    let host = format!("127.0.0.1:{port}");
    // `listening on 127.0.0.1:PORT`, `[::]:PORT` for 0.0.0.0, with `, tls` after it for TLS.
    let port_suffixes = [format!(":{port}\""), format!(":{port},")];
    let is_listening = |line: &str| {
        line.contains("listening on ") && port_suffixes.iter().any(|end| line.contains(end))
    };
    let deadline = Instant::now() + START_HANG_GUARD;
    while Instant::now() < deadline {
        if child.try_wait().expect("poll docker-registry").is_some() {
            return false;
        }
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if log.lines().any(is_listening) && answers_http(&host) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    panic!("hang guard: docker-registry on {host} not ready in {START_HANG_GUARD:?}; log:\n{log}");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn answers_http(host: &str) -> bool {
    answers_http_at(host, "/v2/")
}

/// True when `GET path` on `host` gets an HTTP answer (any status). HTTP/1.1, as the access log
/// lines [`Registry::access_log`] keeps are.
fn answers_http_at(host: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(host) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 5];
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && &head == b"HTTP/"
}

fn config_yaml(listener: &Listener, port: u16, dir: &Path, auth_section: &str) -> String {
    let tls_section = match &listener.tls {
        None => String::new(),
        Some(tls) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            tls.certificate.display(),
            tls.key.display()
        ),
    };
    format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {address}
{tls_section}{auth_section}",
        storage = dir.join("storage").display(),
        address = SocketAddr::new(listener.address, port),
    )
}

/// The `auth:` section for `auth`, writing the htpasswd file into `dir` when needed.
fn auth_config(auth: &Auth, dir: &Path) -> String {
    match auth {
        Auth::Open => String::new(),
        Auth::Htpasswd { user, password } => {
            let path = dir.join("htpasswd");
            std::fs::write(&path, bcrypt_entry(user, password)).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: layerize-tests\n    path: {}\n",
                path.display()
            )
        }
        Auth::Token {
            realm,
            service,
            issuer,
            root_cert_bundle,
        } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            root_cert_bundle.display()
        ),
    }
}

/// `USER:$2y$...` from `htpasswd -niB` (distribution accepts bcrypt entries only); the password
/// goes through stdin so it never shows in a process list or a failure message.
fn bcrypt_entry(user: &str, password: &str) -> String {
    let mut child = tools::command("htpasswd")
        .args(["-niB", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start htpasswd");
    let mut stdin = child.stdin.take().expect("htpasswd stdin");
    writeln!(stdin, "{password}").expect("write password to htpasswd");
    drop(stdin);
    let output = child.wait_with_output().expect("run htpasswd");
    assert!(
        output.status.success(),
        "htpasswd -niB failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("htpasswd output is text")
}
