//! Edits to an image config's runtime settings (`config.config`: Env, Entrypoint, Cmd, ...),
//! made on the JSON value so that untouched fields and key order survive.

use serde_json::{Map, Value};

use crate::ManifestError;

/// One change to the runtime settings of an image config (the `config` object inside it).
///
/// Docker configs also carry `container_config`; it records how the base was built and is
/// never edited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigEdit {
    /// Sets `KEY=value`: an existing `KEY=` entry is replaced where it stands (later duplicates
    /// are dropped), otherwise the entry is added at the end.
    Env { key: String, value: String },
    /// Appends to a list-like variable (`PATH`): `KEY=old{separator}value`, or `KEY=value`
    /// when the variable is unset or empty.
    EnvAppend {
        key: String,
        value: String,
        separator: String,
    },
    /// Sets `Entrypoint`. Unlike `ENTRYPOINT` in a Dockerfile this does not clear an inherited
    /// `Cmd`: every edit is explicit, so clear or set `Cmd` yourself when the base's would
    /// no longer make sense as arguments.
    Entrypoint(Vec<String>),
    /// Sets `Cmd`.
    Cmd(Vec<String>),
    /// Sets `WorkingDir`; must be absolute (except on Windows images).
    WorkingDir(String),
    /// Sets `User` (`name`, `uid`, `uid:gid`, ...).
    User(String),
    /// Sets one entry of `Labels`, keeping its position when it exists.
    Label { key: String, value: String },
    /// Adds to `ExposedPorts`: `PORT[/PROTOCOL]`, protocol `tcp` (the default), `udp` or `sctp`.
    ExposedPort(String),
    /// Sets `StopSignal` (`SIGTERM`, `15`, ...).
    StopSignal(String),
}

impl ConfigEdit {
    /// Checks the edit's own values as applying it to a Linux config would (a variable's name, an
    /// absolute working directory, a label key, a port's syntax), without an image at hand: so
    /// that a bad value is refused where it is written, before any image is read.
    pub fn check(&self) -> Result<(), ManifestError> {
        let mut linux = serde_json::json!({"os": "linux"});
        self.apply_to(&mut linux)
    }

    /// Applies the edit to the whole config document `config` (creating `config.config` when
    /// it is missing or null).
    pub(crate) fn apply_to(&self, config: &mut Value) -> Result<(), ManifestError> {
        let is_windows = config.get("os").and_then(Value::as_str) == Some("windows");
        let settings = runtime_settings(config)?;
        match self {
            ConfigEdit::Env { key, value } => set_env(settings, key, |_| value.clone()),
            ConfigEdit::EnvAppend {
                key,
                value,
                separator,
            } => set_env(settings, key, |old| match old {
                Some(old) if !old.is_empty() => format!("{old}{separator}{value}"),
                _ => value.clone(),
            }),
            ConfigEdit::Entrypoint(args) => {
                settings.insert("Entrypoint".into(), args.clone().into());
                Ok(())
            }
            ConfigEdit::Cmd(args) => {
                settings.insert("Cmd".into(), args.clone().into());
                Ok(())
            }
            ConfigEdit::WorkingDir(dir) => {
                if dir.is_empty() || !(dir.starts_with('/') || is_windows) {
                    return Err(invalid(format!(
                        "working directory {dir:?} must be an absolute path"
                    )));
                }
                settings.insert("WorkingDir".into(), dir.clone().into());
                Ok(())
            }
            ConfigEdit::User(user) => {
                settings.insert("User".into(), user.clone().into());
                Ok(())
            }
            ConfigEdit::Label { key, value } => {
                if key.is_empty() {
                    return Err(invalid("label key must not be empty".into()));
                }
                object_entry(settings, "Labels")?.insert(key.clone(), value.clone().into());
                Ok(())
            }
            ConfigEdit::ExposedPort(port) => {
                let port = canonical_port(port)?;
                object_entry(settings, "ExposedPorts")?.insert(port, Value::Object(Map::new()));
                Ok(())
            }
            ConfigEdit::StopSignal(signal) => {
                if signal.trim().is_empty() {
                    return Err(invalid("stop signal must not be empty".into()));
                }
                settings.insert("StopSignal".into(), signal.clone().into());
                Ok(())
            }
        }
    }
}

fn invalid(message: String) -> ManifestError {
    ManifestError::InvalidEdit(message)
}

/// The `config` object of an image config, created when missing or null.
fn runtime_settings(config: &mut Value) -> Result<&mut Map<String, Value>, ManifestError> {
    let document = config
        .as_object_mut()
        .ok_or_else(|| ManifestError::Malformed("config is not a JSON object".into()))?;
    object_entry(document, "config")
}

/// The object under `key`, created when missing or null; an error for any other type.
fn object_entry<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, ManifestError> {
    let entry = parent.entry(key).or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    entry
        .as_object_mut()
        .ok_or_else(|| ManifestError::Malformed(format!("config field {key:?} is not an object")))
}

/// Sets `key` in `Env` to `new_value(old value)`, in place of its first occurrence.
fn set_env(
    settings: &mut Map<String, Value>,
    key: &str,
    new_value: impl FnOnce(Option<&str>) -> String,
) -> Result<(), ManifestError> {
    if key.is_empty() || key.contains('=') {
        return Err(invalid(format!(
            "environment variable name {key:?} must be non-empty and contain no '='"
        )));
    }
    let env = settings.entry("Env").or_insert(Value::Null);
    if env.is_null() {
        *env = Value::Array(Vec::new());
    }
    let env = env
        .as_array_mut()
        .ok_or_else(|| ManifestError::Malformed("config field \"Env\" is not an array".into()))?;
    let prefix = format!("{key}=");
    let Some(first) = env
        .iter()
        .position(|entry| env_value(entry, &prefix).is_some())
    else {
        env.push(format!("{prefix}{}", new_value(None)).into());
        return Ok(());
    };
    let updated = format!("{prefix}{}", new_value(env_value(&env[first], &prefix)));
    env[first] = updated.into();
    let mut index = 0;
    env.retain(|entry| {
        let keep = index <= first || env_value(entry, &prefix).is_none();
        index += 1;
        keep
    });
    Ok(())
}

/// The value of an `Env` entry when it starts with `prefix` (`KEY=`).
fn env_value<'a>(entry: &'a Value, prefix: &str) -> Option<&'a str> {
    entry.as_str().and_then(|text| text.strip_prefix(prefix))
}

/// `8080` -> `8080/tcp`; checks the port number and protocol.
fn canonical_port(spec: &str) -> Result<String, ManifestError> {
    let (port, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    let valid_port = port.parse::<u16>().is_ok_and(|port| port != 0);
    if !valid_port || !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!(
            "exposed port {spec:?} must be PORT[/tcp|udp|sctp] with PORT in 1-65535"
        )));
    }
    Ok(format!("{port}/{protocol}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env_after(env: Value, edits: &[ConfigEdit]) -> Value {
        let mut config = json!({"architecture": "amd64", "config": {"Env": env}});
        for edit in edits {
            edit.apply_to(&mut config).unwrap();
        }
        config["config"]["Env"].clone()
    }

    fn set(key: &str, value: &str) -> ConfigEdit {
        ConfigEdit::Env {
            key: key.into(),
            value: value.into(),
        }
    }

    fn append(key: &str, value: &str) -> ConfigEdit {
        ConfigEdit::EnvAppend {
            key: key.into(),
            value: value.into(),
            separator: ":".into(),
        }
    }

    #[test]
    fn env_set_replaces_in_place_and_adds_at_the_end() {
        let base = json!(["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "PATHX=1"]);
        assert_eq!(
            env_after(
                base.clone(),
                &[set("LANG", "en_US.UTF-8"), set("APP", "x=y")]
            ),
            json!([
                "PATH=/usr/bin:/bin",
                "LANG=en_US.UTF-8",
                "PATHX=1",
                "APP=x=y"
            ])
        );
        assert_eq!(
            env_after(json!(["A=1", "B=2", "A=3"]), &[set("A", "9")]),
            json!(["A=9", "B=2"])
        );
        assert_eq!(env_after(Value::Null, &[set("A", "")]), json!(["A="]));
    }

    #[test]
    fn env_append_extends_or_sets() {
        let base = json!(["PATH=/usr/bin:/bin", "EMPTY="]);
        assert_eq!(
            env_after(
                base,
                &[
                    append("PATH", "/opt/app/bin"),
                    append("EMPTY", "x"),
                    append("NEW", "/y")
                ]
            ),
            json!(["PATH=/usr/bin:/bin:/opt/app/bin", "EMPTY=x", "NEW=/y"])
        );
    }

    #[test]
    fn env_refuses_bad_names() {
        let mut config = json!({"config": {}});
        for key in ["", "A=B"] {
            let err = set(key, "1").apply_to(&mut config).unwrap_err();
            assert!(err.to_string().starts_with("invalid config edit"), "{err}");
        }
    }

    #[test]
    fn settings_are_created_and_positions_kept() {
        let mut config = json!({"os": "linux", "config": null});
        let edits = [
            ConfigEdit::Label {
                key: "b".into(),
                value: "1".into(),
            },
            ConfigEdit::Label {
                key: "a".into(),
                value: "2".into(),
            },
            ConfigEdit::Label {
                key: "b".into(),
                value: "3".into(),
            },
            ConfigEdit::ExposedPort("8080".into()),
            ConfigEdit::ExposedPort("53/UDP".into()),
            ConfigEdit::Entrypoint(vec!["/app".into()]),
            ConfigEdit::WorkingDir("/srv".into()),
            ConfigEdit::User("1000:1000".into()),
            ConfigEdit::StopSignal("SIGINT".into()),
        ];
        for edit in &edits {
            edit.apply_to(&mut config).unwrap();
        }
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"os":"linux","config":{"Labels":{"b":"3","a":"2"},"ExposedPorts":{"8080/tcp":{},"53/udp":{}},"Entrypoint":["/app"],"WorkingDir":"/srv","User":"1000:1000","StopSignal":"SIGINT"}}"#
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        for edit in [
            ConfigEdit::ExposedPort("0".into()),
            ConfigEdit::ExposedPort("70000/tcp".into()),
            ConfigEdit::ExposedPort("80/http".into()),
            ConfigEdit::ExposedPort("8000-8010".into()),
            ConfigEdit::WorkingDir("relative".into()),
            ConfigEdit::StopSignal(" ".into()),
            ConfigEdit::Label {
                key: String::new(),
                value: "x".into(),
            },
        ] {
            let mut config = json!({"config": {}});
            assert!(edit.apply_to(&mut config).is_err(), "{edit:?}");
            assert!(edit.check().is_err(), "{edit:?}");
        }
        ConfigEdit::ExposedPort("53/udp".into()).check().unwrap();
        let mut windows = json!({"os": "windows"});
        ConfigEdit::WorkingDir("C:\\app".into())
            .apply_to(&mut windows)
            .unwrap();
    }

    #[test]
    fn a_non_object_setting_is_a_clear_error() {
        let mut config = json!({"config": {"Labels": ["x"]}});
        let err = ConfigEdit::Label {
            key: "a".into(),
            value: "b".into(),
        }
        .apply_to(&mut config)
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"malformed image: config field "Labels" is not an object"#
        );
    }
}
