//! Credentials: what to log in to a registry with, found where docker and podman keep them, or
//! given explicitly for CI.
//!
//! [`credentials_for`] asks these files in order and takes the first credential found:
//!
//! 1. `$REGISTRY_AUTH_FILE`, when set (podman's explicit choice beats docker's default);
//! 2. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`;
//! 3. when `$REGISTRY_AUTH_FILE` is not set: `$XDG_RUNTIME_DIR/containers/auth.json`, then
//!    `~/.config/containers/auth.json`.
//!
//! Within one file: the helper named in `credHelpers` for the registry, then the `credsStore`
//! helper, then the `auths` entry. A helper answering "credentials not found", a missing file or
//! an entry without credentials moves on to the next place; nothing anywhere means anonymous.
//! Keys are matched loosely (`host`, `https://host`, `http://host/v2/`, and every Docker Hub
//! alias); podman's repository-scoped keys (`host/namespace`) are not used, as a lookup is per
//! registry. [`login`] writes `config.json` the way `docker login` does.

mod config_file;
mod helper;
mod source;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;

use config_file::ConfigFile;

pub use source::credential_from_source;

/// What a registry is logged in to with. `Debug` never shows a secret and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A username and a password (or an access token used as a password).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token, exchanged at the token endpoint (`grant_type=refresh_token`).
    /// `username` is empty when a credential helper supplied the token.
    IdentityToken { username: String, token: String },
    /// A bearer token sent to the registry as is.
    RegistryToken(String),
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &REDACTED)
                .finish(),
            Credential::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &REDACTED)
                .finish(),
            Credential::RegistryToken(_) => {
                f.debug_tuple("RegistryToken").field(&REDACTED).finish()
            }
        }
    }
}

/// Why credentials could not be found, read or stored. No message ever holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("credential helper docker-credential-{helper} is configured but not installed (no such executable on PATH)")]
    HelperMissing { helper: String },
    #[error("credential helper docker-credential-{helper} failed for {server}: {reason}")]
    Helper {
        helper: String,
        server: String,
        reason: String,
    },
    #[error("credentials source must be env:VARIABLE or file:PATH (the value given is not shown, in case it is a secret)")]
    SourceForm,
    #[error("credentials source {spec}: {reason}")]
    Source { spec: String, reason: String },
    #[error("login: {0}")]
    Login(&'static str),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot tell where docker's config.json is: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,
}

/// The credential for `registry` ("docker.io" or "host[:port]"), or `None` for anonymous access.
pub fn credentials_for(registry: &str) -> Result<Option<Credential>, CredentialsError> {
    CredentialSources::from_env().lookup(registry)
}

/// Stores `username`/`password` for `registry` like `docker login` does and returns the
/// config.json that holds it (or names the credential helper that now holds it).
///
/// Without a helper configured for the registry the entry `auths[key].auth` = base64(user:pass)
/// is written, `key` being `https://index.docker.io/v1/` for Docker Hub and the host otherwise.
/// Every other key of the file is kept; the file is replaced atomically with mode 0600 and a
/// missing directory is created with mode 0700. With `credHelpers`/`credsStore` set the helper's
/// `store` is used, as docker does, so that the stored credential is the one found next time.
pub fn login(registry: &str, username: &str, password: &str) -> Result<PathBuf, CredentialsError> {
    CredentialSources::from_env().login(registry, username, password)
}

/// Where credentials are looked for. Built from the environment by the public functions and
/// directly by tests, so that tests never touch the process environment.
#[derive(Debug, Clone, Default)]
struct CredentialSources {
    /// `$DOCKER_CONFIG`.
    docker_config_dir: Option<PathBuf>,
    /// `$REGISTRY_AUTH_FILE`.
    registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    xdg_runtime_dir: Option<PathBuf>,
    /// `$HOME`.
    home: Option<PathBuf>,
    /// Where `docker-credential-*` helpers are searched for: `$PATH`.
    helper_path: Option<OsString>,
}

impl CredentialSources {
    fn from_env() -> Self {
        // An empty variable counts as unset, as it does for docker and podman.
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        CredentialSources {
            docker_config_dir: var("DOCKER_CONFIG").map(PathBuf::from),
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            helper_path: var("PATH"),
        }
    }

    fn docker_config_file(&self) -> Option<PathBuf> {
        self.docker_config_dir
            .clone()
            .or_else(|| self.home.as_ref().map(|home| home.join(".docker")))
            .map(|dir| dir.join("config.json"))
    }

    /// The files asked, in order (see the module documentation).
    fn auth_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.registry_auth_file.iter().cloned().collect();
        files.extend(self.docker_config_file());
        if self.registry_auth_file.is_none() {
            let runtime = self
                .xdg_runtime_dir
                .as_ref()
                .map(|dir| dir.join("containers/auth.json"));
            let config = self
                .home
                .as_ref()
                .map(|home| home.join(".config/containers/auth.json"));
            files.extend(runtime.into_iter().chain(config));
        }
        files
    }

    fn lookup(&self, registry: &str) -> Result<Option<Credential>, CredentialsError> {
        let registry = RegistryHost::new(registry);
        for path in self.auth_files() {
            let Some(file) = ConfigFile::read(&path)? else {
                continue;
            };
            if let Some(credential) = self.lookup_in(&file, &registry)? {
                return Ok(Some(credential));
            }
        }
        tracing::debug!(registry = %registry.host, "no credentials found, using anonymous access");
        Ok(None)
    }

    fn lookup_in(
        &self,
        file: &ConfigFile,
        registry: &RegistryHost,
    ) -> Result<Option<Credential>, CredentialsError> {
        let helpers = file
            .cred_helper(registry)
            .into_iter()
            .chain(file.creds_store());
        for name in helpers {
            let found = helper::get(name, registry.server_url(), self.helper_path.as_deref())?;
            if found.is_some() {
                tracing::debug!(registry = %registry.host, helper = name, "credentials from credential helper");
                return Ok(found);
            }
        }
        let found = file.auth_entry(registry)?;
        if found.is_some() {
            tracing::debug!(registry = %registry.host, file = %file.path().display(), "credentials from auths");
        }
        Ok(found)
    }

    fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<PathBuf, CredentialsError> {
        if username.is_empty() || username.contains(':') {
            return Err(CredentialsError::Login(
                "the username must be non-empty and hold no ':'",
            ));
        }
        if password.is_empty() {
            return Err(CredentialsError::Login("the password is empty"));
        }
        let path = self
            .docker_config_file()
            .ok_or(CredentialsError::NoConfigDir)?;
        let registry = RegistryHost::new(registry);
        let mut file = ConfigFile::read(&path)?.unwrap_or_else(|| ConfigFile::empty(path.clone()));
        match file.cred_helper(&registry).or(file.creds_store()) {
            Some(name) => helper::store(
                name,
                registry.server_url(),
                username,
                password,
                self.helper_path.as_deref(),
            )?,
            None => {
                file.set_auth(registry.server_url(), username, password)?;
                file.write()?;
            }
        }
        Ok(path)
    }
}

/// Docker Hub's names in config files; `docker.io` is how references name it.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// The key docker uses for Docker Hub, in `auths` and when asking credential helpers.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";

/// A registry as config files name it: a lower-case `host[:port]`, `docker.io` for Docker Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RegistryHost {
    host: String,
}

impl RegistryHost {
    /// Accepts what a user or a reference may call a registry: `ghcr.io`, `localhost:5000`,
    /// `https://index.docker.io/v1/`, `registry-1.docker.io`.
    fn new(registry: &str) -> Self {
        let (host, _) = split_key(registry);
        let host = if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
            DOCKER_HUB_HOSTS[0].to_string()
        } else {
            host
        };
        RegistryHost { host }
    }

    fn is_docker_hub(&self) -> bool {
        self.host == DOCKER_HUB_HOSTS[0]
    }

    /// What docker calls this registry in `auths` keys and when asking credential helpers.
    fn server_url(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_SERVER_URL
        } else {
            &self.host
        }
    }

    /// Whether a config key names this registry as a whole. Keys with a repository path
    /// (podman's `host/namespace`) do not.
    fn matches_key(&self, key: &str) -> bool {
        let (host, path) = split_key(key);
        let whole_registry = matches!(path.as_str(), "" | "v1" | "v2");
        whole_registry
            && if self.is_docker_hub() {
                DOCKER_HUB_HOSTS.contains(&host.as_str())
            } else {
                host == self.host
            }
    }
}

/// Splits a config key into its lower-case host and its path without surrounding slashes,
/// dropping any `http://` or `https://`.
fn split_key(key: &str) -> (String, String) {
    let key = key.trim().to_ascii_lowercase();
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(&key);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (host.to_string(), path.trim_matches('/').to_string())
}

#[cfg(test)]
mod tests;
