//! The dpkg database the final layer holds: `/var/lib/dpkg/status` (the base's entries with the
//! new packages', written as dpkg writes them), `/var/lib/apt/extended_states` (which packages
//! were installed automatically), and the files an upgrade leaves behind for whiteouts.

use std::collections::BTreeSet;

use crate::control::{self, ControlError, Paragraph};
use crate::deb::{self, UsrMerge};
use crate::package::MultiArch;

/// Fields dpkg knows, in the order it writes them in `status`; the other (user-defined) fields
/// follow in the order the control file has them.
const STATUS_FIELD_ORDER: [&str; 28] = [
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// Fields dpkg keeps for `available` only, or that `status` derives from the installation
/// rather than from the control file.
const NOT_FROM_CONTROL: [&str; 9] = [
    "Filename",
    "Size",
    "MD5sum",
    "MSDOS-Filename",
    "Status",
    "Config-Version",
    "Conffiles",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// Boolean fields dpkg writes only when `yes`.
const YES_ONLY_FIELDS: [&str; 2] = ["Essential", "Protected"];

/// How far dpkg got with a package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// `install ok installed`: configured (no maintainer scripts left to run).
    Installed,
    /// `install ok unpacked`: files in place, `dpkg --configure` still to run.
    Unpacked,
}

impl State {
    fn status(self) -> &'static str {
        match self {
            State::Installed => "install ok installed",
            State::Unpacked => "install ok unpacked",
        }
    }
}

/// A package the build adds (or upgrades) on top of the base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPackage {
    /// Its `.deb`'s control file.
    pub control: Paragraph,
    /// Each conffile with the md5 hex of the content the package ships.
    pub conffiles: Vec<(String, String)>,
    pub state: State,
    /// Pulled in by another package rather than requested.
    pub auto_installed: bool,
}

impl NewPackage {
    fn name(&self) -> &str {
        self.control.get("Package").unwrap_or_default()
    }

    fn architecture(&self) -> &str {
        self.control.get("Architecture").unwrap_or_default()
    }

    /// Whether `entry` (a status or extended_states paragraph) is the same package instance:
    /// the same name and, for `Multi-Arch: same` packages, the same architecture (any other
    /// package has one instance per name, whatever its architecture).
    fn replaces(&self, entry: &Paragraph) -> bool {
        entry.get("Package") == Some(self.name())
            && (entry.get("Architecture") == Some(self.architecture())
                || (MultiArch::of(&self.control) != MultiArch::Same
                    && MultiArch::of(entry) != MultiArch::Same))
    }
}

/// A dpkg database that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum DpkgDbError {
    #[error("the base image's /var/lib/dpkg/status is malformed at {0}")]
    BaseStatus(ControlError),
    #[error("the base image's /var/lib/apt/extended_states is malformed at {0}")]
    BaseExtendedStates(ControlError),
    #[error("a new package's control file has no {field} (package {package:?})")]
    MissingField {
        package: String,
        field: &'static str,
    },
    #[error(
        "package {package} ({architecture}) is added twice; each package can be installed once"
    )]
    Duplicate {
        package: String,
        architecture: String,
    },
}

/// The base's status with the new packages: a base entry for the same package instance is
/// replaced (an upgrade); the new entries written as dpkg writes them (its fields in its
/// order, `Status:` after `Package:`/`Essential:`, `Conffiles:` lines ` /path md5`,
/// `available`-only fields dropped); entries sorted by package name, then architecture, as dpkg
/// sorts them. Deterministic, byte for byte.
pub fn status(base_status: &str, new: &[NewPackage]) -> Result<String, DpkgDbError> {
    check_new(new)?;
    let base = control::parse(base_status).map_err(DpkgDbError::BaseStatus)?;
    let mut entries: Vec<Paragraph> = Vec::new();
    let mut replaced: Vec<Option<&Paragraph>> = vec![None; new.len()];
    for entry in &base {
        match new.iter().position(|package| package.replaces(entry)) {
            Some(index) => replaced[index] = Some(entry),
            None => entries.push(entry.clone()),
        }
    }
    for (package, old) in new.iter().zip(replaced) {
        entries.push(status_entry(package, old));
    }
    sort_entries(&mut entries);
    Ok(entries.iter().map(|entry| format!("{entry}\n")).collect())
}

/// `/var/lib/apt/extended_states`: the base's entries kept (but for packages the build adds
/// again), and `Package/Architecture/Auto-Installed: 1` for each new auto-installed package;
/// sorted by package name, then architecture, so that the same packages give the same bytes.
pub fn extended_states(base: Option<&str>, new: &[NewPackage]) -> Result<String, DpkgDbError> {
    check_new(new)?;
    let base = control::parse(base.unwrap_or_default()).map_err(DpkgDbError::BaseExtendedStates)?;
    let mut entries: Vec<Paragraph> = base
        .into_iter()
        .filter(|entry| !new.iter().any(|package| package.replaces(entry)))
        .collect();
    for package in new.iter().filter(|package| package.auto_installed) {
        let mut entry = Paragraph::new();
        entry.set("Package", package.name());
        entry.set("Architecture", package.architecture());
        entry.set("Auto-Installed", "1");
        entries.push(entry);
    }
    sort_entries(&mut entries);
    Ok(entries.iter().map(|entry| format!("{entry}\n")).collect())
}

/// For an upgraded base package: the paths of its old `.list` (`old_list`) that the new version
/// (`new_paths`, as [`deb::Converted::paths`] has them) no longer ships, as layer paths
/// (relative, moved through the usr merge like the new files, so a path that only moved from
/// `/bin` to `/usr/bin` has not vanished), sorted. The root and the usr-merge links themselves
/// are never among them; directories are (the caller drops what the base holds as directories).
pub fn vanished_paths(old_list: &str, new_paths: &[String], usr: &UsrMerge) -> Vec<String> {
    let old = layer_paths(old_list.lines().map(str::trim_end), usr);
    let new = layer_paths(new_paths.iter().map(String::as_str), usr);
    old.difference(&new).cloned().collect()
}

/// Package paths as the layer paths they land at, the root and usr-merge links left out.
fn layer_paths<'a>(paths: impl Iterator<Item = &'a str>, usr: &UsrMerge) -> BTreeSet<String> {
    paths
        .filter_map(|path| deb::layer_path_of(path, usr))
        .filter(|path| !path.is_empty())
        .collect()
}

/// Every new package names itself, and none is added twice.
fn check_new(new: &[NewPackage]) -> Result<(), DpkgDbError> {
    for (index, package) in new.iter().enumerate() {
        for field in ["Package", "Version", "Architecture"] {
            if package.control.get(field).is_none_or(str::is_empty) {
                return Err(DpkgDbError::MissingField {
                    package: package.name().to_owned(),
                    field,
                });
            }
        }
        if new[..index]
            .iter()
            .any(|earlier| earlier.replaces(&package.control))
        {
            return Err(DpkgDbError::Duplicate {
                package: package.name().to_owned(),
                architecture: package.architecture().to_owned(),
            });
        }
    }
    Ok(())
}

/// A new package's status entry, from its control file; `old` is the base entry it replaces.
fn status_entry(package: &NewPackage, old: Option<&Paragraph>) -> Paragraph {
    let mut from_control = package.control.clone();
    for field in NOT_FROM_CONTROL {
        from_control.remove(field);
    }
    for field in YES_ONLY_FIELDS {
        if from_control.get(field).is_some_and(|value| value != "yes") {
            from_control.remove(field);
        }
    }
    from_control.set("Status", package.state.status());
    if let Some(config_version) = config_version(package.state, old) {
        from_control.set("Config-Version", config_version);
    }
    if !package.conffiles.is_empty() {
        let lines: String = package
            .conffiles
            .iter()
            .map(|(path, md5)| format!("\n {path} {md5}"))
            .collect();
        from_control.set("Conffiles", lines);
    }
    let mut entry = Paragraph::new();
    for field in STATUS_FIELD_ORDER {
        if let Some(value) = from_control.remove(field) {
            entry.set(field, value);
        }
    }
    for (field, value) in from_control.fields() {
        entry.set(field, value);
    }
    entry
}

/// The version whose configuration is on disk, for a package left unpacked over a configured
/// base version (so that `dpkg --configure` runs `postinst configure OLD-VERSION`, an upgrade).
fn config_version(state: State, old: Option<&Paragraph>) -> Option<String> {
    let old = old.filter(|_| state == State::Unpacked)?;
    if let Some(config_version) = old.get("Config-Version") {
        return Some(config_version.to_owned());
    }
    let configured = old
        .get("Status")
        .is_some_and(|status| status.ends_with(" installed"));
    old.get("Version").filter(|_| configured).map(str::to_owned)
}

fn sort_entries(entries: &mut [Paragraph]) {
    entries.sort_by_cached_key(|entry| {
        (
            entry.get("Package").unwrap_or_default().to_owned(),
            entry.get("Architecture").unwrap_or_default().to_owned(),
        )
    });
}

#[cfg(test)]
mod tests;
