//! Making the apt layers a build has to build, once the plan is decided and before any blob
//! moves: each `.deb` fetched once (verified against the index) and converted into a tar, the
//! dpkg database composed from what the `.deb`s say about themselves. Each such layer becomes a
//! file map like any other, so the same writer, sandbox and transfers handle it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use layerize_apt::deb::{self, Converted};
use layerize_apt::download::download;
use layerize_apt::dpkg_db::{self, NewPackage, State};
use layerize_apt::fetch::Fetcher;
use layerize_apt::package::DebLocation;
use layerize_basefs::{FsIndex, Kind};
use tracing::info;

use crate::build::apt::plan::apt_error;
use crate::build::apt::{AptSpec, Database, DebPackage, PackageLayer};
use crate::build::local_cache::{read_entry, write_entry};
use crate::build::plan::{Decision, PlannedLayer, Work};
use crate::layer::filemap::{EntryMeta, FileMap, FileSource};
use crate::layer::LayerOptions;
use crate::BuildError;

/// A package layer's file map and what converting its `.deb`s told (by sha256).
type ConvertedLayer = (usize, FileMap, Vec<(String, Converted)>);

/// Downloads at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// What making the apt layers leaves behind for the rest of the run.
pub(crate) struct MadeApt {
    /// The converted tars the layers' file maps read; removed when the build ends.
    pub _spool: Option<tempfile::TempDir>,
    /// The maintainer scripts each package (by `.deb` sha256) has, where known.
    pub scripts: HashMap<String, Vec<String>>,
}

/// Turns every apt layer to build into a files layer; reused ones stay as they are.
pub(crate) async fn make_apt_layers(
    layers: &mut [PlannedLayer],
    cache_dir: Option<&Path>,
    base_fs: Option<&FsIndex>,
    options: &LayerOptions,
) -> Result<MadeApt, BuildError> {
    let mut facts = known_facts(layers, cache_dir);
    let to_make: Vec<usize> = (0..layers.len())
        .filter(|&index| {
            matches!(layers[index].work, Work::Apt(_))
                && matches!(layers[index].decision, Decision::Build(_))
        })
        .collect();
    if to_make.is_empty() {
        return Ok(MadeApt {
            _spool: None,
            scripts: scripts_of(&facts),
        });
    }
    // Every .deb a layer to make holds, or that the database to make describes and the cache
    // has no facts of.
    let mut wanted: BTreeMap<String, DebLocation> = BTreeMap::new();
    for &index in &to_make {
        let Work::Apt(spec) = &layers[index].work else {
            unreachable!("filtered above")
        };
        let is_database = matches!(spec, AptSpec::Database(_));
        for deb in spec_debs(spec) {
            let sha256 = &deb.package.deb.sha256;
            if is_database && facts.contains_key(sha256) {
                continue;
            }
            wanted
                .entry(sha256.clone())
                .or_insert_with(|| deb.package.deb.clone());
        }
    }
    let spool = tempfile::Builder::new()
        .prefix(".layerize-apt-")
        .tempdir_in(cache_dir.unwrap_or(&std::env::temp_dir()))
        .map_err(|source| BuildError::Io {
            context: "creating a directory for converted packages".to_owned(),
            source,
        })?;
    let deb_dir = match cache_dir {
        Some(dir) => dir.join("apt/v1/debs"),
        None => spool.path().join("debs"),
    };
    std::fs::create_dir_all(&deb_dir).map_err(|source| BuildError::Io {
        context: format!("creating {}", deb_dir.display()),
        source,
    })?;
    let locations: Vec<DebLocation> = wanted.into_values().collect();
    info!(phase = "apt", debs = locations.len(), dir = %deb_dir.display(), "Fetching packages");
    let fetcher = Fetcher::new(None).map_err(apt_error)?;
    let paths = download(&locations, &deb_dir, PARALLEL_DOWNLOADS, &fetcher)
        .await
        .map_err(apt_error)?;
    let debs: Arc<HashMap<String, PathBuf>> = Arc::new(
        locations
            .iter()
            .map(|location| location.sha256.clone())
            .zip(paths)
            .collect(),
    );

    // Package layers first: converting a .deb also tells what the database needs of it.
    let parallel = std::thread::available_parallelism().map_or(1, usize::from);
    let spool_path = Arc::new(spool.path().to_path_buf());
    let mut packages: Vec<(usize, PackageLayer)> = to_make
        .iter()
        .filter_map(|&index| match &layers[index].work {
            Work::Apt(AptSpec::Packages(layer)) => Some((index, layer.clone())),
            _ => None,
        })
        .collect();
    // The largest `.deb`s first: decompressing one is most of converting it, and the longest
    // started last would finish alone on one core.
    packages.sort_by_key(|(_, layer)| {
        std::cmp::Reverse(
            layer
                .debs
                .iter()
                .map(|deb| deb.package.deb.size)
                .sum::<u64>(),
        )
    });
    let converted: Vec<ConvertedLayer> = stream::iter(packages)
        .map(|(index, layer)| {
            let debs = Arc::clone(&debs);
            let spool_path = Arc::clone(&spool_path);
            let name = layers[index].name.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    convert_layer(&name, &layer, &debs, &spool_path)
                        .map(|(files, facts)| (index, files, facts))
                })
                .await
                .map_err(|err| BuildError::Invalid(format!("package conversion failed: {err}")))?
            }
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    for (index, files, layer_facts) in converted {
        set_files(&mut layers[index], files, options)?;
        for (sha256, converted) in layer_facts {
            if let std::collections::hash_map::Entry::Vacant(unknown) = facts.entry(sha256) {
                remember_facts(cache_dir, unknown.key(), &converted);
                unknown.insert(converted);
            }
        }
    }
    for &index in &to_make {
        let Work::Apt(AptSpec::Database(database)) = &layers[index].work else {
            continue;
        };
        let database = database.clone();
        for deb in &database.packages {
            let sha256 = &deb.package.deb.sha256;
            if !facts.contains_key(sha256) {
                let path = debs[sha256].clone();
                let usr = database.usr.clone();
                let read = tokio::task::spawn_blocking(move || deb::read_facts(&path, &usr))
                    .await
                    .map_err(|err| BuildError::Invalid(format!("reading a package failed: {err}")))?
                    .map_err(|error| BuildError::Apt(format!("{}: {error}", deb.package.name)))?;
                remember_facts(cache_dir, sha256, &read);
                facts.insert(sha256.clone(), read);
            }
        }
        let files = database_files(&database, &facts, base_fs)?;
        set_files(&mut layers[index], files, options)?;
    }
    Ok(MadeApt {
        _spool: Some(spool),
        scripts: scripts_of(&facts),
    })
}

/// The packages a spec holds or describes.
fn spec_debs(spec: &AptSpec) -> &[DebPackage] {
    match spec {
        AptSpec::Packages(layer) => &layer.debs,
        AptSpec::Database(database) => &database.packages,
        AptSpec::Request(_) => unreachable!("requests are expanded while planning"),
    }
}

/// Converts the `.deb`s of one layer into tars and a file map over them, keeping owners.
fn convert_layer(
    name: &str,
    layer: &PackageLayer,
    debs: &HashMap<String, PathBuf>,
    spool: &Path,
) -> Result<(FileMap, Vec<(String, Converted)>), BuildError> {
    let usr = &layer.usr;
    let mut files = FileMap::new();
    let mut facts = Vec::new();
    for deb in &layer.debs {
        let sha256 = &deb.package.deb.sha256;
        let tar_path = spool.join(format!("{sha256}.tar"));
        let tar = std::fs::File::create(&tar_path).map_err(|source| BuildError::Io {
            context: format!("creating {}", tar_path.display()),
            source,
        })?;
        let out = std::io::BufWriter::with_capacity(1 << 20, tar);
        let dpkg_name = deb.package.dpkg_name();
        let converted =
            deb::convert(&debs[sha256], &dpkg_name, usr, &layer.filters, out).map_err(|error| {
                BuildError::Apt(format!(
                    "{} {} ({}): {error}",
                    deb.package.name, deb.package.version, deb.package.deb.url
                ))
            })?;
        files
            .add_tar_keeping_owners(&tar_path)
            .map_err(|error| BuildError::Files {
                layer: name.to_owned(),
                error: Box::new(error),
            })?;
        facts.push((sha256.clone(), converted));
    }
    Ok((files, facts))
}

/// The dpkg database layer: the status and extended states over the base's, and whiteouts for
/// what upgraded base packages no longer ship (files and dpkg info files).
fn database_files(
    database: &Database,
    facts: &HashMap<String, Converted>,
    base_fs: Option<&FsIndex>,
) -> Result<FileMap, BuildError> {
    let state = if database.configure {
        State::Unpacked
    } else {
        State::Installed
    };
    let new: Vec<NewPackage> = database
        .packages
        .iter()
        .map(|deb| {
            let converted = &facts[&deb.package.deb.sha256];
            NewPackage {
                control: converted.control.clone(),
                conffiles: converted.conffiles.clone(),
                state,
                auto_installed: !deb.requested,
            }
        })
        .collect();
    let status = dpkg_db::status(&database.base_status, &new).map_err(apt_error)?;
    let extended = dpkg_db::extended_states(database.base_extended_states.as_deref(), &new)
        .map_err(apt_error)?;
    let mut files = FileMap::new();
    let file = |files: &mut FileMap, dest: &str, content: String| {
        files
            .add_file(
                dest,
                FileSource::Inline(content.into_bytes()),
                EntryMeta {
                    mode: Some(0o644),
                    ..EntryMeta::default()
                },
            )
            .map_err(|error| BuildError::Files {
                layer: super::plan::DATABASE_LAYER.to_owned(),
                error: Box::new(error),
            })
    };
    file(&mut files, "/var/lib/dpkg/status", status)?;
    file(&mut files, "/var/lib/apt/extended_states", extended)?;
    let usr = &database.usr;
    for (dpkg_name, old_list) in &database.old_lists {
        let Some(deb) = database
            .packages
            .iter()
            .find(|deb| deb.package.dpkg_name() == *dpkg_name)
        else {
            continue;
        };
        let converted = &facts[&deb.package.deb.sha256];
        let mut gone = dpkg_db::vanished_paths(old_list, &converted.paths, usr);
        if let Some(base) = base_fs {
            gone.retain(|path| {
                base.get(path.trim_start_matches('/'))
                    .is_some_and(|entry| entry.kind != Kind::Dir)
            });
            // dpkg's own files of the old version that the new one does not have.
            let kept: Vec<String> = ["list", "md5sums", "conffiles"]
                .into_iter()
                .map(str::to_owned)
                .chain(converted.scripts.iter().cloned())
                .collect();
            let prefix = format!("var/lib/dpkg/info/{dpkg_name}.");
            for entry in base.under("var/lib/dpkg/info") {
                if let Some(suffix) = entry.path.strip_prefix(&prefix) {
                    if !kept.iter().any(|kept| kept == suffix) {
                        gone.push(format!("/{}", entry.path));
                    }
                }
            }
        }
        gone.sort();
        gone.dedup();
        for path in gone {
            files.delete(&path).map_err(|error| BuildError::Files {
                layer: super::plan::DATABASE_LAYER.to_owned(),
                error: Box::new(error),
            })?;
        }
    }
    Ok(files)
}

fn set_files(
    layer: &mut PlannedLayer,
    files: FileMap,
    options: &LayerOptions,
) -> Result<(), BuildError> {
    let fingerprint = files
        .fingerprint(options.mtime, &[])
        .map_err(|error| BuildError::Files {
            layer: layer.name.clone(),
            error: Box::new(error),
        })?;
    layer.work = Work::Files {
        files,
        fingerprint,
        diff_id: None,
    };
    Ok(())
}

/// Where the local cache keeps what converting a `.deb` told: by its SHA256 and the
/// conversion's format (facts of another converter may differ).
fn facts_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("apt/v1/facts")
}

fn facts_name(sha256: &str) -> String {
    format!("{sha256}.{}", deb::CONVERSION_FORMAT)
}

/// A cache that cannot be written only costs the next build a pass over the `.deb`.
fn remember_facts(cache_dir: Option<&Path>, sha256: &str, facts: &Converted) {
    if let Some(cache_dir) = cache_dir {
        write_entry(
            &facts_dir(cache_dir),
            &facts_name(sha256),
            deb::facts::to_text(facts).as_bytes(),
        );
    }
}

/// The facts the local cache knows of the packages of the plan.
fn known_facts(layers: &[PlannedLayer], cache_dir: Option<&Path>) -> HashMap<String, Converted> {
    let Some(cache_dir) = cache_dir else {
        return HashMap::new();
    };
    layers
        .iter()
        .filter_map(|layer| match &layer.work {
            Work::Apt(spec) => Some(spec_debs(spec)),
            _ => None,
        })
        .flatten()
        // A package is in its own layer and in the database: each file is read once.
        .map(|deb| deb.package.deb.sha256.as_str())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .filter_map(|sha256| {
            let bytes = read_entry(&facts_dir(cache_dir).join(facts_name(sha256)))?;
            let facts = deb::facts::parse(std::str::from_utf8(&bytes).ok()?)?;
            Some((sha256.to_owned(), facts))
        })
        .collect()
}

/// The maintainer scripts of each package (by `.deb` SHA256) whose facts are known.
fn scripts_of(facts: &HashMap<String, Converted>) -> HashMap<String, Vec<String>> {
    facts
        .iter()
        .map(|(sha256, facts)| (sha256.clone(), facts.scripts.clone()))
        .collect()
}
