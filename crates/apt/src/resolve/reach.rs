//! The part of an archive a resolution can touch: the packages named, or providing a name,
//! that the requests and the base's packages reach through the fields that pull packages in.
//! Nothing outside it can be chosen (no requirement names it), so the solver is set up over
//! these few hundred packages instead of the archive's tens of thousands.

use std::collections::{HashMap, HashSet};

use crate::control::Paragraph;
use crate::package::ArchivePackage;
use crate::relation::relation_names;

use super::provider::Field;
use super::{Installed, Options, Request};

/// The indexes into `available` of the packages a resolution of `requests` may choose, in
/// `available`'s order. `Conflicts` and `Breaks` are not followed: they rule candidates out,
/// never in (an upgrade a `Breaks` forces is of a base package, which is reached by its name).
pub(super) fn reachable(
    requests: &[Request],
    available: &[ArchivePackage],
    installed: &[Installed],
    options: &Options,
) -> Vec<usize> {
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_provided: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, package) in available.iter().enumerate() {
        by_name.entry(&package.name).or_default().push(index);
        for provided in names_in(&package.paragraph, "Provides") {
            by_provided.entry(provided).or_default().push(index);
        }
    }
    let mut queue = roots(requests, installed, options);
    let mut seen_names: HashSet<String> = HashSet::new();
    let mut chosen = vec![false; available.len()];
    while let Some(name) = queue.pop() {
        let named = by_name.get(name.as_str()).into_iter().flatten();
        let providing = by_provided.get(&name).into_iter().flatten();
        for &index in named.chain(providing) {
            if !std::mem::replace(&mut chosen[index], true) {
                queue.extend(
                    pulled_in(&available[index].paragraph, options)
                        .into_iter()
                        .filter(|name| !seen_names.contains(name)),
                );
            }
        }
        seen_names.insert(name);
    }
    (0..available.len())
        .filter(|&index| chosen[index])
        .collect()
}

/// The names a resolution of `requests` starts from: the requested ones, and the base's
/// packages with every name they pull in.
pub(super) fn roots(
    requests: &[Request],
    installed: &[Installed],
    options: &Options,
) -> Vec<String> {
    let mut roots: Vec<String> = requests
        .iter()
        .map(|request| request.name.clone())
        .collect();
    for package in installed {
        roots.push(package.name.clone());
        roots.extend(pulled_in(&package.paragraph, options));
    }
    roots
}

/// The names a package pulls in: its `Pre-Depends` and `Depends`, and `Recommends` when they
/// are followed.
pub(super) fn pulled_in(paragraph: &Paragraph, options: &Options) -> Vec<String> {
    let mut fields = vec![Field::PreDepends, Field::Depends];
    if options.recommends {
        fields.push(Field::Recommends);
    }
    fields
        .iter()
        .flat_map(|field| names_in(paragraph, field.name()))
        .collect()
}

/// The package names a relationship field of `paragraph` mentions.
fn names_in(paragraph: &Paragraph, field: &str) -> Vec<String> {
    paragraph.get(field).map(relation_names).unwrap_or_default()
}
