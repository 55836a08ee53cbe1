//! The requested packages resolved against an archive's index and the base's dpkg status, as
//! apt would on a base that is never shrunk: each request picks its candidate, the base's
//! packages stay (kept, or upgraded when something needs newer), and resolvo's CDCL solver
//! finds the rest. The result names what to install and which request pulled each package in.

mod explain;
mod provider;
mod reach;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use resolvo::{ConditionalRequirement, Problem, SolvableId, Solver, UnsolvableOrCancelled};

use crate::control::{self, Paragraph};
use crate::package::{ArchivePackage, MultiArch};
use crate::version::Version;
use provider::{CandidateId, Field, Universe};

/// A package the user asked for: `name`, `name=version`, `name/suite`, `name:arch`, and
/// `name:arch` with one of `=version` or `/suite`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    pub name: String,
    pub arch: Option<String>,
    pub version: Option<String>,
    pub suite: Option<String>,
}

impl FromStr for Request {
    type Err = ResolveError;

    fn from_str(text: &str) -> Result<Request, ResolveError> {
        let bad = |problem: &str| ResolveError::BadRequest {
            request: text.to_owned(),
            problem: problem.to_owned(),
        };
        let text = text.trim();
        let (qualified, version, suite) = match text.find(['=', '/']) {
            Some(at) if text.as_bytes()[at] == b'=' => (&text[..at], Some(&text[at + 1..]), None),
            Some(at) => (&text[..at], None, Some(&text[at + 1..])),
            None => (text, None, None),
        };
        let (name, arch) = match qualified.split_once(':') {
            Some((name, arch)) => (name, Some(arch)),
            None => (qualified, None),
        };
        let word = |word: &str| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        };
        if name.is_empty() {
            return Err(bad("the package name is empty"));
        }
        if !word(name) {
            return Err(bad(
                "a package name has only letters, digits and `+-.` (write `name`, `name=version`, `name/suite` or `name:arch`)",
            ));
        }
        if arch.is_some_and(|arch| !word(arch)) {
            return Err(bad("the architecture after `:` is empty or not a word"));
        }
        if let Some(version) = version {
            version
                .parse::<Version>()
                .map_err(|error| bad(&error.to_string()))?;
        }
        if suite.is_some_and(|suite| !word(suite)) {
            return Err(bad("the suite after `/` is empty or not a word"));
        }
        Ok(Request {
            name: name.to_owned(),
            arch: arch.map(str::to_owned),
            version: version.map(str::to_owned),
            suite: suite.map(str::to_owned),
        })
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some(version) = &self.version {
            write!(f, "={version}")?;
        }
        if let Some(suite) = &self.suite {
            write!(f, "/{suite}")?;
        }
        Ok(())
    }
}

/// A package of the base's dpkg status that is installed (`Status: … ok installed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub multi_arch: MultiArch,
    pub paragraph: Paragraph,
}

/// The installed packages of a dpkg `status` file; packages that are only known, removed or
/// half-installed are left out.
pub fn installed_from_status(status: &str) -> Result<Vec<Installed>, ResolveError> {
    let paragraphs = control::parse(status).map_err(|source| ResolveError::BadStatus {
        problem: source.to_string(),
    })?;
    let mut installed = Vec::new();
    for paragraph in paragraphs {
        let installed_state = paragraph
            .get("Status")
            .is_some_and(|status| status.split_whitespace().skip(1).eq(["ok", "installed"]));
        if !installed_state {
            continue;
        }
        let field = |name: &str| {
            paragraph
                .get(name)
                .map(str::to_owned)
                .ok_or_else(|| ResolveError::BadStatus {
                    problem: format!(
                        "the installed package {:?} has no {name} field",
                        paragraph
                            .get("Package")
                            .unwrap_or("(without a Package field)")
                    ),
                })
        };
        installed.push(Installed {
            name: field("Package")?,
            version: field("Version")?,
            architecture: field("Architecture")?,
            multi_arch: MultiArch::of(&paragraph),
            paragraph,
        });
    }
    Ok(installed)
}

/// How to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The platform's Debian architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// The base's `/var/lib/dpkg/arch` beyond the native one.
    pub foreign_architectures: Vec<String>,
    /// Install `Recommends` too (where they can be; they never make a resolution fail).
    pub recommends: bool,
}

/// What to install on the base: new packages and upgraded base packages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// Sorted by (name, architecture).
    pub packages: Vec<Chosen>,
}

/// One package to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// Into `available`.
    pub index: usize,
    /// Named by a request (apt does not mark it Auto-Installed).
    pub requested: bool,
    /// The requested names whose dependency closure contains it, sorted (its own if
    /// requested). Empty only for a base package upgraded because a new package `Breaks`
    /// its old version.
    pub pulled_by: Vec<String>,
    /// The base's version it replaces.
    pub upgrades: Option<String>,
}

/// Why a resolution failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("{request:?} is not a package request: {problem}")]
    BadRequest { request: String, problem: String },
    #[error("the base's dpkg status does not parse: {problem}")]
    BadStatus { problem: String },
    #[error("no package {name:?} in the archive (sources: {sources}){}", suggestion.as_ref().map(|s| format!("; did you mean {s:?}?")).unwrap_or_default())]
    UnknownPackage {
        name: String,
        sources: String,
        suggestion: Option<String>,
    },
    #[error("{name:?} is a virtual package provided by {}; request one of them", providers.join(", "))]
    VirtualPackage {
        name: String,
        providers: Vec<String>,
    },
    #[error("{request}: no such version; the archive has {}", available.join(", "))]
    NoSuchVersion {
        request: String,
        available: Vec<String>,
    },
    #[error("{request}: not in that suite; {name:?} is in {}", suites.join(", "))]
    NoSuchSuite {
        request: String,
        name: String,
        suites: Vec<String>,
    },
    #[error("{request}: not for that architecture; {name:?} is there for {}", architectures.join(", "))]
    NoSuchArchitecture {
        request: String,
        name: String,
        architectures: Vec<String>,
    },
    #[error(
        "{request}: the base has the newer {installed}; layerize does not downgrade base packages"
    )]
    Downgrade { request: String, installed: String },
    #[error("cannot install {package:?} {version}: it conflicts with {base:?} {base_version} of the base ({relation}); layerize does not remove base packages")]
    ConflictsWithBase {
        package: String,
        version: String,
        base: String,
        base_version: String,
        relation: String,
    },
    #[error("cannot install {package:?} {version}: {base:?} {base_version} of the base declares {relation}; layerize does not remove base packages")]
    RefusedByBase {
        package: String,
        version: String,
        base: String,
        base_version: String,
        relation: String,
    },
    #[error("cannot install {requests} on this base:\n{explanation}")]
    Unsatisfiable {
        requests: String,
        explanation: String,
    },
}

/// The names a resolution of `requests` starts from, for [`crate::index::Index::reachable`]:
/// the requested ones and the base's packages with what they pull in.
pub fn reach_roots(
    requests: &[Request],
    installed: &[Installed],
    options: &Options,
) -> Vec<String> {
    reach::roots(requests, installed, options)
}

/// The names `package` pulls in (`Pre-Depends`, `Depends`, and `Recommends` when followed),
/// for [`crate::index::Index::reachable`].
pub fn pulled_in(package: &ArchivePackage, options: &Options) -> Vec<String> {
    reach::pulled_in(&package.paragraph, options)
}

/// Resolves `requests` against the archive's packages and the base's installed ones.
/// `available` must hold everything the requests can reach (all of an archive, or what [`crate::index::Index::reachable`] gives for [`reach_roots`]).
pub fn resolve(
    requests: &[Request],
    available: &[ArchivePackage],
    installed: &[Installed],
    options: &Options,
) -> Result<Resolution, ResolveError> {
    let reachable = reach::reachable(requests, available, installed, options);
    let universe = Universe::new(available, &reachable, installed, options);
    let picks: Vec<CandidateId> = requests
        .iter()
        .map(|request| pick(&universe, request, available))
        .collect::<Result<_, _>>()?;

    let mut requirements: Vec<ConditionalRequirement> = Vec::new();
    for (index, candidate) in universe.candidates.iter().enumerate() {
        if candidate.installed.is_none() {
            continue;
        }
        let keep_or_upgrade: Vec<CandidateId> = universe
            .candidates_keyed(&candidate.key)
            .iter()
            .copied()
            .filter(|&id| {
                let other = universe.candidate(id);
                id.0 as usize == index
                    || (other.version > candidate.version
                        && (other.architecture == candidate.architecture
                            || other.architecture == "all"
                            || candidate.architecture == "all"))
            })
            .collect();
        requirements.push(universe.exactly(&candidate.key, keep_or_upgrade));
    }
    for &id in &picks {
        requirements.push(universe.exactly(&universe.candidate(id).key, vec![id]));
    }

    let recommends = options.recommends;
    let mut solver = Solver::new(universe);
    let mut soft: Vec<SolvableId> = Vec::new();
    let mut tried: HashSet<CandidateId> = HashSet::new();
    let solution = loop {
        let problem = Problem::new()
            .requirements(requirements.clone())
            .soft_requirements(soft.clone());
        let solution = match solver.solve(problem) {
            Ok(solution) => solution,
            Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
                let explanation = conflict.display_user_friendly(&solver).to_string();
                return Err(explain::unsatisfiable(
                    solver.provider(),
                    requests,
                    &picks,
                    explanation,
                ));
            }
            Err(UnsolvableOrCancelled::Cancelled(_)) => {
                unreachable!("the provider never cancels")
            }
        };
        let universe = solver.provider();
        let chosen: HashSet<CandidateId> = solution
            .iter()
            .map(|&solvable| universe.candidate_of(solvable))
            .collect();
        let more = if recommends {
            recommended(universe, &chosen, &mut tried)
        } else {
            Vec::new()
        };
        if more.is_empty() {
            break chosen;
        }
        soft.extend(more.into_iter().map(|id| universe.solvable(id)));
    };

    let universe = solver.provider();
    Ok(resolution(universe, requests, &picks, &solution, options))
}

/// For each new package's `Recommends` group that the solution leaves unsatisfied, the next
/// candidate not tried yet (a recommended package that cannot be installed is skipped, as
/// apt does).
fn recommended(
    universe: &Universe<'_>,
    chosen: &HashSet<CandidateId>,
    tried: &mut HashSet<CandidateId>,
) -> Vec<CandidateId> {
    let mut new: Vec<CandidateId> = chosen
        .iter()
        .copied()
        .filter(|&id| universe.candidate(id).installed.is_none())
        .collect();
    new.sort();
    let mut more = Vec::new();
    for id in new {
        for group in universe
            .relations(id, Field::Recommends)
            .unwrap_or_default()
        {
            if !universe.group_satisfied_by(&group, id, chosen).is_empty() {
                continue;
            }
            if let Some(next) = universe
                .group_candidates(&group, id)
                .into_iter()
                .find(|candidate| !tried.contains(candidate))
            {
                tried.insert(next);
                more.push(next);
            }
        }
    }
    more
}

/// The candidate a request names: the archive's highest version (or the base's, when it is
/// as new) among those of its architecture, version and suite.
fn pick(
    universe: &Universe<'_>,
    request: &Request,
    available: &[ArchivePackage],
) -> Result<CandidateId, ResolveError> {
    let named = universe.candidates_named(&request.name);
    if named.is_empty() {
        return pick_virtual(universe, request, available);
    }
    let native = universe.native_architecture();
    let wanted_arch = request.arch.as_deref().unwrap_or(native);
    let of_arch: Vec<CandidateId> = named
        .iter()
        .copied()
        .filter(|&id| {
            let arch = universe.candidate(id).architecture;
            arch == wanted_arch || (arch == "all" && wanted_arch == native)
        })
        .collect();
    if of_arch.is_empty() {
        return Err(ResolveError::NoSuchArchitecture {
            request: request.to_string(),
            name: request.name.clone(),
            architectures: sorted_unique(
                named
                    .iter()
                    .map(|&id| universe.candidate(id).architecture.to_owned()),
            ),
        });
    }
    let in_suite: Vec<CandidateId> = match &request.suite {
        Some(suite) => of_arch
            .iter()
            .copied()
            .filter(|&id| universe.candidate(id).suites.contains(suite.as_str()))
            .collect(),
        None => of_arch.clone(),
    };
    if in_suite.is_empty() {
        return Err(ResolveError::NoSuchSuite {
            request: request.to_string(),
            name: request.name.clone(),
            suites: sorted_unique(
                of_arch
                    .iter()
                    .flat_map(|&id| universe.candidate(id).suites.iter().map(|s| s.to_string())),
            ),
        });
    }
    let of_version: Vec<CandidateId> = match &request.version {
        Some(version) => {
            let version: Version =
                version
                    .parse()
                    .map_err(
                        |error: crate::version::VersionError| ResolveError::BadRequest {
                            request: request.to_string(),
                            problem: error.to_string(),
                        },
                    )?;
            in_suite
                .iter()
                .copied()
                .filter(|&id| universe.candidate(id).version == version)
                .collect()
        }
        None => in_suite.clone(),
    };
    let Some(&best) = of_version.iter().min_by(|&&a, &&b| {
        let (a_candidate, b_candidate) = (universe.candidate(a), universe.candidate(b));
        b_candidate
            .version
            .cmp(&a_candidate.version)
            .then(
                a_candidate
                    .installed
                    .is_none()
                    .cmp(&b_candidate.installed.is_none()),
            )
            .then(a.cmp(&b))
    }) else {
        let mut versions: Vec<&Version> = in_suite
            .iter()
            .map(|&id| &universe.candidate(id).version)
            .collect();
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        return Err(ResolveError::NoSuchVersion {
            request: request.to_string(),
            available: versions.iter().map(|v| v.to_string()).collect(),
        });
    };
    let picked = universe.candidate(best);
    let newer_base = universe
        .candidates_keyed(&picked.key)
        .iter()
        .copied()
        .find(|&id| universe.candidate(id).installed.is_some())
        .filter(|&base| universe.candidate(base).version > picked.version);
    if let Some(base) = newer_base {
        if request.version.is_some() || request.suite.is_some() {
            return Err(ResolveError::Downgrade {
                request: request.to_string(),
                installed: universe.candidate(base).version.to_string(),
            });
        }
        // The base's is newer than anything the archive has: apt keeps it.
        return Ok(base);
    }
    Ok(best)
}

/// A request for a name only `Provides` offers: fine when exactly one package provides it.
fn pick_virtual(
    universe: &Universe<'_>,
    request: &Request,
    available: &[ArchivePackage],
) -> Result<CandidateId, ResolveError> {
    let providers: Vec<&str> = universe.providers_of(&request.name).collect();
    let provider_names = sorted_unique(providers.iter().flat_map(|key| {
        universe
            .candidates_keyed(key)
            .iter()
            .map(|&id| universe.candidate(id).name.to_owned())
    }));
    match provider_names.as_slice() {
        [] => Err(ResolveError::UnknownPackage {
            name: request.name.clone(),
            sources: sources_of(available),
            suggestion: explain::nearest_name(
                available.iter().map(|package| package.name.as_str()),
                &request.name,
            ),
        }),
        [only] => pick(
            universe,
            &Request {
                name: only.clone(),
                ..request.clone()
            },
            available,
        ),
        _ => Err(ResolveError::VirtualPackage {
            name: request.name.clone(),
            providers: provider_names,
        }),
    }
}

fn sources_of(available: &[ArchivePackage]) -> String {
    let origins: BTreeSet<String> = available
        .iter()
        .map(|package| {
            format!(
                "{} {} {}",
                package.origin.uri, package.origin.suite, package.origin.component
            )
        })
        .collect();
    if origins.is_empty() {
        "none".to_owned()
    } else {
        origins.into_iter().collect::<Vec<_>>().join(", ")
    }
}

fn sorted_unique(items: impl Iterator<Item = String>) -> Vec<String> {
    items.collect::<BTreeSet<_>>().into_iter().collect()
}

/// The solution's new and upgraded packages, with who pulled each in.
fn resolution(
    universe: &Universe<'_>,
    requests: &[Request],
    picks: &[CandidateId],
    solution: &HashSet<CandidateId>,
    options: &Options,
) -> Resolution {
    let new: HashSet<CandidateId> = solution
        .iter()
        .copied()
        .filter(|&id| universe.candidate(id).installed.is_none())
        .collect();
    let mut fields = vec![Field::PreDepends, Field::Depends];
    if options.recommends {
        fields.push(Field::Recommends);
    }
    let mut edges: HashMap<CandidateId, Vec<CandidateId>> = HashMap::new();
    for &id in solution {
        let targets = edges.entry(id).or_default();
        for &field in &fields {
            for group in universe.relations(id, field).unwrap_or_default() {
                targets.extend(universe.group_satisfied_by(&group, id, solution));
            }
        }
    }
    // Through new packages only; then a package left unattributed (an upgrade that only a
    // base package's own dependency leads to) through the base's packages too.
    let mut pulled_by: HashMap<CandidateId, BTreeSet<String>> = HashMap::new();
    for (request, &start) in requests.iter().zip(picks) {
        for id in reachable(start, &edges, |id| id == start || new.contains(&id)) {
            if new.contains(&id) {
                pulled_by
                    .entry(id)
                    .or_default()
                    .insert(request.name.clone());
            }
        }
    }
    let orphans: HashSet<CandidateId> = new
        .iter()
        .copied()
        .filter(|id| !pulled_by.contains_key(id))
        .collect();
    for (request, &start) in requests.iter().zip(picks) {
        for id in reachable(start, &edges, |_| true) {
            if orphans.contains(&id) {
                pulled_by
                    .entry(id)
                    .or_default()
                    .insert(request.name.clone());
            }
        }
    }
    let requested: HashSet<CandidateId> = picks.iter().copied().collect();
    let mut packages: Vec<(String, String, Chosen)> = new
        .iter()
        .filter_map(|&id| {
            let candidate = universe.candidate(id);
            let index = candidate.archive?;
            let upgrades = universe
                .candidates_keyed(&candidate.key)
                .iter()
                .map(|&other| universe.candidate(other))
                .find(|other| other.installed.is_some())
                .map(|other| other.version.to_string());
            Some((
                candidate.name.to_owned(),
                candidate.architecture.to_owned(),
                Chosen {
                    index,
                    requested: requested.contains(&id),
                    pulled_by: pulled_by
                        .remove(&id)
                        .map(|names| names.into_iter().collect())
                        .unwrap_or_default(),
                    upgrades,
                },
            ))
        })
        .collect();
    packages.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Resolution {
        packages: packages.into_iter().map(|(_, _, chosen)| chosen).collect(),
    }
}

/// Everything reachable from `start` along `edges`, following edges only out of nodes that
/// `expand` admits.
fn reachable(
    start: CandidateId,
    edges: &HashMap<CandidateId, Vec<CandidateId>>,
    expand: impl Fn(CandidateId) -> bool,
) -> HashSet<CandidateId> {
    let mut seen = HashSet::from([start]);
    let mut queue = vec![start];
    while let Some(id) = queue.pop() {
        if !expand(id) {
            continue;
        }
        for &next in edges.get(&id).into_iter().flatten() {
            if seen.insert(next) {
                queue.push(next);
            }
        }
    }
    seen
}
