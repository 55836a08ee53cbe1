//! Planning script steps: which layers of the build each step runs on top of (what it `needs`,
//! transitively), their keys (worked out in order, since a step only needs earlier layers), and
//! whether a cache says a step changed nothing.

use std::collections::{BTreeSet, HashMap};

use layerize_manifest::Digest;

use crate::build::local_cache::LocalCache;
use crate::build::plan::{LayerSpec, PlannedLayer, Work};
use crate::build::previous::{CacheSource, PreviousImage};
use crate::layer::script::{script_key, today_utc};
use crate::layer::LayerOptions;
use crate::BuildError;

/// For each layer, the layers of the build its script runs on top of: what it `needs`, with
/// what those need in turn, as ascending indices (empty for file layers). A step may only need
/// layers before it, named by their entry's name or one of their packages.
pub(crate) fn script_needs(specs: &[LayerSpec]) -> Result<Vec<Vec<usize>>, BuildError> {
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut all: Vec<Vec<usize>> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let mut closure = BTreeSet::new();
        for name in spec.script.iter().flat_map(|step| &step.needs) {
            let Some(&needed) = by_name.get(name) else {
                let later = specs[index..]
                    .iter()
                    .any(|other| other.name == *name || other.packages().contains(name));
                return Err(BuildError::Invalid(if later {
                    format!("{}: needs {name:?}, which does not come before it; a step can only need earlier layers", spec.name)
                } else {
                    format!(
                        "{}: needs {name:?}, which is not a layer of this build",
                        spec.name
                    )
                }));
            };
            closure.insert(needed);
            closure.extend(all[needed].iter().copied());
        }
        all.push(closure.into_iter().collect());
        by_name.insert(spec.name.clone(), index);
        for package in spec.packages() {
            by_name.insert(package, index);
        }
    }
    Ok(all)
}

/// Works out each script layer's key, in order, from its step, the base and the keys of what
/// it needs (found before it, since a step only needs earlier layers).
pub(crate) fn key_scripts(layers: &mut [PlannedLayer], base: &Digest, options: &LayerOptions) {
    let today = today_utc();
    for index in 0..layers.len() {
        let Work::Script { step, needs } = &layers[index].work else {
            continue;
        };
        let needed_keys: Vec<String> = needs
            .iter()
            .map(|&needed| {
                layers[needed]
                    .key
                    .clone()
                    .expect("layers a script needs are keyed first")
            })
            .collect();
        let key = script_key(step, base, &needed_keys, options, &today);
        layers[index].key = Some(key);
    }
}

/// Where a cache says the script step with `key` changed nothing.
pub(crate) fn empty_step_source<'a>(
    key: &str,
    images: impl Iterator<Item = &'a PreviousImage>,
    local: Option<&LocalCache>,
) -> Option<CacheSource> {
    let mut images = images;
    images
        .find(|image| image.empty_steps.iter().any(|record| record.key == key))
        .map(|image| image.source.clone())
        .or_else(|| {
            local
                .filter(|local| local.is_empty_step(key))
                .map(|_| CacheSource::Local)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::recipe::Input;
    use crate::layer::script::ScriptStep;

    fn files(name: &str) -> LayerSpec {
        LayerSpec {
            name: name.into(),
            created_by: String::new(),
            inputs: vec![Input::Delete(format!("/{name}"))],
            members: Vec::new(),
            script: None,
            apt: None,
        }
    }

    fn script(name: &str, needs: &[&str]) -> LayerSpec {
        let mut step = ScriptStep::new(vec!["true".into()]);
        step.needs = needs.iter().map(|need| (*need).to_owned()).collect();
        LayerSpec {
            name: name.into(),
            created_by: String::new(),
            inputs: Vec::new(),
            members: Vec::new(),
            script: Some(step),
            apt: None,
        }
    }

    #[test]
    fn a_step_runs_on_what_it_needs_and_what_those_need() {
        let specs = vec![
            files("data"),
            script("unpack", &["data"]),
            script("other", &[]),
            script("use", &["unpack"]),
        ];
        assert_eq!(
            script_needs(&specs).unwrap(),
            vec![vec![], vec![0], vec![], vec![0, 1]]
        );
    }

    #[test]
    fn a_step_cannot_need_itself_a_later_layer_or_an_unknown_one() {
        for (specs, message) in [
            (
                vec![script("a", &["b"]), files("b")],
                "a: needs \"b\", which does not come before it; a step can only need earlier layers",
            ),
            (
                vec![script("a", &["a"])],
                "a: needs \"a\", which does not come before it; a step can only need earlier layers",
            ),
            (
                vec![files("b"), script("a", &["c"])],
                "a: needs \"c\", which is not a layer of this build",
            ),
        ] {
            assert_eq!(script_needs(&specs).unwrap_err().to_string(), message);
        }
    }
}
