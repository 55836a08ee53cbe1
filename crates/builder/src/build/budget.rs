//! The layer budget: when an image would have more layers than `max_layers`, packages are batched
//! into shared layers — stably, so that one changed package rebuilds exactly its batch.
//!
//! Ranking packages by size (apko's strategy) is deterministic but not stable: a size change moves
//! a package across a cut-off and rebuilds two batches. Instead the batches the previous image
//! recorded are kept (as ostree-ext packs by the prior build): removed packages leave their batch,
//! packages the previous image did not have form one new batch, and only when that still does
//! not fit are the two neighbouring batches with the fewest packages merged. With no previous
//! image, packages are cut in the file's order into runs of near-equal count, leaving a tenth of
//! the budget free so that the next builds can add packages as layers of their own.

use crate::build::apt::{AptSpec, PackageLayer};
use crate::build::plan::LayerSpec;
use crate::build::previous::PreviousImage;
use crate::BuildError;

/// Docker refuses to run images with more layers than this (overlay2's limit).
pub const HARD_LIMIT: usize = 125;
/// The default number of layers an image is kept at, base included.
pub const DEFAULT_MAX_LAYERS: usize = 100;

/// Groups `units` (each the package names of one layer entry of the build, in the file's order;
/// an explicit group is one unit) into at most `budget` layers. `previous` is the package names of
/// each layer of the previous image that layerize built, in its order. Returns the layers as unit
/// indices, each layer's ascending, layers ordered by their first unit.
pub fn group(units: &[Vec<String>], previous: &[Vec<String>], budget: usize) -> Vec<Vec<usize>> {
    let budget = budget.max(1);
    let (mut kept, new) = keep_previous(units, previous);
    if kept.len() + new.len() <= budget {
        kept.extend(new.into_iter().map(|unit| vec![unit]));
        return ordered(kept);
    }
    if kept.is_empty() {
        return cut_in_order(units.len(), budget - budget / 10);
    }
    // Each group with whether it is built in this run anyway (the new packages' batch, and
    // whatever it absorbs): merging into such a group rebuilds nothing else.
    let mut groups: Vec<(Vec<usize>, bool)> = kept.into_iter().map(|g| (g, false)).collect();
    if !new.is_empty() {
        groups.push((new, true));
    }
    for (group, _) in &mut groups {
        group.sort_unstable();
    }
    groups.sort_by_key(|(group, _)| group[0]);
    let packages =
        |group: &[usize]| -> usize { group.iter().map(|&unit| units[unit].len().max(1)).sum() };
    while groups.len() > budget {
        let merge_at = (0..groups.len() - 1)
            .min_by_key(|&at| {
                let (left, left_built) = &groups[at];
                let (right, right_built) = &groups[at + 1];
                (
                    !(left_built | right_built),
                    packages(left) + packages(right),
                )
            })
            .expect("more than one group");
        let (next, _) = groups.remove(merge_at + 1);
        let (group, built) = &mut groups[merge_at];
        group.extend(next);
        group.sort_unstable();
        *built = true;
    }
    groups.into_iter().map(|(group, _)| group).collect()
}

/// The units grouped as the previous image had them (each previous layer becomes the units whose
/// first package it held), and the units it did not have.
fn keep_previous(units: &[Vec<String>], previous: &[Vec<String>]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let layer_of: std::collections::HashMap<&str, usize> = previous
        .iter()
        .enumerate()
        .flat_map(|(layer, packages)| packages.iter().map(move |name| (name.as_str(), layer)))
        .collect();
    let mut kept: Vec<Vec<usize>> = vec![Vec::new(); previous.len()];
    let mut new = Vec::new();
    for (unit, packages) in units.iter().enumerate() {
        match packages.iter().find_map(|name| layer_of.get(name.as_str())) {
            Some(&layer) => kept[layer].push(unit),
            None => new.push(unit),
        }
    }
    kept.retain(|group| !group.is_empty());
    (kept, new)
}

fn ordered(mut groups: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    for group in &mut groups {
        group.sort_unstable();
    }
    groups.sort_by_key(|group| group[0]);
    groups
}

/// `count` units cut in order into `groups` runs whose lengths differ by at most one.
fn cut_in_order(count: usize, groups: usize) -> Vec<Vec<usize>> {
    let groups = groups.clamp(1, count.max(1));
    let (base, extra) = (count / groups, count % groups);
    let mut next = 0;
    (0..groups)
        .map(|group| {
            let len = base + usize::from(group < extra);
            let run: Vec<usize> = (next..next + len).collect();
            next += len;
            run
        })
        .collect()
}

/// Batches layer entries into at most `max_layers` layers (base included), keeping the batches
/// the previous images recorded (see [`budget`]).
pub(crate) fn apply<'a>(
    specs: Vec<LayerSpec>,
    max_layers: Option<usize>,
    base_layers: usize,
    previous: impl Iterator<Item = &'a PreviousImage>,
) -> Result<Vec<LayerSpec>, BuildError> {
    let max_layers = max_layers.unwrap_or(DEFAULT_MAX_LAYERS);
    if max_layers == 0 || max_layers > HARD_LIMIT {
        return Err(BuildError::Invalid(format!(
            "max_layers {max_layers}: expected 1 to {HARD_LIMIT} (Docker refuses images with more than {HARD_LIMIT} layers)"
        )));
    }
    if specs.is_empty() {
        return Ok(specs);
    }
    if base_layers >= max_layers {
        return Err(BuildError::Invalid(format!(
            "the base already has {base_layers} layers, which leaves no room for more under max_layers {max_layers}"
        )));
    }
    // Script layers are never batched (what a step changes depends on what it runs on), nor is
    // the dpkg database layer (it is rebuilt whenever the packages change); they take their room
    // from the budget and the other layers are batched in the rest.
    let fixed = specs.iter().filter(|spec| is_fixed(spec)).count();
    let Some(budget) = (max_layers - base_layers)
        .checked_sub(fixed)
        .filter(|budget| *budget > 0 || fixed == specs.len())
    else {
        return Err(BuildError::Invalid(format!(
            "the base's {base_layers} layers and the build's {fixed} script layers leave no room for its file layers under max_layers {max_layers}"
        )));
    };
    type Placed = Vec<(usize, LayerSpec)>;
    let (fixed_specs, specs): (Placed, Placed) = specs
        .into_iter()
        .enumerate()
        .partition(|(_, spec)| is_fixed(spec));
    // apt packages and file layers are batched apart: a batch is one kind of layer.
    let (packages, files): (Placed, Placed) = specs
        .into_iter()
        .partition(|(_, spec)| matches!(spec.apt, Some(AptSpec::Packages(_))));
    // The first previous image that recorded anything says how packages were batched.
    let grouping: Vec<Vec<String>> = previous
        .map(|image| {
            image
                .recorded()
                .map(|(_, record)| record.packages())
                .collect::<Vec<_>>()
        })
        .find(|grouping| !grouping.is_empty())
        .unwrap_or_default();
    let (package_budget, file_budget) = share(budget, packages.len(), files.len());
    let mut placed = batch(files, &grouping, file_budget);
    placed.extend(batch(packages, &grouping, package_budget));
    placed.extend(fixed_specs);
    placed.sort_by_key(|(position, _)| *position);
    Ok(placed.into_iter().map(|(_, spec)| spec).collect())
}

/// Layers that are never batched.
fn is_fixed(spec: &LayerSpec) -> bool {
    spec.script.is_some() || matches!(spec.apt, Some(AptSpec::Database(_)))
}

/// The budget split between `packages` apt package layers and `files` file layers, in
/// proportion, each kind that has layers getting at least one.
fn share(budget: usize, packages: usize, files: usize) -> (usize, usize) {
    if packages + files <= budget || packages == 0 || files == 0 {
        return (budget, budget);
    }
    let for_packages =
        (budget * packages / (packages + files)).clamp(1, budget.saturating_sub(1).max(1));
    (for_packages, budget.saturating_sub(for_packages).max(1))
}

/// Batches layers of one kind (with their places in the build) into at most `budget` layers;
/// each batch stands where its first member stood.
fn batch(
    placed: Vec<(usize, LayerSpec)>,
    grouping: &[Vec<String>],
    budget: usize,
) -> Vec<(usize, LayerSpec)> {
    let (positions, specs): (Vec<usize>, Vec<LayerSpec>) = placed.into_iter().unzip();
    let units: Vec<Vec<String>> = specs.iter().map(LayerSpec::packages).collect();
    let groups = if units.is_empty() {
        Vec::new()
    } else {
        group(&units, grouping, budget)
    };
    let mut specs: Vec<Option<LayerSpec>> = specs.into_iter().map(Some).collect();
    groups
        .into_iter()
        .map(|group| {
            let position = positions[group[0]];
            let mut members: Vec<LayerSpec> = group
                .iter()
                .map(|&unit| specs[unit].take().expect("each unit is in one group"))
                .collect();
            if members.len() == 1 {
                return (position, members.pop().expect("one member"));
            }
            (position, merged(members))
        })
        .collect()
}

/// One batch layer made of several layer entries of one kind.
fn merged(members: Vec<LayerSpec>) -> LayerSpec {
    let packages: Vec<String> = members.iter().flat_map(LayerSpec::packages).collect();
    let mut inputs = Vec::new();
    let mut apt: Option<PackageLayer> = None;
    for spec in members {
        inputs.extend(spec.inputs);
        if let Some(AptSpec::Packages(layer)) = spec.apt {
            match &mut apt {
                Some(batch) => batch.debs.extend(layer.debs),
                None => apt = Some(layer),
            }
        }
    }
    LayerSpec {
        name: format!("{}+{}", packages[0], packages.len() - 1),
        created_by: format!("layerize build: batch of {}", packages.join(" ")),
        inputs,
        members: packages,
        script: None,
        apt: apt.map(AptSpec::Packages),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packages(names: impl IntoIterator<Item = usize>) -> Vec<Vec<String>> {
        names
            .into_iter()
            .map(|n| vec![format!("pkg-{n:03}")])
            .collect()
    }

    /// The package names of each layer, as an image would record them.
    fn recorded(units: &[Vec<String>], groups: &[Vec<usize>]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|group| group.iter().flat_map(|&u| units[u].clone()).collect())
            .collect()
    }

    #[test]
    fn within_budget_every_unit_is_its_own_layer() {
        let units = packages(0..30);
        let groups = group(&units, &[], 99);
        assert_eq!(groups, (0..30).map(|u| vec![u]).collect::<Vec<_>>());
    }

    #[test]
    fn over_budget_runs_are_cut_in_order_with_room_left() {
        let units = packages(0..150);
        let groups = group(&units, &[], 39);
        assert_eq!(groups.len(), 36);
        assert_eq!(groups.concat(), (0..150).collect::<Vec<_>>());
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    }

    #[test]
    fn removing_a_package_changes_only_its_batch_and_adding_one_makes_one_new_layer() {
        let units = packages(0..150);
        let first = recorded(&units, &group(&units, &[], 39));

        let without_7: Vec<Vec<String>> = units
            .iter()
            .filter(|u| u[0] != "pkg-007")
            .cloned()
            .collect();
        let second = recorded(&without_7, &group(&without_7, &first, 39));
        let changed: Vec<_> = second
            .iter()
            .filter(|layer| !first.contains(layer))
            .collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(second.len(), first.len());

        let mut with_new = units.clone();
        with_new.insert(40, vec!["brand-new".to_string()]);
        let third = recorded(&with_new, &group(&with_new, &first, 39));
        let added: Vec<_> = third
            .iter()
            .filter(|layer| !first.contains(layer))
            .collect();
        assert_eq!(added, vec![&vec!["brand-new".to_string()]]);
        assert_eq!(third.len(), first.len() + 1);
    }

    #[test]
    fn moving_packages_keeps_their_batches() {
        let units = packages(0..60);
        let first = recorded(&units, &group(&units, &[], 20));
        let mut moved = units.clone();
        let third = moved.remove(2);
        moved.push(third);
        let again = recorded(&moved, &group(&moved, &first, 20));
        // The same packages in each batch; their order inside a batch only decides which one
        // wins where two write one path, and packages of a tar sorted by path do not show it.
        let as_sets = |layers: &[Vec<String>]| {
            let mut sets: Vec<Vec<String>> = layers
                .iter()
                .map(|layer| {
                    let mut layer = layer.clone();
                    layer.sort();
                    layer
                })
                .collect();
            sets.sort();
            sets
        };
        assert_eq!(as_sets(&again), as_sets(&first));
    }

    #[test]
    fn a_full_budget_merges_the_smallest_neighbours_only() {
        let units = packages(0..10);
        let previous = recorded(&units, &(0..10).map(|u| vec![u]).collect::<Vec<_>>());
        let mut more = units.clone();
        more.push(vec!["extra".to_string()]);
        let groups = group(&more, &previous, 10);
        assert_eq!(groups.len(), 10);
        let layers = recorded(&more, &groups);
        let changed = layers
            .iter()
            .filter(|layer| !previous.contains(layer))
            .count();
        assert_eq!(changed, 1, "{layers:?}");
    }

    #[test]
    fn explicit_groups_stay_whole() {
        let mut units = packages(0..20);
        units[4] = vec!["jq".into(), "yq".into()];
        for groups in [group(&units, &[], 5), group(&units, &[], 50)] {
            assert!(groups.iter().any(|g| g.contains(&4)));
            assert_eq!(groups.concat().len(), 20);
        }
    }

    fn spec(name: &str, script: bool) -> LayerSpec {
        LayerSpec {
            name: name.into(),
            created_by: String::new(),
            inputs: Vec::new(),
            members: Vec::new(),
            script: script.then(|| crate::layer::script::ScriptStep::new(vec!["true".into()])),
            apt: None,
        }
    }

    #[test]
    fn script_layers_are_never_batched_and_keep_their_places() {
        // 1 base layer + at most 5: the two steps take two, the five file layers share three.
        let specs: Vec<LayerSpec> = ["a", "b", "step1", "c", "d", "step2", "e"]
            .into_iter()
            .map(|name| spec(name, name.starts_with("step")))
            .collect();
        let applied = apply(specs, Some(6), 1, std::iter::empty()).unwrap();
        let names: Vec<(&str, Vec<String>)> = applied
            .iter()
            .map(|spec| (spec.name.as_str(), spec.members.clone()))
            .collect();
        assert!(applied.len() <= 5, "{names:?}");
        let steps: Vec<usize> = applied
            .iter()
            .enumerate()
            .filter(|(_, spec)| spec.script.is_some())
            .map(|(index, _)| index)
            .collect();
        assert_eq!(steps.len(), 2, "{names:?}");
        assert!(applied[steps[0]].name == "step1" && applied[steps[1]].name == "step2");
        assert!(applied
            .iter()
            .all(|spec| spec.script.is_none() || spec.members.is_empty()));
        // Every file package is still there, in a layer before its next step when it was.
        let packages: Vec<String> = applied.iter().flat_map(LayerSpec::packages).collect();
        for name in ["a", "b", "c", "d", "e"] {
            assert!(packages.contains(&name.to_owned()), "{names:?}");
        }
        let position = |name: &str| packages.iter().position(|p| p == name).unwrap();
        assert!(position("a") < position("step1") && position("step1") < position("c"));
        // No room for any file layer: refused with the reason.
        let specs = vec![spec("a", false), spec("s1", true), spec("s2", true)];
        let error = apply(specs, Some(3), 1, std::iter::empty()).unwrap_err();
        assert!(
            error.to_string().contains("2 script layers leave no room"),
            "{error}"
        );
    }
}
