//! Why a resolution failed, in words a user can act on: a requested package (or one it cannot
//! do without) that conflicts with a base package is named with both versions and the
//! relation; anything else gets resolvo's explanation of the failing requirement chain. Also
//! the "did you mean" for an unknown name.

use std::collections::HashSet;

use super::provider::{CandidateId, Field, Universe};
use super::{Request, ResolveError};

/// The error for an unsatisfiable problem.
pub(super) fn unsatisfiable(
    universe: &Universe<'_>,
    requests: &[Request],
    picks: &[CandidateId],
    explanation: String,
) -> ResolveError {
    if let Some(error) = forced_closure(universe, picks)
        .into_iter()
        .find_map(|id| conflict_with_base(universe, id))
    {
        return error;
    }
    ResolveError::Unsatisfiable {
        requests: requests
            .iter()
            .map(|request| format!("{:?}", request.to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        explanation: explanation.trim_end().to_owned(),
    }
}

/// The picks and the new packages they cannot do without (dependencies with one candidate
/// only), in a stable order.
fn forced_closure(universe: &Universe<'_>, picks: &[CandidateId]) -> Vec<CandidateId> {
    let mut seen: HashSet<CandidateId> = picks.iter().copied().collect();
    let mut order: Vec<CandidateId> = picks.to_vec();
    let mut at = 0;
    while at < order.len() {
        let id = order[at];
        at += 1;
        for field in [Field::PreDepends, Field::Depends] {
            for group in universe.relations(id, field).unwrap_or_default() {
                if let [only] = universe.group_candidates(&group, id).as_slice() {
                    if universe.candidate(*only).installed.is_none() && seen.insert(*only) {
                        order.push(*only);
                    }
                }
            }
        }
    }
    order
}

/// A `Conflicts`/`Breaks` between a new package and a base package, either way round.
fn conflict_with_base(universe: &Universe<'_>, id: CandidateId) -> Option<ResolveError> {
    let package = universe.candidate(id);
    if package.installed.is_some() {
        return None;
    }
    let base: Vec<CandidateId> = (0..universe.candidates.len() as u32)
        .map(CandidateId)
        .filter(|&other| {
            let other = universe.candidate(other);
            other.installed.is_some() && other.name != package.name
        })
        .collect();
    for field in [Field::Conflicts, Field::Breaks] {
        for relation in universe
            .relations(id, field)
            .unwrap_or_default()
            .iter()
            .flatten()
        {
            if let Some(&hit) = base.iter().find(|&&b| universe.relation_names(relation, b)) {
                let hit = universe.candidate(hit);
                return Some(ResolveError::ConflictsWithBase {
                    package: package.name.to_owned(),
                    version: package.version.to_string(),
                    base: hit.name.to_owned(),
                    base_version: hit.version.to_string(),
                    relation: format!("{}: {relation}", field.name()),
                });
            }
        }
    }
    for &b in &base {
        // A base package that is upgraded may drop the relation; only its kept version's
        // relations are certain to hold, and only when nothing newer exists.
        let keepable_only = universe
            .candidates_keyed(&universe.candidate(b).key)
            .iter()
            .all(|&other| {
                other == b || universe.candidate(other).version <= universe.candidate(b).version
            });
        if !keepable_only {
            continue;
        }
        for field in [Field::Conflicts, Field::Breaks] {
            for relation in universe
                .relations(b, field)
                .unwrap_or_default()
                .iter()
                .flatten()
            {
                if universe.relation_names(relation, id) {
                    let hit = universe.candidate(b);
                    return Some(ResolveError::RefusedByBase {
                        package: package.name.to_owned(),
                        version: package.version.to_string(),
                        base: hit.name.to_owned(),
                        base_version: hit.version.to_string(),
                        relation: format!("{}: {relation}", field.name()),
                    });
                }
            }
        }
    }
    None
}

/// The closest known name to a misspelt one (at most a third of its letters off), if any.
pub(super) fn nearest_name<'n>(
    names: impl Iterator<Item = &'n str>,
    wanted: &str,
) -> Option<String> {
    let limit = (wanted.chars().count() / 3).max(1);
    names
        .filter(|name| name.len().abs_diff(wanted.len()) <= limit)
        .filter_map(|name| {
            let distance = edit_distance(name, wanted);
            (distance <= limit).then_some((distance, name))
        })
        .min()
        .map(|(_, name)| name.to_owned())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, &b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_name_is_the_closest_within_reach() {
        let names = ["curl", "curlx", "libcurl4", "git", "vim"];
        assert_eq!(
            nearest_name(names.into_iter(), "crul").as_deref(),
            Some("curl")
        );
        assert_eq!(
            nearest_name(names.into_iter(), "curlz").as_deref(),
            Some("curl")
        );
        assert_eq!(nearest_name(names.into_iter(), "emacs"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
