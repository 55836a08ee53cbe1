//! A script layer as asked for — the commands, the shell, the environment, the user, whether the
//! network is on, and which earlier layers it runs on top of — and its key, which is made from
//! exactly these plus the base manifest's digest and the keys of what it needs, never from its
//! position or its neighbours.

use layerize_manifest::Digest;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::key::{codec_name, LAYER_FORMAT};
use super::LayerOptions;

/// The shell a step runs with unless it names one: the script is its last argument.
pub const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-e", "-c"];

/// The version of how a step's key is made and how its changes become a layer: bump it when
/// either changes, so that no cache hands back a layer made the old way.
pub const SCRIPT_FORMAT: u32 = 1;

/// A step that runs commands in a sandbox made of the base and the layers it needs; what it
/// changes becomes its layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptStep {
    /// The commands, run as one script (joined with newlines).
    pub run: Vec<String>,
    /// The argv the script is appended to ([`DEFAULT_SHELL`] unless the step names one).
    pub shell: Vec<String>,
    /// Names of earlier layers of the build it runs on top of (with what they need in turn);
    /// empty: the base only.
    pub needs: Vec<String>,
    /// Added to the base config's environment, in order.
    pub env: Vec<(String, String)>,
    /// The working directory inside the image (`/` unless given).
    pub workdir: Option<String>,
    /// `name`, `uid`, `uid:gid` or `name:group`, looked up in the image's own `/etc/passwd`.
    pub user: Option<String>,
    /// Whether the step may reach the network (off by default).
    pub network: bool,
    /// With `network`, replaces today's date in the key (a networked step otherwise reruns
    /// once a day, since what it downloads may change).
    pub pin: Option<String>,
}

impl ScriptStep {
    /// A step running `run` with the defaults: the default shell, the base only, no network.
    pub fn new(run: Vec<String>) -> Self {
        ScriptStep {
            run,
            shell: DEFAULT_SHELL.iter().map(|arg| (*arg).to_owned()).collect(),
            needs: Vec::new(),
            env: Vec::new(),
            workdir: None,
            user: None,
            network: false,
            pin: None,
        }
    }

    /// The script as one text.
    pub fn script(&self) -> String {
        self.run.join("\n")
    }

    /// The full argv: the shell, then the script.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = self.shell.clone();
        argv.push(self.script());
        argv
    }

    /// The `created_by` of its layer: the commands as a shell would run them, as Docker writes
    /// `RUN` steps (no host paths: the image's history must not depend on the checkout).
    pub fn created_by(&self, name: &str) -> String {
        format!("layerize: {name}: script: {}", self.run.join(" && "))
    }

    /// What the key covers besides the build-wide layer options, as canonical JSON.
    fn key_document(&self, base: &Digest, needs: &[String], today: &str) -> KeyDocument<'_> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        // Later values win, as in a shell: keep the last of each name, in name order.
        env.reverse();
        let mut seen = std::collections::HashSet::new();
        env.retain(|(name, _)| seen.insert(*name));
        env.sort();
        KeyDocument {
            shell: &self.shell,
            run: &self.run,
            env,
            workdir: self.workdir.as_deref().unwrap_or("/"),
            user: self.user.as_deref(),
            network: self.network,
            date: match (self.network, &self.pin) {
                (false, _) => None,
                (true, Some(pin)) => Some(format!("pin {pin}")),
                (true, None) => Some(format!("date {today}")),
            },
            base: base.to_string(),
            needs: needs.to_vec(),
        }
    }
}

#[derive(Serialize)]
struct KeyDocument<'a> {
    shell: &'a [String],
    run: &'a [String],
    env: Vec<(&'a str, &'a str)>,
    workdir: &'a str,
    user: Option<&'a str>,
    network: bool,
    date: Option<String>,
    base: String,
    needs: Vec<String>,
}

/// The key of `step` on the base whose manifest is `base`, on top of layers with keys `needs`
/// (in the order they are applied), its layer written as `options` says. `today` (`YYYY-MM-DD`,
/// UTC) only counts for a networked step without a pin.
pub fn script_key(
    step: &ScriptStep,
    base: &Digest,
    needs: &[String],
    options: &LayerOptions,
    today: &str,
) -> String {
    let codec = codec_name(options.compression);
    let document = serde_json::to_string(&step.key_document(base, needs, today))
        .expect("a key document always serialises");
    let text = format!(
        "layerize script\nformat {LAYER_FORMAT}.{SCRIPT_FORMAT}\ncodec {codec}\nmtime {}\nstep {document}\n",
        options.mtime
    );
    Digest::from_sha256_raw(Sha256::digest(text.as_bytes()).into()).to_string()
}

/// Today's date in UTC, `YYYY-MM-DD`, from the system clock.
pub fn today_utc() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() / 86_400);
    civil_date(days as i64)
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, CompressionPool};

    fn options() -> LayerOptions {
        LayerOptions {
            compression: Compression::Gzip { level: 6 },
            pool: CompressionPool::new(1),
            mtime: 0,
        }
    }

    fn base(byte: u8) -> Digest {
        Digest::from_sha256_raw([byte; 32])
    }

    fn key(step: &ScriptStep, today: &str) -> String {
        script_key(step, &base(1), &[], &options(), today)
    }

    #[test]
    fn the_key_covers_what_the_step_is_and_nothing_else() {
        let step = ScriptStep::new(vec!["mkdir -p /opt/a".into()]);
        let same = key(&step, "2026-12-01");
        assert_eq!(
            same,
            key(&step.clone(), "2030-01-01"),
            "no network: no date"
        );
        type Change = Box<dyn Fn(&mut ScriptStep)>;
        let changes: Vec<Change> = vec![
            Box::new(|step| step.run.push("true".into())),
            Box::new(|step| step.shell = vec!["/bin/bash".into(), "-c".into()]),
            Box::new(|step| step.env.push(("LANG".into(), "C.UTF-8".into()))),
            Box::new(|step| step.workdir = Some("/opt".into())),
            Box::new(|step| step.user = Some("1000".into())),
            Box::new(|step| step.network = true),
        ];
        for change in changes {
            let mut changed = step.clone();
            change(&mut changed);
            assert_ne!(key(&changed, "2026-12-01"), same, "{changed:?}");
        }
        // `needs` names do not count, the keys of what they name do.
        let mut named = step.clone();
        named.needs = vec!["hello".into()];
        assert_eq!(key(&named, "2026-12-01"), same);
        assert_ne!(
            script_key(&step, &base(1), &["k".into()], &options(), "x"),
            same
        );
        assert_ne!(script_key(&step, &base(2), &[], &options(), "x"), same);
        assert_eq!(
            key(&ScriptStep::new(vec!["mkdir -p /opt/a".into()]), "x"),
            same
        );
    }

    #[test]
    fn a_networked_step_covers_the_date_unless_pinned() {
        let mut step = ScriptStep::new(vec!["curl -O https://example.com/x".into()]);
        step.network = true;
        assert_ne!(key(&step, "2026-12-01"), key(&step, "2026-12-02"));
        step.pin = Some("v1".into());
        assert_eq!(key(&step, "2026-12-01"), key(&step, "2026-12-02"));
        let mut other = step.clone();
        other.pin = Some("v2".into());
        assert_ne!(key(&other, "2026-12-01"), key(&step, "2026-12-01"));
    }

    #[test]
    fn env_order_only_matters_for_repeated_names() {
        let mut one = ScriptStep::new(vec!["env".into()]);
        one.env = vec![("A".into(), "1".into()), ("B".into(), "2".into())];
        let mut two = one.clone();
        two.env.reverse();
        assert_eq!(key(&one, "x"), key(&two, "x"));
        let mut repeated = one.clone();
        repeated.env.push(("A".into(), "3".into()));
        assert_ne!(key(&repeated, "x"), key(&one, "x"));
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_423), "2025-12-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
    }
}
