//! Relationship fields (`Depends`, `Pre-Depends`, `Recommends`, `Conflicts`, `Breaks`,
//! `Provides`): `a (>= 1.0) | b:any, c (<< 2) [amd64]` parsed into groups of alternatives, each a
//! package name, an optional architecture qualifier and an optional version constraint.
//! Architecture restriction lists and build profiles are accepted and ignored: binary indexes
//! have already been built for one architecture.

use std::fmt;

use crate::version::{Version, VersionError};

/// A relationship field that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelationError {
    #[error("{field:?}: an empty alternative in {group:?}")]
    EmptyAlternative { field: String, group: String },
    #[error("{field:?}: {name:?} is not a package name")]
    BadName { field: String, name: String },
    #[error("{field:?}: {relation:?} has an unclosed {open:?}")]
    Unclosed {
        field: String,
        relation: String,
        open: char,
    },
    #[error("{field:?}: {constraint:?} is not `(OPERATOR VERSION)` with one of << <= = >= >>")]
    BadConstraint { field: String, constraint: String },
    #[error("{field:?}: {source}")]
    BadVersion {
        field: String,
        #[source]
        source: VersionError,
    },
    #[error("{field:?}: unexpected {rest:?} after {name:?}")]
    Trailing {
        field: String,
        name: String,
        rest: String,
    },
}

/// A version constraint's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `<<`
    Earlier,
    /// `<=` (and the obsolete `<`)
    EarlierOrEqual,
    /// `=`
    Equal,
    /// `>=` (and the obsolete `>`)
    LaterOrEqual,
    /// `>>`
    Later,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "<<" => Op::Earlier,
            "<=" | "<" => Op::EarlierOrEqual,
            "=" => Op::Equal,
            ">=" | ">" => Op::LaterOrEqual,
            ">>" => Op::Later,
            _ => return None,
        })
    }

    /// Whether `version` satisfies `OP bound`.
    pub fn admits(self, version: &Version, bound: &Version) -> bool {
        let ordering = version.cmp(bound);
        match self {
            Op::Earlier => ordering.is_lt(),
            Op::EarlierOrEqual => ordering.is_le(),
            Op::Equal => ordering.is_eq(),
            Op::LaterOrEqual => ordering.is_ge(),
            Op::Later => ordering.is_gt(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Earlier => "<<",
            Op::EarlierOrEqual => "<=",
            Op::Equal => "=",
            Op::LaterOrEqual => ">=",
            Op::Later => ">>",
        })
    }
}

/// One relation: `name[:arch] [(OP VERSION)]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Relation {
    pub name: String,
    /// The qualifier after `:` — `any`, `native` or an architecture.
    pub arch: Option<String>,
    pub constraint: Option<(Op, Version)>,
}

impl Relation {
    /// Whether `version` satisfies this relation's constraint (any version does without one).
    pub fn admits(&self, version: &Version) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(op, bound)| op.admits(version, bound))
    }
}

/// Written as in a control file: `name:arch (OP VERSION)`.
impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some((op, version)) = &self.constraint {
            write!(f, " ({op} {version})")?;
        }
        Ok(())
    }
}

/// `a | b`: satisfied by any one of them, the first preferred.
pub type Alternatives = Vec<Relation>;

/// The package names a relationship field's value mentions (`Provides:` included). A value
/// that does not parse names none here; the solver reports it where it matters.
pub fn relation_names(value: &str) -> Vec<String> {
    parse_relations(value)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .map(|relation| relation.name)
        .collect()
}

/// Parses a relationship field into its comma-separated groups of `|`-separated alternatives.
/// An empty field (or one of only white space and commas) has no groups.
pub fn parse_relations(field: &str) -> Result<Vec<Alternatives>, RelationError> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for relation in group.split('|') {
            if relation.trim().is_empty() {
                return Err(RelationError::EmptyAlternative {
                    field: field.to_owned(),
                    group: group.trim().to_owned(),
                });
            }
            alternatives.push(parse_relation(field, relation)?);
        }
        groups.push(alternatives);
    }
    Ok(groups)
}

fn parse_relation(field: &str, text: &str) -> Result<Relation, RelationError> {
    let text = text.trim();
    let name_end = text
        .find(|c: char| c.is_whitespace() || "([<".contains(c))
        .unwrap_or(text.len());
    let (qualified, mut rest) = text.split_at(name_end);
    let (name, arch) = match qualified.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (qualified, None),
    };
    let valid = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
    };
    if !valid(name) || arch.is_some_and(|arch| !valid(arch)) {
        return Err(RelationError::BadName {
            field: field.to_owned(),
            name: qualified.to_owned(),
        });
    }
    let mut constraint = None;
    rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('(') {
        let Some((inside, after)) = inner.split_once(')') else {
            return Err(RelationError::Unclosed {
                field: field.to_owned(),
                relation: text.to_owned(),
                open: '(',
            });
        };
        constraint = Some(parse_constraint(field, inside)?);
        rest = after.trim_start();
    }
    // Architecture restrictions `[amd64 !i386]` and build profiles `<!nocheck>`: accepted, ignored.
    while let Some(open) = rest.chars().next().filter(|c| "[<".contains(*c)) {
        let close = if open == '[' { ']' } else { '>' };
        let Some(end) = rest.find(close) else {
            return Err(RelationError::Unclosed {
                field: field.to_owned(),
                relation: text.to_owned(),
                open,
            });
        };
        rest = rest[end + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(RelationError::Trailing {
            field: field.to_owned(),
            name: qualified.to_owned(),
            rest: rest.to_owned(),
        });
    }
    Ok(Relation {
        name: name.to_owned(),
        arch: arch.map(str::to_owned),
        constraint,
    })
}

fn parse_constraint(field: &str, inside: &str) -> Result<(Op, Version), RelationError> {
    let inside = inside.trim();
    let op_end = inside
        .find(|c: char| !"<=>".contains(c))
        .unwrap_or(inside.len());
    let (op, version) = inside.split_at(op_end);
    let bad = || RelationError::BadConstraint {
        field: field.to_owned(),
        constraint: format!("({inside})"),
    };
    let op = Op::parse(op).ok_or_else(bad)?;
    if version.trim().is_empty() {
        return Err(bad());
    }
    let version = version
        .trim()
        .parse()
        .map_err(|source| RelationError::BadVersion {
            field: field.to_owned(),
            source,
        })?;
    Ok((op, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(name: &str, arch: Option<&str>, constraint: Option<(Op, &str)>) -> Relation {
        Relation {
            name: name.into(),
            arch: arch.map(Into::into),
            constraint: constraint.map(|(op, version)| (op, version.parse().unwrap())),
        }
    }

    #[test]
    fn groups_alternatives_qualifiers_and_constraints() {
        let parsed =
            parse_relations("a (>= 1.0) | b:any, c (<< 2) [amd64], d:i386 (=1:2-3), e <!nocheck>")
                .unwrap();
        assert_eq!(
            parsed,
            vec![
                vec![
                    relation("a", None, Some((Op::LaterOrEqual, "1.0"))),
                    relation("b", Some("any"), None)
                ],
                vec![relation("c", None, Some((Op::Earlier, "2")))],
                vec![relation("d", Some("i386"), Some((Op::Equal, "1:2-3")))],
                vec![relation("e", None, None)],
            ]
        );
        assert_eq!(parsed[0][0].to_string(), "a (>= 1.0)");
        assert_eq!(parsed[2][0].to_string(), "d:i386 (= 1:2-3)");
    }

    #[test]
    fn obsolete_operators_mean_or_equal() {
        let parsed = parse_relations("a (< 2), b (> 1), c(<=3), d (>>4)").unwrap();
        let ops: Vec<Op> = parsed
            .iter()
            .map(|group| group[0].constraint.as_ref().unwrap().0)
            .collect();
        assert_eq!(
            ops,
            [
                Op::EarlierOrEqual,
                Op::LaterOrEqual,
                Op::EarlierOrEqual,
                Op::Later
            ]
        );
    }

    #[test]
    fn multi_line_and_empty_fields() {
        assert_eq!(parse_relations("").unwrap(), Vec::<Alternatives>::new());
        assert_eq!(parse_relations("  ,").unwrap(), Vec::<Alternatives>::new());
        let parsed = parse_relations("libc6 (>= 2.34),\n libssl3 (>= 3.0.0),").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1][0].name, "libssl3");
    }

    #[test]
    fn constraints_admit_versions() {
        let v = |text: &str| text.parse::<Version>().unwrap();
        let r = &parse_relations("a (>= 1.0)").unwrap()[0][0];
        assert!(r.admits(&v("1.0")) && r.admits(&v("1:0.1")) && !r.admits(&v("1.0~rc1")));
        let r = &parse_relations("a (<< 2)").unwrap()[0][0];
        assert!(r.admits(&v("1.9")) && !r.admits(&v("2")));
        assert!(parse_relations("a").unwrap()[0][0].admits(&v("0.1")));
    }

    #[test]
    fn malformed_fields_are_errors() {
        assert!(matches!(
            parse_relations("a | , b"),
            Err(RelationError::EmptyAlternative { .. })
        ));
        assert!(matches!(
            parse_relations("a (>= 1"),
            Err(RelationError::Unclosed { open: '(', .. })
        ));
        assert!(matches!(
            parse_relations("a (~= 1)"),
            Err(RelationError::BadConstraint { .. })
        ));
        assert!(matches!(
            parse_relations("a (>=)"),
            Err(RelationError::BadConstraint { .. })
        ));
        assert!(matches!(
            parse_relations("a (>= x)"),
            Err(RelationError::BadVersion { .. })
        ));
        assert!(matches!(
            parse_relations("a b"),
            Err(RelationError::Trailing { .. })
        ));
        assert!(matches!(
            parse_relations("a [amd64"),
            Err(RelationError::Unclosed { open: '[', .. })
        ));
        assert!(matches!(
            parse_relations("a@b"),
            Err(RelationError::BadName { .. })
        ));
        let message = parse_relations("a (~= 1)").unwrap_err().to_string();
        assert!(
            message.contains("(~= 1)") && message.contains("<< <= = >= >>"),
            "{message}"
        );
    }
}
