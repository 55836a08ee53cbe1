//! A files entry's `mode` and `owner`.
//!
//! `mode` is octal and accepted only where no reader could take it otherwise: a quoted string of
//! octal digits (`"0755"`, `"755"`, `"4755"`) or YAML 1.2's octal integer (`0o755`). A plain
//! number is refused: YAML 1.1 reads `0755` as octal 493 and YAML 1.2 as decimal 755, and a
//! plain `755` is decimal to YAML but octal to chmod.

use crate::error::{Fault, Problem};
use crate::read::{key, string, wrong_type};
use crate::yaml::{Node, Value};

/// The highest mode: permission bits, set-uid, set-gid and sticky.
const MAX_MODE: u32 = 0o7777;

/// The permission bits written at `node`.
pub(crate) fn mode(node: &Node) -> Result<u32, Fault> {
    let Value::Scalar { text, plain } = &node.value else {
        return Err(wrong_type(
            node,
            &key("mode"),
            "an octal mode like \"0755\"",
        ));
    };
    let invalid = |reason| {
        Fault::new(
            node.at,
            Problem::InvalidMode {
                text: text.clone(),
                reason,
            },
        )
    };
    let digits = match (plain, text.strip_prefix("0o")) {
        (_, Some(digits)) => digits,
        (false, None) => text.as_str(),
        (true, None) => {
            return Err(invalid(
                "a plain number is ambiguous (YAML 1.1 reads 0755 as octal, YAML 1.2 as decimal 755, and chmod reads 755 as octal); quote it, \"0755\", or write 0o755",
            ))
        }
    };
    if digits.is_empty() || !digits.bytes().all(|digit| (b'0'..=b'7').contains(&digit)) {
        return Err(invalid("not an octal number like \"0755\""));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= MAX_MODE => Ok(mode),
        _ => Err(invalid(
            "above 7777 (permission bits, set-uid, set-gid and sticky are all a mode holds)",
        )),
    }
}

/// The `UID:GID` written at `node`.
pub(crate) fn owner(node: &Node) -> Result<(u32, u32), Fault> {
    let text = string(node, &key("owner"))?;
    let ids = text
        .split_once(':')
        .and_then(|(uid, gid)| Some((id(uid)?, id(gid)?)));
    ids.ok_or_else(|| Fault::new(node.at, Problem::InvalidOwner(text)))
}

fn id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|digit| digit.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Position;

    fn scalar(text: &str, plain: bool) -> Node {
        Node::scalar(text, plain)
    }

    #[test]
    fn modes_are_octal_strings_or_yaml_1_2_octal_integers() {
        for (text, plain, expected) in [
            ("0755", false, 0o755),
            ("755", false, 0o755),
            ("4755", false, 0o4755),
            ("0", false, 0),
            ("0o644", true, 0o644),
            ("0o644", false, 0o644),
        ] {
            assert_eq!(mode(&scalar(text, plain)).unwrap(), expected, "{text}");
        }
        for (text, plain, reason) in [
            ("0755", true, "ambiguous"),
            ("755", true, "ambiguous"),
            ("493", true, "ambiguous"),
            ("0o", true, "not an octal"),
            ("0789", false, "not an octal"),
            ("rwx", false, "not an octal"),
            ("", false, "not an octal"),
            ("17777", false, "above 7777"),
            ("0o77777777777777", true, "above 7777"),
        ] {
            let fault = mode(&scalar(text, plain)).unwrap_err();
            assert_eq!(fault.at, Position { line: 1, column: 1 });
            let message = fault.problem.to_string();
            assert!(message.starts_with(&format!("mode {text}: ")), "{message}");
            assert!(message.contains(reason), "{text}: {message}");
        }
    }

    #[test]
    fn owners_are_numeric_uid_gid() {
        assert_eq!(owner(&scalar("1000:1000", true)).unwrap(), (1000, 1000));
        assert_eq!(owner(&scalar("0:42", false)).unwrap(), (0, 42));
        for text in [
            "1000",
            "app:app",
            "1000:",
            ":1",
            "-1:0",
            "1:2:3",
            "99999999999:0",
        ] {
            let message = owner(&scalar(text, false)).unwrap_err().problem.to_string();
            assert_eq!(
                message,
                format!("owner \"{text}\" must be UID:GID with numeric ids, e.g. \"1000:1000\"")
            );
        }
    }
}
