//! The apt flags of `layerize build`: `--apt` packages as the entry `apt-cli`, and the options
//! that apply over the build file's `apt` section. The shapes are checked by the build file
//! crate, as the file's own are.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use layerize_builder::LayerSpec;
use layerize_buildfile::{
    apt_layer_spec, check_apt_package, check_apt_source, AptOptions, AptRequest, AptScripts,
};

/// The name of the entry the `--apt` packages make.
const ENTRY_NAME: &str = "apt-cli";

#[derive(Args)]
pub struct AptArgs {
    /// Install an apt package from the base's archive (repeatable): NAME, NAME=VERSION,
    /// NAME/SUITE or NAME:ARCH. Each resolved package is a layer of its own, after the build
    /// file's layers and before the other layer flags' (see docs/apt.md).
    #[arg(long = "apt", value_name = "PKG")]
    packages: Vec<String>,
    /// Whether the packages' maintainer scripts run, in the sandbox, as one configure layer
    /// (`run`), or are left out (`skip`); overrides the build file's `apt.scripts` [default: run].
    #[arg(long, value_enum, value_name = "run|skip")]
    apt_scripts: Option<ScriptsArg>,
    /// Install the packages' Recommends too.
    #[arg(long)]
    apt_recommends: bool,
    /// An apt source to read after the base's (repeatable): a one-line source,
    /// 'deb [signed-by=FILE] URI SUITE COMPONENT...'.
    #[arg(long, value_name = "LINE")]
    apt_source: Vec<String>,
    /// An OpenPGP public key file (binary or armored) to verify apt sources with (repeatable); a
    /// source's signed-by may name it as given here.
    #[arg(long, value_name = "FILE")]
    apt_key: Vec<PathBuf>,
    /// Use only the sources given (--apt-source and the build file's), not the base's own.
    #[arg(long)]
    apt_replace_sources: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScriptsArg {
    Run,
    Skip,
}

impl AptArgs {
    /// The `--apt` packages as their entry's layer spec, each checked; `None` without any.
    pub fn layer(&self) -> anyhow::Result<Option<LayerSpec>> {
        if self.packages.is_empty() {
            return Ok(None);
        }
        for package in &self.packages {
            check_apt_package(package).with_context(|| format!("--apt {package}"))?;
        }
        let request = AptRequest {
            packages: self.packages.clone(),
            group: false,
        };
        Ok(Some(apt_layer_spec(ENTRY_NAME, request)))
    }

    /// `from_file` (the build file's options, or the defaults) with these flags applied: the
    /// sources and keys added, the others set.
    pub fn options(&self, from_file: AptOptions) -> anyhow::Result<AptOptions> {
        let mut options = from_file;
        for line in &self.apt_source {
            check_apt_source(line).with_context(|| format!("--apt-source {line}"))?;
            options.sources.push(line.clone());
        }
        for key in &self.apt_key {
            let named = || format!("--apt-key {}", key.display());
            let metadata = std::fs::metadata(key).with_context(named)?;
            if !metadata.is_file() {
                bail!("{}: not a regular file", named());
            }
            options.keys.push(key.clone());
        }
        if let Some(scripts) = self.apt_scripts {
            options.scripts = match scripts {
                ScriptsArg::Run => AptScripts::Run,
                ScriptsArg::Skip => AptScripts::Skip,
            };
        }
        options.recommends |= self.apt_recommends;
        options.replace_sources |= self.apt_replace_sources;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use layerize_builder::build::apt::AptSpec;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        apt: AptArgs,
    }

    fn parse(args: &[&str]) -> AptArgs {
        Command::try_parse_from(std::iter::once("layerize").chain(args.iter().copied()))
            .unwrap()
            .apt
    }

    fn error(result: anyhow::Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn apt_packages_make_the_apt_cli_entry() {
        assert!(parse(&[]).layer().unwrap().is_none());
        let spec = parse(&[
            "--apt",
            "curl",
            "--apt",
            "vim=2:9.0.1378-2",
            "--apt",
            "libc6:i386",
        ])
        .layer()
        .unwrap()
        .unwrap();
        assert_eq!(spec.name, "apt-cli");
        assert_eq!(
            spec.created_by,
            "layerize: apt-cli: apt curl vim=2:9.0.1378-2 libc6:i386"
        );
        match spec.apt {
            Some(AptSpec::Request(request)) => assert_eq!(
                request,
                AptRequest {
                    packages: vec![
                        "curl".into(),
                        "vim=2:9.0.1378-2".into(),
                        "libc6:i386".into()
                    ],
                    group: false,
                }
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error(parse(&["--apt", "curl", "--apt", "Git"]).layer()),
            "--apt Git: invalid apt package \"Git\": a Debian package name is at least two characters of a-z, 0-9, '+', '-' and '.', starting with a letter or digit"
        );
    }

    #[test]
    fn flags_apply_over_the_build_files_options() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("repo.asc");
        std::fs::write(&key, "key").unwrap();
        let from_file = AptOptions {
            sources: vec!["deb http://deb.example.com/debian bookworm main".into()],
            replace_sources: false,
            keys: vec![PathBuf::from("/ctx/file.asc")],
            scripts: AptScripts::Skip,
            recommends: true,
        };
        assert_eq!(parse(&[]).options(from_file.clone()).unwrap(), from_file);

        let source = "deb [signed-by=KEY] http://127.0.0.1:8080/repo stable main";
        let key_arg = key.to_str().unwrap();
        let args = parse(&[
            "--apt-scripts",
            "run",
            "--apt-source",
            source,
            "--apt-key",
            key_arg,
            "--apt-replace-sources",
            "--apt-recommends",
        ]);
        let options = args.options(from_file.clone()).unwrap();
        assert_eq!(
            options,
            AptOptions {
                sources: vec![from_file.sources[0].clone(), source.to_owned()],
                replace_sources: true,
                keys: vec![from_file.keys[0].clone(), key.clone()],
                scripts: AptScripts::Run,
                recommends: true,
            }
        );
        assert_eq!(
            parse(&["--apt-scripts", "skip"])
                .options(AptOptions::default())
                .unwrap()
                .scripts,
            AptScripts::Skip
        );
    }

    #[test]
    fn bad_sources_keys_and_script_choices_are_refused() {
        let line = "deb-src http://deb.debian.org/debian bookworm main";
        assert_eq!(
            error(parse(&["--apt-source", line]).options(AptOptions::default())),
            format!("--apt-source {line}: invalid apt source \"{line}\": deb-src is for source packages, which layerize does not install; give a deb line")
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.asc");
        let missing = missing.to_str().unwrap();
        assert!(
            error(parse(&["--apt-key", missing]).options(AptOptions::default()))
                .starts_with(&format!("--apt-key {missing}: No such file or directory"))
        );
        let dir_arg = dir.path().to_str().unwrap();
        assert_eq!(
            error(parse(&["--apt-key", dir_arg]).options(AptOptions::default())),
            format!("--apt-key {dir_arg}: not a regular file")
        );
        let refused = Command::try_parse_from(["layerize", "--apt-scripts", "never"]);
        let message = refused.err().expect("clap refuses the value").to_string();
        assert!(
            message.contains("invalid value 'never' for '--apt-scripts <run|skip>'"),
            "{message}"
        );
        assert!(
            message.contains("[possible values: run, skip]"),
            "{message}"
        );
    }
}
