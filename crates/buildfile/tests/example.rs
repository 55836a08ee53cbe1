//! The example `layerize init` writes shows every kind, every config key and the apt options,
//! and loads cleanly once the sources it names exist.

mod common;

use std::collections::HashSet;

use common::Fixture;
use layerize_buildfile::{Kind, Parallel, EXAMPLE};

#[test]
fn the_example_loads_and_shows_every_kind_and_setting() {
    let fixture = Fixture::new();
    let file = fixture.load(EXAMPLE).unwrap();

    let kinds: HashSet<Kind> = file
        .layers()
        .iter()
        .flat_map(|entry| entry.members())
        .map(|package| package.kind)
        .collect();
    assert_eq!(
        kinds,
        HashSet::from([
            Kind::Files,
            Kind::Dir,
            Kind::Tar,
            Kind::Delete,
            Kind::Opaque,
            Kind::Script,
            Kind::Apt
        ])
    );
    assert!(file.layers().iter().any(|entry| entry.is_group()));
    let apt_groups: Vec<bool> = file
        .layers()
        .iter()
        .filter_map(|entry| entry.members()[0].apt.as_ref())
        .map(|request| request.group)
        .collect();
    assert_eq!(
        apt_groups,
        [false, true],
        "a per-package and a grouped apt entry"
    );
    let apt = file.apt_options();
    assert!(!apt.sources.is_empty() && !apt.keys.is_empty());

    let image = file.image();
    assert!(image.base.is_some() && image.target.is_some() && image.platform.is_some());
    let config = file.config();
    assert!(!config.env.is_empty());
    assert!(config.entrypoint.is_some() && config.cmd.is_some());
    assert!(config.workdir.is_some() && config.user.is_some());
    assert!(!config.labels.is_empty() && !config.ports.is_empty());
    assert!(!config.annotations.is_empty());
    assert!(file.optimization().max_layers.is_some());
    assert_ne!(file.optimization().parallel, Parallel::default());

    // Every layer entry has a comment just above it, and every setting one on its line.
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for (index, line) in lines.iter().enumerate().skip(1) {
        let Some(rest) = line.strip_prefix("  ") else {
            continue;
        };
        if rest.starts_with("- name:") {
            let above = lines[index - 1].trim_start();
            assert!(
                above.starts_with('#'),
                "no comment above line {}: {line}",
                index + 1
            );
        } else if !rest.starts_with([' ', '-', '#']) {
            assert!(
                line.contains(" # "),
                "no comment on line {}: {line}",
                index + 1
            );
        }
    }
}
