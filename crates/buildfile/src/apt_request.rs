//! An apt request as the build file and `--apt` write it: each package in one of apt's shapes
//! (`name`, `name=version`, `name/suite`, `name:arch`, an architecture before a version or suite),
//! and the value of an `apt:` key — a list (one layer per package) or a mapping with `group`
//! or `packages` — as the builder's [`AptRequest`].

use std::collections::HashMap;

use layerize_builder::build::apt::AptRequest;

use crate::error::{AptSyntaxError, Fault, Problem};
use crate::position::Position;
use crate::read::{boolean, key, list, string, wrong_type, Fields};
use crate::yaml::{Node, Value};

/// The keys of an `apt:` mapping in a layer entry.
const REQUEST_KEYS: &[&str] = &["packages", "group"];

/// Checks that `text` is a package as apt takes it on its command line:
/// `NAME[:ARCH][=VERSION|/SUITE]`, with a Debian package name (`[a-z0-9][a-z0-9+.-]+`).
pub fn check_apt_package(text: &str) -> Result<(), AptSyntaxError> {
    package_key(text).map(|_| ())
}

/// The package and architecture `text` asks for (`curl`, `curl:i386`), which one request may
/// name once; or why `text` is not a package.
fn package_key(text: &str) -> Result<&str, AptSyntaxError> {
    let refuse = |reason| {
        Err(AptSyntaxError::Package {
            text: text.to_owned(),
            reason,
        })
    };
    let (target, selector) = match text.find(['=', '/']) {
        Some(at) => (&text[..at], Some((text.as_bytes()[at], &text[at + 1..]))),
        None => (text, None),
    };
    let (name, arch) = match target.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (target, None),
    };
    if !valid_package_name(name) {
        return refuse("a Debian package name is at least two characters of a-z, 0-9, '+', '-' and '.', starting with a letter or digit");
    }
    if let Some(arch) = arch {
        if arch.is_empty()
            || !arch
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return refuse(
                "an architecture after ':' is a-z, 0-9 and '-' (amd64, arm64, i386, any)",
            );
        }
    }
    match selector {
        Some((b'=', version)) if !valid_version(version) => refuse(
            "a version after '=' starts with a digit and holds only letters, digits, '.', '+', '~', ':' and '-'",
        ),
        Some((b'/', suite)) if !valid_suite(suite) => {
            refuse("a suite after '/' is letters, digits, '.', '_', '+' and '-' (bookworm-backports, stable)")
        }
        _ => Ok(target),
    }
}

/// Debian policy 5.6.1: lower-case letters, digits, `+`, `-`, `.`; at least two characters,
/// starting with a letter or digit.
fn valid_package_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(b))
}

/// Debian policy 5.6.12: `[EPOCH:]UPSTREAM[-REVISION]`, starting with a digit.
fn valid_version(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
}

fn valid_suite(suite: &str) -> bool {
    !suite.is_empty()
        && suite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// The value of an `apt:` key in a layer entry: a list of packages, or `{group: [...]}`, or
/// `{packages: [...], group: BOOL}`.
pub(crate) fn read(node: &Node) -> Result<AptRequest, Fault> {
    if let Value::List(_) = node.value {
        return Ok(AptRequest {
            packages: packages(node, "apt")?,
            group: false,
        });
    }
    if !matches!(node.value, Value::Map(_)) {
        let expected = "a list of packages ([curl, git]) or a mapping ({group: [...]})";
        return Err(wrong_type(node, &key("apt"), expected));
    }
    let fields = Fields::of(node, &key("apt"), "an apt entry", REQUEST_KEYS)?;
    from_fields(&fields)?.ok_or_else(|| {
        let problem = Problem::AptNoPackages {
            context: "an apt entry",
        };
        Fault::new(fields.at, problem)
    })
}

/// The request in a mapping whose other keys were checked: `None` when it has neither
/// `packages` nor `group`.
pub(crate) fn from_fields(fields: &Fields<'_>) -> Result<Option<AptRequest>, Fault> {
    let listed = fields
        .get("packages")
        .map(|node| packages(node, "packages"))
        .transpose()?;
    let Some((group_key, group)) = fields.entry("group") else {
        return Ok(listed.map(|packages| AptRequest {
            packages,
            group: false,
        }));
    };
    if let Value::List(_) = group.value {
        if listed.is_some() {
            return Err(Fault::new(group_key.at, Problem::AptGroupAndPackages));
        }
        return Ok(Some(AptRequest {
            packages: packages(group, "group")?,
            group: true,
        }));
    }
    let group = match &group.value {
        Value::Scalar { .. } => boolean(group, "group")?,
        _ => {
            let expected = "a list of packages, or true or false beside \"packages\"";
            return Err(wrong_type(group, &key("group"), expected));
        }
    };
    match listed {
        Some(packages) => Ok(Some(AptRequest { packages, group })),
        None => Err(Fault::new(
            fields.at,
            Problem::AptNoPackages {
                context: fields.context(),
            },
        )),
    }
}

/// A non-empty list of packages under the key `name`, each checked, none twice.
fn packages(node: &Node, name: &'static str) -> Result<Vec<String>, Fault> {
    let items = list(node, &key(name), "a list of packages")?;
    if items.is_empty() {
        let problem = Problem::EmptyList {
            key: name,
            item: "package",
        };
        return Err(Fault::new(node.at, problem));
    }
    let item_what = format!("an item of {}", key(name));
    let mut seen: HashMap<String, Position> = HashMap::new();
    let mut packages = Vec::with_capacity(items.len());
    for item in items {
        let text = string(item, &item_what)?;
        let target = package_key(&text)
            .map_err(|error| Fault::new(item.at, Problem::AptSyntax(error)))?
            .to_owned();
        if let Some(first) = seen.get(&target) {
            let problem = Problem::AptPackageTwice {
                name: target,
                first: *first,
            };
            return Err(Fault::new(item.at, problem));
        }
        seen.insert(target, item.at);
        packages.push(text);
    }
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_take_apts_shapes() {
        for ok in [
            "curl",
            "g++",
            "libc6.1",
            "0ad",
            "curl=7.88.1-10+deb12u5",
            "tzdata=2024a-0+deb12u1",
            "vim=2:9.0.1378-2",
            "curl/bookworm-backports",
            "libc6:i386",
            "python3:any",
            "libc6:i386=2.36-9",
            "libc6:arm64/stable",
        ] {
            assert_eq!(check_apt_package(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "c",
            "Curl",
            "-curl",
            "cu rl",
            "curl_x",
            "curl:",
            "curl:AMD64",
            "curl=",
            "curl=v1",
            "curl=1 2",
            "curl/",
            "curl/a/b",
            "=1.0",
            "curl:i386:arm64",
        ] {
            assert!(check_apt_package(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_request_names_a_package_and_architecture_once() {
        assert_eq!(package_key("curl=7.88").unwrap(), "curl");
        assert_eq!(package_key("curl/stable").unwrap(), "curl");
        assert_eq!(package_key("libc6:i386=2.36").unwrap(), "libc6:i386");
    }
}
