//! Turning the layer flags (`--file`, `--dir`, `--tar`, `--delete`, `--opaque`) into layer specs,
//! in the order they were given on the command line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ArgMatches;
use layerize_builder::layer::filemap::{EntryMeta, FileSource, HostModes};
use layerize_builder::layer::recipe::Input;
use layerize_builder::LayerSpec;

/// Collects the layer flags in command-line order.
pub fn collect(matches: &ArgMatches) -> anyhow::Result<Vec<Input>> {
    let mut inputs: Vec<(usize, Input)> = Vec::new();
    for (flag, parse) in [
        ("file", parse_file as fn(&str) -> anyhow::Result<Input>),
        ("dir", parse_dir),
        ("tar", |value| Ok(Input::Tar(PathBuf::from(value)))),
        ("delete", |value| Ok(Input::Delete(value.to_owned()))),
        ("opaque", |value| Ok(Input::Opaque(value.to_owned()))),
    ] {
        let (Some(values), Some(indices)) =
            (matches.get_many::<String>(flag), matches.indices_of(flag))
        else {
            continue;
        };
        for (value, index) in values.zip(indices) {
            let input = parse(value).with_context(|| format!("--{flag} {value}"))?;
            inputs.push((index, input));
        }
    }
    inputs.sort_by_key(|(index, _)| *index);
    Ok(inputs.into_iter().map(|(_, input)| input).collect())
}

/// Groups the inputs into layers: all in one layer, or one layer per flag. Each layer's
/// `created_by` says what its flags put where (not the host paths, see [`Input::summary`]).
pub fn into_layers(inputs: Vec<Input>, layer_per_flag: bool) -> Vec<LayerSpec> {
    if inputs.is_empty() {
        return Vec::new();
    }
    let groups: Vec<Vec<Input>> = if layer_per_flag {
        inputs.into_iter().map(|input| vec![input]).collect()
    } else {
        vec![inputs]
    };
    groups
        .into_iter()
        .enumerate()
        .map(|(index, inputs)| {
            let parts: Vec<String> = inputs.iter().map(Input::summary).collect();
            LayerSpec {
                name: format!("layer-{}", index + 1),
                created_by: format!("layerize build: {}", parts.join(", ")),
                inputs,
                members: Vec::new(),
                script: None,
                apt: None,
            }
        })
        .collect()
}

/// `SRC:DEST[:MODE]` with MODE in octal.
fn parse_file(value: &str) -> anyhow::Result<Input> {
    let mut parts = value.splitn(3, ':');
    let (Some(source), Some(dest)) = (parts.next(), parts.next()) else {
        bail!("expected SRC:DEST[:MODE], for example ./app:/usr/local/bin/app:755");
    };
    let mode = parts
        .next()
        .map(|mode| {
            u32::from_str_radix(mode, 8)
                .ok()
                .filter(|mode| *mode <= 0o7777)
                .with_context(|| {
                    format!("mode {mode:?} is not an octal file mode like 644 or 0755")
                })
        })
        .transpose()?;
    Ok(Input::File {
        source: FileSource::Host(non_empty_path(source)?),
        dest: non_empty(dest)?,
        meta: EntryMeta {
            mode,
            ..EntryMeta::default()
        },
        // The flags take the host's bits as they are (the build file normalises them).
        modes: HostModes::Keep,
    })
}

/// `SRC:DEST`.
fn parse_dir(value: &str) -> anyhow::Result<Input> {
    let Some((source, dest)) = value.split_once(':') else {
        bail!("expected SRC:DEST, for example ./static:/srv/www");
    };
    Ok(Input::Dir {
        source: non_empty_path(source)?,
        dest: non_empty(dest)?,
        modes: HostModes::Keep,
    })
}

fn non_empty(value: &str) -> anyhow::Result<String> {
    if value.is_empty() {
        bail!("an empty path is not allowed");
    }
    Ok(value.to_owned())
}

fn non_empty_path(value: &str) -> anyhow::Result<PathBuf> {
    non_empty(value).map(|value| Path::new(&value).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_flag_takes_an_optional_octal_mode() {
        assert_eq!(
            parse_file("a:/b:0755").unwrap(),
            Input::File {
                source: FileSource::Host("a".into()),
                dest: "/b".into(),
                meta: EntryMeta {
                    mode: Some(0o755),
                    ..EntryMeta::default()
                },
                modes: HostModes::Keep,
            }
        );
        assert_eq!(
            parse_file("a:/b").unwrap(),
            Input::File {
                source: FileSource::Host("a".into()),
                dest: "/b".into(),
                meta: EntryMeta::default(),
                modes: HostModes::Keep,
            }
        );
        assert!(parse_file("a:/b:9").is_err());
        assert!(parse_file("a").is_err());
        assert!(parse_file(":/b").is_err());
    }

    #[test]
    fn dir_flag_needs_source_and_destination() {
        assert!(parse_dir("src").is_err());
        assert!(parse_dir("src:").is_err());
        assert_eq!(
            parse_dir("src:/srv").unwrap(),
            Input::Dir {
                source: "src".into(),
                dest: "/srv".into(),
                modes: HostModes::Keep,
            }
        );
    }
}
