//! Reading typed values out of nodes: mappings with a fixed set of keys, strings, integers,
//! lists and string maps. Every refusal is a [`Fault`] at the key or value it is about.
//!
//! Plain scalars are typed as YAML 1.2's core schema types them (`null`, `true`, `12`, ...) only
//! to say what was found; any scalar but null is accepted where a string is expected, so that
//! `user: 1000` or `APP_PORT: 8080` mean what they say.

use crate::error::{Fault, Found, Problem};
use crate::position::Position;
use crate::yaml::{Key, Node, Value};

/// A mapping whose keys have been checked against the ones it may have.
pub(crate) struct Fields<'a> {
    pub at: Position,
    pub entries: &'a [(Key, Node)],
    context: &'static str,
}

impl<'a> Fields<'a> {
    /// `node` (`what` in type errors, `context` in key errors) as a mapping with keys from
    /// `allowed` only.
    pub fn of(
        node: &'a Node,
        what: &str,
        context: &'static str,
        allowed: &'static [&'static str],
    ) -> Result<Self, Fault> {
        let fields = Self::any(node, what, context)?;
        fields.only(allowed)?;
        Ok(fields)
    }

    /// `node` as a mapping, its keys not checked yet (see [`Fields::only`]).
    pub fn any(node: &'a Node, what: &str, context: &'static str) -> Result<Self, Fault> {
        match &node.value {
            Value::Map(entries) => Ok(Fields {
                at: node.at,
                entries,
                context,
            }),
            _ => Err(wrong_type(node, what, "a mapping")),
        }
    }

    /// Refuses the first key not in `allowed`.
    pub fn only(&self, allowed: &'static [&'static str]) -> Result<(), Fault> {
        match self
            .entries
            .iter()
            .find(|(key, _)| !allowed.contains(&key.text.as_str()))
        {
            Some((key, _)) => Err(Fault::new(
                key.at,
                Problem::UnknownKey {
                    key: key.text.clone(),
                    context: self.context,
                    expected: allowed,
                },
            )),
            None => Ok(()),
        }
    }

    /// What the mapping is, as key errors name it (`an apt entry`).
    pub fn context(&self) -> &'static str {
        self.context
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entry(key).map(|(_, node)| node)
    }

    pub fn entry(&self, key: &str) -> Option<(&'a Key, &'a Node)> {
        self.entries
            .iter()
            .find(|(candidate, _)| candidate.text == key)
            .map(|(key, node)| (key, node))
    }

    /// The value of `key`, which must be there.
    pub fn require(&self, key: &'static str) -> Result<&'a Node, Fault> {
        self.get(key).ok_or_else(|| {
            Fault::new(
                self.at,
                Problem::MissingKey {
                    key,
                    context: self.context,
                },
            )
        })
    }
}

/// What YAML's core schema makes of `node`, for messages.
pub(crate) fn found(node: &Node) -> Found {
    match &node.value {
        Value::List(_) => Found::List,
        Value::Map(_) => Found::Mapping,
        Value::Scalar { plain: false, .. } => Found::String,
        Value::Scalar { text, plain: true } => plain_type(text),
    }
}

fn plain_type(text: &str) -> Found {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Found::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => Found::Boolean,
        _ if is_number(text) => Found::Number,
        _ => Found::String,
    }
}

fn is_number(text: &str) -> bool {
    let radix = |prefix: &str, radix: u32| {
        text.strip_prefix(prefix)
            .is_some_and(|digits| u64::from_str_radix(digits, radix).is_ok())
    };
    radix("0o", 8)
        || radix("0x", 16)
        || matches!(text, ".inf" | "-.inf" | "+.inf" | ".nan" | ".NaN" | ".NAN")
        || (text.parse::<f64>().is_ok() && text.bytes().any(|byte| byte.is_ascii_digit()))
}

/// A key as messages name it: `"src"`.
pub(crate) fn key(name: &str) -> String {
    format!("\"{name}\"")
}

/// `what` (a quoted key, or a description such as `a layer entry`) is not `expected`.
pub(crate) fn wrong_type(node: &Node, what: &str, expected: &'static str) -> Fault {
    Fault::new(
        node.at,
        Problem::WrongType {
            what: what.to_owned(),
            expected,
            found: found(node),
        },
    )
}

/// The text of a scalar that is not null.
pub(crate) fn string(node: &Node, what: &str) -> Result<String, Fault> {
    match &node.value {
        Value::Scalar { text, .. } if found(node) != Found::Null => Ok(text.clone()),
        _ => Err(wrong_type(node, what, "a string")),
    }
}

/// An integer written as a plain decimal number.
pub(crate) fn integer(node: &Node, what: &str) -> Result<i64, Fault> {
    match &node.value {
        Value::Scalar { text, plain: true } => text
            .parse()
            .map_err(|_| wrong_type(node, what, "a whole number")),
        _ => Err(wrong_type(node, what, "a whole number")),
    }
}

/// `true` or `false` (any case YAML's core schema reads as a boolean), under the key `name`.
pub(crate) fn boolean(node: &Node, name: &str) -> Result<bool, Fault> {
    match &node.value {
        Value::Scalar { text, plain: true } if found(node) == Found::Boolean => {
            Ok(text.eq_ignore_ascii_case("true"))
        }
        _ => Err(wrong_type(node, &key(name), "true or false")),
    }
}

/// The items of a list.
pub(crate) fn list<'a>(
    node: &'a Node,
    what: &str,
    expected: &'static str,
) -> Result<&'a [Node], Fault> {
    match &node.value {
        Value::List(items) => Ok(items),
        _ => Err(wrong_type(node, what, expected)),
    }
}

/// A list of strings (`[/usr/local/bin/app, --serve]`).
pub(crate) fn strings(node: &Node, what: &str) -> Result<Vec<String>, Fault> {
    let item = format!("an item of {what}");
    list(node, what, "a list of strings")?
        .iter()
        .map(|node| string(node, &item))
        .collect()
}

/// A mapping of strings to strings, in the order written; each with the position of its value.
pub(crate) fn string_map(
    node: &Node,
    what: &str,
    context: &'static str,
) -> Result<Vec<(String, String, Position)>, Fault> {
    let fields = Fields::any(node, what, context)?;
    fields
        .entries
        .iter()
        .map(|(name, value)| {
            Ok((
                name.text.clone(),
                string(value, &key(&name.text))?,
                value.at,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(text: &str, plain: bool) -> Node {
        Node::scalar(text, plain)
    }

    #[test]
    fn plain_scalars_are_typed_as_the_core_schema_types_them() {
        for (text, expected) in [
            ("", Found::Null),
            ("~", Found::Null),
            ("null", Found::Null),
            ("true", Found::Boolean),
            ("False", Found::Boolean),
            ("12", Found::Number),
            ("-1.5e3", Found::Number),
            ("0o755", Found::Number),
            ("0x1F", Found::Number),
            (".inf", Found::Number),
            ("yes", Found::String),
            ("inf", Found::String),
            ("1000:1000", Found::String),
            ("/etc/motd", Found::String),
        ] {
            assert_eq!(found(&scalar(text, true)), expected, "{text}");
        }
        assert_eq!(found(&scalar("null", false)), Found::String);
    }

    #[test]
    fn strings_take_any_scalar_but_null() {
        assert_eq!(string(&scalar("8080", true), "k").unwrap(), "8080");
        assert_eq!(string(&scalar("", false), "k").unwrap(), "");
        let fault = string(&scalar("~", true), &key("src")).unwrap_err();
        assert_eq!(
            fault.problem.to_string(),
            "\"src\" must be a string, found nothing (null)"
        );
    }

    #[test]
    fn integers_are_plain_decimals() {
        assert_eq!(integer(&scalar("100", true), "n").unwrap(), 100);
        assert_eq!(integer(&scalar("-1", true), "n").unwrap(), -1);
        for (text, plain) in [("100", false), ("1.5", true), ("x", true), ("0o7", true)] {
            assert!(integer(&scalar(text, plain), "n").is_err(), "{text}");
        }
    }
}
