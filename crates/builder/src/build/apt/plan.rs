//! Planning apt entries: the base's own apt configuration (read through its filesystem index,
//! never the host's), the verified index, one solve for every request of the build, and the
//! layers that come of it — package layers, the dpkg database layer and the configure step —
//! standing where the first apt entry stands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::time::SystemTime;

use layerize_apt::base::{wanted_files, BaseSystem, UsrMerge};
use layerize_apt::fetch::Fetcher;
use layerize_apt::index::{self, IndexOptions};
use layerize_apt::path_filter::PathFilters;
use layerize_apt::resolve::{self, installed_from_status, Request};
use layerize_apt::sources::{parse_one_line, Source};
use layerize_basefs::{index_image, Capture, FsIndex, LayerCache};
use layerize_manifest::{Descriptor, Digest};
use layerize_registry::Store;
use tracing::info;

use crate::build::apt::{
    AptOptions, AptRequest, AptScripts, AptSpec, Database, DebPackage, PackageLayer,
};
use crate::build::plan::LayerSpec;
use crate::layer::script::ScriptStep;
use crate::BuildError;

/// The name of the dpkg database layer.
pub const DATABASE_LAYER: &str = "dpkg-database";
/// The name of the layer `dpkg --configure -a` makes.
pub const CONFIGURE_LAYER: &str = "dpkg-configure";
/// The most bytes read of any one apt file of the base (the dpkg status of a large image is a
/// few MiB).
const MAX_BASE_FILE: u64 = 256 << 20;

/// The base as apt planning reads it.
pub(crate) struct AptBase<'a> {
    pub store: &'a dyn Store,
    /// The base's readable layers, bottom first.
    pub layers: &'a [(Descriptor, Digest)],
    pub cache: Option<&'a LayerCache>,
    pub index: &'a FsIndex,
    /// Debian's name for the platform's architecture (`amd64`, `arm64`, …).
    pub architecture: String,
}

/// What planning resolved, for the report.
#[derive(Clone, Debug)]
pub struct AptPlan {
    /// The sources read, as `URI SUITE`.
    pub sources: Vec<String>,
    pub packages: Vec<DebPackage>,
    pub scripts: AptScripts,
}

/// Replaces the apt entries of `specs` by the layers their packages make. Without apt entries,
/// `specs` come back as they are.
pub(crate) async fn expand(
    specs: Vec<LayerSpec>,
    options: &AptOptions,
    base: AptBase<'_>,
    cache_dir: Option<&Path>,
) -> Result<(Vec<LayerSpec>, Option<AptPlan>), BuildError> {
    let entries: Vec<(usize, String, AptRequest)> = specs
        .iter()
        .enumerate()
        .filter_map(|(at, spec)| match &spec.apt {
            Some(AptSpec::Request(request)) => Some((at, spec.name.clone(), request.clone())),
            _ => None,
        })
        .collect();
    let Some(first) = entries.first().map(|(at, _, _)| *at) else {
        return Ok((specs, None));
    };
    let requests = parse_requests(&entries)?;
    let system = read_base(&base).await?;
    let sources = sources(options, &system)?;
    let keyrings = keyrings(options, &system)?;
    let fetcher = Fetcher::new(cache_dir.map(|dir| dir.join("apt/v1/http"))).map_err(apt_error)?;
    let index = index::load(
        &sources,
        &keyrings,
        &IndexOptions {
            architecture: base.architecture.clone(),
            foreign_architectures: system.foreign_architectures.clone(),
            now: SystemTime::now(),
        },
        &fetcher,
    )
    .await
    .map_err(apt_error)?;
    info!(
        phase = "apt",
        sources = sources.len(),
        packages = index.package_count(),
        "Read the archive's verified indexes"
    );
    let installed = installed_from_status(&system.dpkg_status).map_err(apt_error)?;
    let all_requests: Vec<Request> = requests.iter().flatten().cloned().collect();
    let resolve_options = resolve::Options {
        architecture: base.architecture.clone(),
        foreign_architectures: system.foreign_architectures.clone(),
        recommends: options.recommends,
    };
    // Only what the requests and the base's packages reach is parsed: nothing else can be
    // chosen, and parsing every package of the archive was most of reading it.
    let available = index
        .reachable(
            resolve::reach_roots(&all_requests, &installed, &resolve_options),
            |package| resolve::pulled_in(package, &resolve_options),
        )
        .map_err(apt_error)?;
    let resolution = resolve::resolve(&all_requests, &available, &installed, &resolve_options)
        .map_err(apt_error)?;
    let packages: Vec<DebPackage> = resolution
        .packages
        .iter()
        .map(|chosen| DebPackage {
            package: available[chosen.index].clone(),
            requested: chosen.requested,
            pulled_by: chosen.pulled_by.clone(),
            upgrades: chosen.upgrades.clone(),
        })
        .collect();
    // Freeing the index's text and name table is done aside, while planning goes on.
    std::thread::spawn(move || drop((index, available)));
    for package in &packages {
        info!(
            phase = "apt",
            package = %package.package.name,
            version = %package.package.version,
            pulled_by = %package.pulled_by.join(","),
            upgrades = package.upgrades.as_deref().unwrap_or(""),
            "Resolved"
        );
    }
    let old_lists = old_lists(&base, &packages).await?;
    let usr = system.usr_merge.clone();
    let configure = options.scripts == AptScripts::Run;
    if !system.path_filters.is_empty() {
        info!(
            phase = "apt",
            rules = %system.path_filters.key_lines().join("; "),
            "The base's dpkg leaves paths out of packages (path-exclude in /etc/dpkg): so do their layers"
        );
    }

    let mut layers = package_layers(&entries, &requests, &packages, &usr, &system.path_filters);
    let mut needs: Vec<String> = layers.iter().flat_map(LayerSpec::packages).collect();
    layers.push(LayerSpec {
        name: DATABASE_LAYER.to_owned(),
        created_by: format!(
            "layerize: {DATABASE_LAYER}: dpkg status with {} packages",
            packages.len()
        ),
        inputs: Vec::new(),
        members: Vec::new(),
        script: None,
        apt: Some(AptSpec::Database(Box::new(Database {
            base_status: system.dpkg_status.clone(),
            base_extended_states: system.extended_states.clone(),
            packages: packages.clone(),
            configure,
            usr,
            old_lists,
        }))),
    });
    needs.push(DATABASE_LAYER.to_owned());
    if configure {
        let step = configure_step(needs);
        layers.push(LayerSpec {
            name: CONFIGURE_LAYER.to_owned(),
            created_by: format!("layerize: {CONFIGURE_LAYER}: dpkg --configure -a"),
            inputs: Vec::new(),
            members: Vec::new(),
            script: Some(step),
            apt: None,
        });
    }

    let mut expanded = Vec::with_capacity(specs.len() + layers.len());
    for (at, spec) in specs.into_iter().enumerate() {
        if at == first {
            expanded.append(&mut layers);
        }
        if !matches!(spec.apt, Some(AptSpec::Request(_))) {
            expanded.push(spec);
        }
    }
    let plan = AptPlan {
        sources: sources
            .iter()
            .map(|source| format!("{} {}", source.uri, source.suite))
            .collect(),
        packages,
        scripts: options.scripts,
    };
    Ok((expanded, Some(plan)))
}

/// Each entry's packages as requests, checked before anything is fetched.
fn parse_requests(
    entries: &[(usize, String, AptRequest)],
) -> Result<Vec<Vec<Request>>, BuildError> {
    entries
        .iter()
        .map(|(_, name, request)| {
            if request.packages.is_empty() {
                return Err(BuildError::Invalid(format!("{name}: no apt packages")));
            }
            request
                .packages
                .iter()
                .map(|package| {
                    Request::from_str(package).map_err(|error| {
                        BuildError::Invalid(format!("{name}: apt package {package:?}: {error}"))
                    })
                })
                .collect()
        })
        .collect()
}

/// The base's files apt planning will likely read, to capture while the base is indexed (see
/// [`layerize_apt::base::expected_files`]).
pub(crate) fn expected_base_files() -> Vec<Capture> {
    layerize_apt::base::expected_files()
        .into_iter()
        .map(|path| Capture {
            path,
            max_bytes: MAX_BASE_FILE,
        })
        .collect()
}

/// The base's apt configuration and dpkg database, from its layers.
async fn read_base(base: &AptBase<'_>) -> Result<BaseSystem, BuildError> {
    let captures: Vec<Capture> = wanted_files(base.index)
        .into_iter()
        .map(|path| Capture {
            path,
            max_bytes: MAX_BASE_FILE,
        })
        .collect();
    let read = index_image(base.store, base.layers, base.cache, &captures).await?;
    BaseSystem::read(base.index, &read.files, &base.architecture).map_err(apt_error)
}

/// The base's sources (unless replaced), then the build's own.
fn sources(options: &AptOptions, system: &BaseSystem) -> Result<Vec<Source>, BuildError> {
    let mut sources = if options.replace_sources {
        Vec::new()
    } else {
        system.sources.clone()
    };
    for (number, line) in options.sources.iter().enumerate() {
        let origin = format!("apt source {}", number + 1);
        sources.extend(parse_one_line(line, &origin).map_err(apt_error)?);
    }
    if sources.is_empty() {
        return Err(BuildError::Apt(
            "there are no apt sources: the base has none (or they were replaced); give some with the build file's `apt: {sources: [...]}` or --apt-source".to_owned(),
        ));
    }
    Ok(sources)
}

/// The base's keyrings, with the build's keys: each under the path it was given (for a source's
/// `signed-by`), and in the default keyring.
fn keyrings(
    options: &AptOptions,
    system: &BaseSystem,
) -> Result<BTreeMap<String, Vec<u8>>, BuildError> {
    let mut keyrings = system.keyrings.clone();
    for (number, path) in options.keys.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|source| BuildError::Io {
            context: format!("reading the apt key {}", path.display()),
            source,
        })?;
        keyrings.insert(
            format!("/etc/apt/trusted.gpg.d/layerize-key-{}.gpg", number + 1),
            bytes.clone(),
        );
        keyrings.insert(path.display().to_string(), bytes);
    }
    Ok(keyrings)
}

/// The old `.list` of every base package the build upgrades.
async fn old_lists(
    base: &AptBase<'_>,
    packages: &[DebPackage],
) -> Result<Vec<(String, String)>, BuildError> {
    let names: Vec<String> = packages
        .iter()
        .filter(|package| package.upgrades.is_some())
        .map(|package| package.package.dpkg_name())
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let path = |name: &str| format!("var/lib/dpkg/info/{name}.list");
    let captures: Vec<Capture> = names
        .iter()
        .map(|name| Capture {
            path: path(name),
            max_bytes: MAX_BASE_FILE,
        })
        .collect();
    let read = index_image(base.store, base.layers, base.cache, &captures).await?;
    Ok(names
        .into_iter()
        .map(|name| {
            let list = read
                .files
                .get(&path(&name))
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                .unwrap_or_default();
            (name, list)
        })
        .collect())
}

/// The package layers: a group entry's layer holds its packages and what only they pull in;
/// every other package is a layer of its own. Ordered by source package, then name, so that a
/// budget cutting them in order keeps a source's binaries together.
fn package_layers(
    entries: &[(usize, String, AptRequest)],
    requests: &[Vec<Request>],
    packages: &[DebPackage],
    usr: &UsrMerge,
    filters: &PathFilters,
) -> Vec<LayerSpec> {
    let mut order: Vec<usize> = (0..packages.len()).collect();
    let sort_key = |index: &usize| {
        let package = &packages[*index].package;
        (
            package.source_name().to_owned(),
            package.name.clone(),
            package.architecture.clone(),
        )
    };
    order.sort_by_key(sort_key);
    let mut claimed: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for (entry, (_, _, request)) in entries.iter().enumerate() {
        if !request.group {
            continue;
        }
        let names: BTreeSet<&str> = requests[entry]
            .iter()
            .map(|request| request.name.as_str())
            .collect();
        for &index in &order {
            let pulled_by = &packages[index].pulled_by;
            if !taken.contains(&index)
                && !pulled_by.is_empty()
                && pulled_by.iter().all(|name| names.contains(name.as_str()))
            {
                taken.insert(index);
                claimed.entry(entry).or_default().push(index);
            }
        }
    }
    let layer = |name: String, members: Vec<String>, debs: Vec<DebPackage>| {
        let listed: Vec<String> = debs
            .iter()
            .map(|deb| format!("{}={}", deb.package.name, deb.package.version))
            .collect();
        LayerSpec {
            created_by: format!("layerize: {name}: apt {}", listed.join(" ")),
            name,
            inputs: Vec::new(),
            members,
            script: None,
            apt: Some(AptSpec::Packages(PackageLayer {
                debs,
                usr: usr.clone(),
                filters: filters.clone(),
            })),
        }
    };
    let mut layers: Vec<LayerSpec> = claimed
        .into_iter()
        .map(|(entry, indices)| {
            let debs: Vec<DebPackage> = indices.iter().map(|&i| packages[i].clone()).collect();
            let members = debs.iter().map(layer_name).collect();
            layer(entries[entry].1.clone(), members, debs)
        })
        .collect();
    layers.extend(
        order
            .into_iter()
            .filter(|index| !taken.contains(index))
            .map(|index| {
                let deb = packages[index].clone();
                layer(layer_name(&deb), Vec::new(), vec![deb])
            }),
    );
    layers
}

/// A package's layer name: its name, with the architecture for a foreign one.
fn layer_name(deb: &DebPackage) -> String {
    deb.package.dpkg_name()
}

/// `dpkg --configure -a` with no prompts and no services started, then the dynamic linker's
/// cache that libc-bin's trigger would have refreshed.
fn configure_step(needs: Vec<String>) -> ScriptStep {
    let mut step = ScriptStep::new(vec![
        "made_policy=".to_owned(),
        "if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; made_policy=1; fi".to_owned(),
        "dpkg --configure -a --force-confdef --force-confold".to_owned(),
        "if command -v ldconfig >/dev/null; then ldconfig; fi".to_owned(),
        "if [ -n \"$made_policy\" ]; then rm -f /usr/sbin/policy-rc.d; fi".to_owned(),
    ]);
    step.needs = needs;
    step.env = vec![
        ("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned()),
        ("DEBCONF_NONINTERACTIVE_SEEN".to_owned(), "true".to_owned()),
        ("LC_ALL".to_owned(), "C".to_owned()),
    ];
    step
}

pub(crate) fn apt_error(error: impl std::fmt::Display) -> BuildError {
    BuildError::Apt(error.to_string())
}
