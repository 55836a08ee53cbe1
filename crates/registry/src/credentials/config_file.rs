//! One docker `config.json` or containers `auth.json`: the credential entries it holds for a
//! registry, and the `auths` update that `login` writes back, keeping every other key.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value};

use super::{Credential, CredentialsError, RegistryHost};

/// Decodes `auth` values with or without padding: tools differ.
const AUTH_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

pub(super) struct ConfigFile {
    path: PathBuf,
    json: Map<String, Value>,
}

impl ConfigFile {
    pub(super) fn empty(path: PathBuf) -> Self {
        ConfigFile {
            path,
            json: Map::new(),
        }
    }

    /// Reads `path`; `None` when there is no such file.
    pub(super) fn read(path: &Path) -> Result<Option<Self>, CredentialsError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CredentialsError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let malformed = |reason: String| CredentialsError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Some(Self::empty(path.to_path_buf())));
        }
        // Parsed as an untyped value: serde's type errors quote the offending value, which could
        // be a secret; syntax errors give only a position.
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(json)) => Ok(Some(ConfigFile {
                path: path.to_path_buf(),
                json,
            })),
            Ok(_) => Err(malformed("not a JSON object".into())),
            Err(error) => Err(malformed(format!("not valid JSON: {error}"))),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The helper `credHelpers` names for the registry.
    pub(super) fn cred_helper(&self, registry: &RegistryHost) -> Option<&str> {
        let helpers = field(&self.json, "credHelpers")?.as_object()?;
        matching(helpers, registry)
            .into_iter()
            .find_map(|(_, name)| name.as_str().filter(|name| !name.is_empty()))
    }

    /// The helper `credsStore` names for every registry.
    pub(super) fn creds_store(&self) -> Option<&str> {
        field(&self.json, "credsStore")?
            .as_str()
            .filter(|name| !name.is_empty())
    }

    /// The credential in the first `auths` entry for the registry that holds one.
    pub(super) fn auth_entry(
        &self,
        registry: &RegistryHost,
    ) -> Result<Option<Credential>, CredentialsError> {
        let Some(auths) = field(&self.json, "auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        for (key, entry) in matching(auths, registry) {
            let Some(entry) = entry.as_object() else {
                continue;
            };
            let credential =
                credential_from_entry(entry).map_err(|reason| CredentialsError::Malformed {
                    path: self.path.clone(),
                    reason: format!("auths[\"{key}\"]: {reason}"),
                })?;
            if credential.is_some() {
                return Ok(credential);
            }
        }
        Ok(None)
    }

    /// Sets `auths[key]` to `{"auth": base64(username:password)}`, replacing the whole entry so
    /// that an older identity token cannot shadow the new password.
    pub(super) fn set_auth(
        &mut self,
        key: &str,
        username: &str,
        password: &str,
    ) -> Result<(), CredentialsError> {
        let auths = self
            .json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(auths) = auths.as_object_mut() else {
            return Err(CredentialsError::Malformed {
                path: self.path.clone(),
                reason: "\"auths\" is not a JSON object".into(),
            });
        };
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        auths.insert(key.to_string(), Value::Object(entry));
        Ok(())
    }

    /// Replaces the file atomically (through a symlink, if it is one) with mode 0600, creating
    /// its directory with mode 0700 when missing.
    pub(super) fn write(&self) -> Result<(), CredentialsError> {
        let target = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let write_error = |source| CredentialsError::Write {
            path: target.clone(),
            source,
        };
        let dir = target
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(write_error)?;
        // NamedTempFile is created with mode 0600 and keeps it through the rename.
        let mut temp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(dir)
            .map_err(write_error)?;
        // Tabs, as docker writes it.
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut temp, formatter);
        serde::Serialize::serialize(&self.json, &mut serializer)
            .map_err(|error| write_error(error.into()))?;
        temp.write_all(b"\n").map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&target)
            .map_err(|error| write_error(error.error))?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A field by name, exactly or else ignoring case, as Go's JSON decoding (docker's) matches.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// The entries whose key names the registry, the exact key docker writes first, then the
/// others in file order.
fn matching<'a>(
    object: &'a Map<String, Value>,
    registry: &RegistryHost,
) -> Vec<(&'a String, &'a Value)> {
    let exact = object.get_key_value(registry.server_url());
    let others = object
        .iter()
        .filter(|(key, _)| key.as_str() != registry.server_url() && registry.matches_key(key));
    exact.into_iter().chain(others).collect()
}

/// The credential in one `auths` entry, `None` when it holds none (docker leaves `{}` entries
/// behind for registries whose credentials live in a helper). Errors never quote a value.
fn credential_from_entry(entry: &Map<String, Value>) -> Result<Option<Credential>, String> {
    let text = |name| {
        field(entry, name)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    if let Some(token) = text("registrytoken") {
        return Ok(Some(Credential::RegistryToken(token.to_string())));
    }
    let (mut username, mut password) = (
        text("username").map(String::from),
        text("password").map(String::from),
    );
    if let Some(auth) = text("auth") {
        let (user, pass) = decode_auth(auth)?;
        (username, password) = (Some(user), Some(pass));
    }
    if let Some(token) = text("identitytoken") {
        let username = username.unwrap_or_default();
        return Ok(Some(Credential::IdentityToken {
            username,
            token: token.to_string(),
        }));
    }
    Ok(match (username, password) {
        (Some(username), Some(password)) if !username.is_empty() && !password.is_empty() => {
            Some(Credential::Basic { username, password })
        }
        _ => None,
    })
}

fn decode_auth(auth: &str) -> Result<(String, String), String> {
    const NOT_AUTH: &str = "\"auth\" is not base64 of USERNAME:PASSWORD";
    let decoded = AUTH_BASE64
        .decode(auth.trim())
        .map_err(|_| NOT_AUTH.to_string())?;
    let decoded = String::from_utf8(decoded).map_err(|_| NOT_AUTH.to_string())?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| NOT_AUTH.to_string())?;
    Ok((username.to_string(), password.to_string()))
}
