//! The YAML document of a build file as a tree of nodes that each keep where they were written,
//! built from saphyr-parser's events. Scalars stay as written (text and whether they were
//! quoted): what a value means is decided by the reader that expects it, so a plain `0755` can be
//! told from a quoted `"0755"`. Duplicate keys are refused here, at the second one. Aliases and
//! tags are refused (a build file has no use for them, and aliases could multiply its size).

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::error::{Fault, Problem};
use crate::position::Position;

/// One value of the document and where it starts.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub at: Position,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Scalar {
        text: String,
        plain: bool,
    },
    List(Vec<Node>),
    /// Entries in the order written; keys are unique.
    Map(Vec<(Key, Node)>),
}

#[cfg(test)]
impl Node {
    /// A scalar written at 1:1, for tests of the readers.
    pub(crate) fn scalar(text: &str, plain: bool) -> Node {
        let value = Value::Scalar {
            text: text.into(),
            plain,
        };
        let at = Position { line: 1, column: 1 };
        Node { at, value }
    }
}

/// A mapping key: always a scalar.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub text: String,
    pub at: Position,
}

/// A collection being read.
enum Open {
    List {
        at: Position,
        items: Vec<Node>,
    },
    Map {
        at: Position,
        entries: Vec<(Key, Node)>,
        /// The key read whose value comes next.
        key: Option<Key>,
    },
}

impl Open {
    fn close(self) -> Node {
        match self {
            Open::List { at, items } => Node {
                at,
                value: Value::List(items),
            },
            Open::Map { at, entries, .. } => Node {
                at,
                value: Value::Map(entries),
            },
        }
    }
}

/// Parses `text` into its one document; `None` when it holds none (empty, or only comments).
pub(crate) fn parse(text: &str) -> Result<Option<Node>, Fault> {
    let mut open: Vec<Open> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|error| Fault {
            at: error.marker().into(),
            problem: Problem::Syntax(error.info().to_owned()),
        })?;
        let at = Position::from(&span.start);
        let fault = |problem| Err(Fault { at, problem });
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return fault(Problem::SeveralDocuments);
                }
            }
            Event::Alias(_) => return fault(Problem::Alias),
            Event::Scalar(_, _, _, Some(_))
            | Event::SequenceStart(_, Some(_))
            | Event::MappingStart(_, Some(_)) => return fault(Problem::Tag),
            Event::Scalar(text, style, _, None) => {
                let value = Value::Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                };
                add(&mut open, &mut root, Node { at, value })?;
            }
            Event::SequenceStart(..) => open.push(Open::List {
                at,
                items: Vec::new(),
            }),
            Event::MappingStart(..) => open.push(Open::Map {
                at,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let done = open
                    .pop()
                    .expect("the parser balances collection starts and ends");
                add(&mut open, &mut root, done.close())?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
    Ok(root)
}

/// Adds a finished node to the collection being read, or makes it the document.
fn add(open: &mut [Open], root: &mut Option<Node>, node: Node) -> Result<(), Fault> {
    match open.last_mut() {
        None => *root = Some(node),
        Some(Open::List { items, .. }) => items.push(node),
        Some(Open::Map { entries, key, .. }) => match key.take() {
            Some(key) => entries.push((key, node)),
            None => *key = Some(new_key(entries, node)?),
        },
    }
    Ok(())
}

/// The key `node` of a map that already has `entries`.
fn new_key(entries: &[(Key, Node)], node: Node) -> Result<Key, Fault> {
    let Value::Scalar { text, .. } = node.value else {
        return Err(Fault {
            at: node.at,
            problem: Problem::ComplexKey,
        });
    };
    if let Some((first, _)) = entries.iter().find(|(key, _)| key.text == text) {
        return Err(Fault {
            at: node.at,
            problem: Problem::DuplicateKey {
                key: text,
                first: first.at,
            },
        });
    }
    Ok(Key { text, at: node.at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> (Position, String) {
        let fault = parse(text).unwrap_err();
        (fault.at, fault.problem.to_string())
    }

    #[test]
    fn nodes_keep_their_positions_and_styles() {
        let root = parse("a: 1\nlist:\n  - {x: \"0755\"}\n").unwrap().unwrap();
        let Value::Map(entries) = root.value else {
            panic!("not a map");
        };
        assert_eq!(entries[0].0.text, "a");
        assert_eq!(entries[0].0.at, Position { line: 1, column: 1 });
        assert_eq!(entries[1].1.at.line, 3);
        let Value::List(items) = &entries[1].1.value else {
            panic!("not a list");
        };
        let Value::Map(inner) = &items[0].value else {
            panic!("not a map");
        };
        assert_eq!(inner[0].0.at, Position { line: 3, column: 6 });
        assert_eq!(inner[0].1.at, Position { line: 3, column: 9 });
        assert!(
            matches!(&inner[0].1.value, Value::Scalar { text, plain: false } if text == "0755")
        );
        assert!(matches!(
            &entries[0].1.value,
            Value::Scalar { plain: true, .. }
        ));
    }

    #[test]
    fn duplicate_keys_are_refused_at_the_second() {
        assert_eq!(
            problem("a: 1\nb:\n  c: 1\n  'c': 2\n"),
            (
                Position { line: 4, column: 3 },
                "duplicate key \"c\" (first given at line 3, column 3)".to_owned()
            )
        );
    }

    #[test]
    fn empty_documents_have_no_node() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
    }

    #[test]
    fn aliases_tags_complex_keys_and_streams_are_refused() {
        assert_eq!(
            problem("a: &x 1\nb: *x\n").0,
            Position { line: 2, column: 4 }
        );
        assert_eq!(problem("a: !!str 1\n").0.line, 1);
        assert_eq!(problem("? [a]\n: 1\n").0.line, 1);
        assert_eq!(problem("a: 1\n---\nb: 2\n").0.line, 2);
    }
}
