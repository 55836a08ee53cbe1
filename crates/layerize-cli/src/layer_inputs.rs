//! Turning the layer flags (`--file`, `--dir`, `--tar`, `--delete`, `--opaque`) into layer specs,
//! in the order they were given on the command line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ArgMatches;
use layerize_builder::layer::filemap::{EntryMeta, FileMap, FileSource};
use layerize_builder::LayerSpec;

/// One layer flag as given.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerInput {
    File {
        source: PathBuf,
        dest: String,
        mode: Option<u32>,
    },
    Dir {
        source: PathBuf,
        dest: String,
    },
    Tar(PathBuf),
    Delete(String),
    Opaque(String),
}

impl LayerInput {
    /// The flag as a user would write it, for the config history's `created_by`.
    fn describe(&self) -> String {
        match self {
            LayerInput::File { source, dest, mode } => match mode {
                Some(mode) => format!("--file {}:{dest}:{mode:o}", source.display()),
                None => format!("--file {}:{dest}", source.display()),
            },
            LayerInput::Dir { source, dest } => format!("--dir {}:{dest}", source.display()),
            LayerInput::Tar(path) => format!("--tar {}", path.display()),
            LayerInput::Delete(path) => format!("--delete {path}"),
            LayerInput::Opaque(path) => format!("--opaque {path}"),
        }
    }

    fn add_to(&self, files: &mut FileMap) -> anyhow::Result<()> {
        match self {
            LayerInput::File { source, dest, mode } => {
                let meta = EntryMeta {
                    mode: *mode,
                    ..EntryMeta::default()
                };
                files.add_file(dest, FileSource::Host(source.clone()), meta)?
            }
            LayerInput::Dir { source, dest } => files.add_host_dir(source, dest)?,
            LayerInput::Tar(path) => files.add_tar(path)?,
            LayerInput::Delete(path) => files.delete(path)?,
            LayerInput::Opaque(path) => files.make_opaque(path)?,
        }
        Ok(())
    }
}

/// Collects the layer flags in command-line order.
pub fn collect(matches: &ArgMatches) -> anyhow::Result<Vec<LayerInput>> {
    let mut inputs: Vec<(usize, LayerInput)> = Vec::new();
    for (flag, parse) in [
        ("file", parse_file as fn(&str) -> anyhow::Result<LayerInput>),
        ("dir", parse_dir),
        ("tar", |value| Ok(LayerInput::Tar(PathBuf::from(value)))),
        ("delete", |value| Ok(LayerInput::Delete(value.to_owned()))),
        ("opaque", |value| Ok(LayerInput::Opaque(value.to_owned()))),
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

/// Groups the inputs into layers: all in one layer, or one layer per flag.
pub fn into_layers(inputs: &[LayerInput], layer_per_flag: bool) -> anyhow::Result<Vec<LayerSpec>> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<&[LayerInput]> = if layer_per_flag {
        inputs.chunks(1).collect()
    } else {
        vec![inputs]
    };
    groups
        .into_iter()
        .enumerate()
        .map(|(index, group)| {
            let mut files = FileMap::new();
            for input in group {
                input.add_to(&mut files).with_context(|| input.describe())?;
            }
            let flags: Vec<String> = group.iter().map(LayerInput::describe).collect();
            Ok(LayerSpec {
                name: format!("layer-{}", index + 1),
                created_by: format!("layerize build {}", flags.join(" ")),
                files,
            })
        })
        .collect()
}

/// `SRC:DEST[:MODE]` with MODE in octal.
fn parse_file(value: &str) -> anyhow::Result<LayerInput> {
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
    Ok(LayerInput::File {
        source: non_empty_path(source)?,
        dest: non_empty(dest)?,
        mode,
    })
}

/// `SRC:DEST`.
fn parse_dir(value: &str) -> anyhow::Result<LayerInput> {
    let Some((source, dest)) = value.split_once(':') else {
        bail!("expected SRC:DEST, for example ./static:/srv/www");
    };
    Ok(LayerInput::Dir {
        source: non_empty_path(source)?,
        dest: non_empty(dest)?,
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
            LayerInput::File {
                source: "a".into(),
                dest: "/b".into(),
                mode: Some(0o755)
            }
        );
        assert_eq!(
            parse_file("a:/b").unwrap(),
            LayerInput::File {
                source: "a".into(),
                dest: "/b".into(),
                mode: None
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
            LayerInput::Dir {
                source: "src".into(),
                dest: "/srv".into()
            }
        );
    }
}
