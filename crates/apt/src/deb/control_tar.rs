//! `control.tar`'s members: the control paragraph, `md5sums`, `conffiles`, and the maintainer
//! scripts and other files dpkg keeps in `var/lib/dpkg/info/`.

use std::io::Read;
use std::path::Path;

use super::archive::malformed;
use super::DebError;
use crate::control::{self, Paragraph};

/// Control members dpkg runs (maintainer scripts); written 0755 (every other member 0644).
pub const EXECUTABLE_MEMBERS: [&str; 5] = ["config", "postinst", "postrm", "preinst", "prerm"];

/// Members that mean work for `dpkg --configure` (scripts and trigger interests).
const SCRIPT_MEMBERS: [&str; 6] = [
    "config", "postinst", "postrm", "preinst", "prerm", "triggers",
];

/// Everything `control.tar` holds.
#[derive(Debug)]
pub(super) struct ControlMembers {
    pub(super) paragraph: Paragraph,
    /// The package's own `md5sums` member, as written.
    pub(super) md5sums: Option<Vec<u8>>,
    /// The conffiles the package ships (from `conffiles`; entries flagged `remove-on-upgrade`,
    /// which name files the package no longer ships, left out).
    pub(super) conffiles: Vec<String>,
    /// Every member but `control`, by name, sorted: what `var/lib/dpkg/info/` gets.
    pub(super) info_members: Vec<(String, Vec<u8>)>,
}

impl ControlMembers {
    /// The members that are maintainer scripts or trigger interests, sorted.
    pub(super) fn scripts(&self) -> Vec<String> {
        self.info_members
            .iter()
            .map(|(name, _)| name)
            .filter(|name| SCRIPT_MEMBERS.contains(&name.as_str()))
            .cloned()
            .collect()
    }
}

/// The mode a control member has in `var/lib/dpkg/info/`.
pub(super) fn info_mode(member: &str) -> u32 {
    if EXECUTABLE_MEMBERS.contains(&member) {
        0o755
    } else {
        0o644
    }
}

/// Reads the decompressed `control.tar` of `deb`.
pub(super) fn read(deb: &Path, control_tar: impl Read) -> Result<ControlMembers, DebError> {
    let unreadable = |error: std::io::Error| malformed(deb, format!("control.tar: {error}"));
    let mut paragraph = None;
    let mut info_members = Vec::new();
    let mut archive = tar::Archive::new(control_tar);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = path.trim_start_matches("./").trim_end_matches('/');
        if name.is_empty() || name == "." {
            continue;
        }
        if !entry.header().entry_type().is_file() || name.contains('/') {
            return Err(malformed(
                deb,
                format!("control.tar member {path:?} is not a plain file at its top level"),
            ));
        }
        let name = name.to_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(unreadable)?;
        if name == "control" {
            paragraph = Some(parse_control(deb, &content)?);
        } else {
            info_members.push((name, content));
        }
    }
    let Some(paragraph) = paragraph else {
        return Err(malformed(deb, "control.tar has no control file".into()));
    };
    info_members.sort();
    let member = |wanted: &str| {
        info_members
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, content)| content.clone())
    };
    let conffiles = member("conffiles")
        .map(|text| conffile_paths(deb, &text))
        .transpose()?
        .unwrap_or_default();
    Ok(ControlMembers {
        paragraph,
        md5sums: member("md5sums"),
        conffiles,
        info_members,
    })
}

fn parse_control(deb: &Path, content: &[u8]) -> Result<Paragraph, DebError> {
    let text = std::str::from_utf8(content)
        .map_err(|_| malformed(deb, "its control file is not UTF-8".into()))?;
    let mut paragraphs = control::parse(text)
        .map_err(|error| malformed(deb, format!("its control file: {error}")))?;
    let paragraph = match paragraphs.len() {
        1 => paragraphs.remove(0),
        n => {
            return Err(malformed(
                deb,
                format!("its control file has {n} paragraphs, not one"),
            ))
        }
    };
    for field in ["Package", "Version", "Architecture"] {
        if paragraph.get(field).is_none_or(str::is_empty) {
            return Err(malformed(deb, format!("its control file has no {field}")));
        }
    }
    Ok(paragraph)
}

/// The conffile paths of a `conffiles` member: one per line, after optional flags
/// (`remove-on-upgrade /etc/old`).
fn conffile_paths(deb: &Path, text: &[u8]) -> Result<Vec<String>, DebError> {
    let text = std::str::from_utf8(text)
        .map_err(|_| malformed(deb, "its conffiles member is not UTF-8".into()))?;
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        let Some(path) = words.pop().filter(|path| path.starts_with('/')) else {
            return Err(malformed(
                deb,
                format!("conffiles line {line:?} does not end with an absolute path"),
            ));
        };
        if !words.contains(&"remove-on-upgrade") {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}
