//! The dpkg files that belong to one package alone, written into its layer so that the layer
//! never changes when its neighbours do: `var/lib/dpkg/info/<dpkg_name>.*` (its `.list`,
//! `.md5sums`, `.conffiles`, maintainer scripts, triggers, …) and, for scanners (Trivy, Syft),
//! `var/lib/dpkg/status.d/<name>` with its `.md5sums`.

use std::io::Write;
use std::path::Path;

use super::archive::malformed;
use super::control_tar::{info_mode, ControlMembers};
use super::data::DataFacts;
use super::DebError;

const INFO_DIR: &str = "var/lib/dpkg/info";
const STATUS_D_DIR: &str = "var/lib/dpkg/status.d";

/// Appends the package's dpkg files to `layer`; `dpkg_name` names the `info/` files (`name` or
/// `name:arch`).
pub(super) fn append<W: Write>(
    deb: &Path,
    dpkg_name: &str,
    control: &ControlMembers,
    files: &DataFacts,
    layer: &mut tar::Builder<W>,
) -> Result<(), DebError> {
    if !is_file_name(dpkg_name) {
        return Err(malformed(
            deb,
            format!("its dpkg name {dpkg_name:?} cannot name a file in {INFO_DIR}"),
        ));
    }
    // Checked by the control parser: every control file has a Package.
    let name = control.paragraph.get("Package").unwrap_or(dpkg_name);
    if !is_file_name(name) {
        return Err(malformed(
            deb,
            format!("its Package {name:?} cannot name a file in {STATUS_D_DIR}"),
        ));
    }
    let mut write = |path: String, mode: u32, content: &[u8]| {
        layer
            .append_data(&mut root_owned(mode, content.len()), path, content)
            .map_err(|source| DebError::Write {
                deb: deb.to_owned(),
                source,
            })
    };
    let list: String = files.paths.iter().map(|path| format!("{path}\n")).collect();
    write(
        format!("{INFO_DIR}/{dpkg_name}.list"),
        0o644,
        list.as_bytes(),
    )?;
    for (member, content) in &control.info_members {
        let mode = info_mode(member);
        write(format!("{INFO_DIR}/{dpkg_name}.{member}"), mode, content)?;
    }
    let md5sums = control.md5sums.as_deref().or(files.made_md5sums.as_deref());
    if let Some(made) = files
        .made_md5sums
        .as_deref()
        .filter(|made| !made.is_empty())
    {
        write(format!("{INFO_DIR}/{dpkg_name}.md5sums"), 0o644, made)?;
    }
    let mut status_d = root_owned(0o755, 0);
    status_d.set_entry_type(tar::EntryType::Directory);
    layer
        .append_data(&mut status_d, STATUS_D_DIR, std::io::empty())
        .map_err(|source| DebError::Write {
            deb: deb.to_owned(),
            source,
        })?;
    let mut write = |path: String, content: &[u8]| {
        layer
            .append_data(&mut root_owned(0o644, content.len()), path, content)
            .map_err(|source| DebError::Write {
                deb: deb.to_owned(),
                source,
            })
    };
    write(
        format!("{STATUS_D_DIR}/{name}"),
        control.paragraph.to_string().as_bytes(),
    )?;
    if let Some(md5sums) = md5sums.filter(|md5sums| !md5sums.is_empty()) {
        write(format!("{STATUS_D_DIR}/{name}.md5sums"), md5sums)?;
    }
    Ok(())
}

/// A non-empty name with no `/`, not `.` or `..`.
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// A header for a regular file owned by root.
fn root_owned(mode: u32, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_size(size as u64);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
        .set_username("root")
        .expect("\"root\" fits a tar header");
    header
        .set_groupname("root")
        .expect("\"root\" fits a tar header");
    header
}
