//! The solver's view of one resolution: every archive package and every base package as a
//! resolvo solvable, grouped by the name dpkg keeps one of (`name`, or `name:arch` for a
//! foreign `Multi-Arch: same` package), and Debian relations turned into resolvo terms — an
//! alternative group becomes a union of version sets over the real packages and over the
//! packages that `Provides` the name; `Conflicts`/`Breaks` become `constrains`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use resolvo::utils::{Pool, VersionSet};
use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, Dependencies, DependencyProvider,
    HintDependenciesAvailable, Interner, KnownDependencies, NameId, Requirement, SolvableId,
    SolverCache, StringId, VersionSetId, VersionSetUnionId,
};

use super::{Installed, Options};
use crate::control::Paragraph;
use crate::package::{ArchivePackage, MultiArch};
use crate::relation::{parse_relations, Alternatives, Op, Relation};
use crate::version::Version;

/// Index of a [`Candidate`]; it is also the solvable's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CandidateId(pub u32);

impl fmt::Display for CandidateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One installable package version: from the archive, from the base, or both (the base's
/// version is also in the archive).
pub(super) struct Candidate<'a> {
    pub name: &'a str,
    /// The name dpkg keeps at most one of.
    pub key: String,
    pub architecture: &'a str,
    pub version: Version,
    pub multi_arch: MultiArch,
    pub paragraph: &'a Paragraph,
    /// The archive's package, when the archive has this version.
    pub archive: Option<usize>,
    /// The base's package, when the base has this version installed.
    pub installed: Option<usize>,
    /// The suites of the archive that offer it.
    pub suites: BTreeSet<&'a str>,
    /// `Provides:` entries: the virtual name and, for a versioned provide, its version.
    pub provides: Vec<(String, Option<Version>)>,
}

/// Which architectures may satisfy a relation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ArchRule {
    /// Any architecture (conflicts, the base's own packages, requests already resolved).
    Any,
    /// A dependency of a package of `depender` (native for `all`) with the relation's
    /// qualifier (`any`, `native`, an architecture).
    From {
        depender: String,
        qualifier: Option<String>,
    },
}

/// What a version set admits among the candidates of its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Admits {
    /// Versions that satisfy the constraint (any without one).
    Versions(Option<(Op, Version)>),
    /// Candidates providing the virtual name (with a version satisfying the constraint, for
    /// a versioned relation: unversioned provides satisfy only unversioned relations).
    Providing {
        name: String,
        constraint: Option<(Op, Version)>,
    },
    /// Exactly these candidates (a request resolved to its candidate; a base package and the
    /// archive's newer versions of it).
    Exactly(Vec<CandidateId>),
}

/// A resolvo version set: what it admits, by which architectures, or everything else (for
/// `Conflicts`/`Breaks`, which resolvo expresses as what a chosen candidate must match).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Match {
    pub admits: Admits,
    pub arch: ArchRule,
    pub negated: bool,
}

impl VersionSet for Match {
    type V = CandidateId;
}

/// The relationship fields a resolution follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    PreDepends,
    Depends,
    Recommends,
    Conflicts,
    Breaks,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::PreDepends => "Pre-Depends",
            Field::Depends => "Depends",
            Field::Recommends => "Recommends",
            Field::Conflicts => "Conflicts",
            Field::Breaks => "Breaks",
        }
    }
}

/// The candidates and everything resolvo asks about them.
pub(super) struct Universe<'a> {
    pub pool: Pool<Match, String>,
    pub candidates: Vec<Candidate<'a>>,
    /// Candidates per key, in candidate order (installed first, then newest first).
    by_key: HashMap<String, Vec<CandidateId>>,
    /// Keys per package name (`libc6`, `libc6:i386`), sorted.
    keys_of_name: HashMap<&'a str, BTreeSet<String>>,
    /// Keys of the candidates that provide a virtual name, sorted.
    providers: HashMap<String, BTreeSet<String>>,
    solvables: Vec<SolvableId>,
    options: &'a Options,
}

impl<'a> Universe<'a> {
    /// The universe of the base's packages and of `reachable` (indexes into `available`).
    pub fn new(
        available: &'a [ArchivePackage],
        reachable: &[usize],
        installed: &'a [Installed],
        options: &'a Options,
    ) -> Universe<'a> {
        let enabled = |arch: &str| {
            arch == "all"
                || arch == options.architecture
                || options.foreign_architectures.iter().any(|f| f == arch)
        };
        let mut candidates: Vec<Candidate<'a>> = Vec::new();
        let mut installed_at: HashMap<(String, &str), usize> = HashMap::new();
        for (index, package) in installed.iter().enumerate() {
            let Some((version, key)) = version_and_key(
                "the base's",
                &package.name,
                &package.version,
                &package.architecture,
                package.multi_arch,
                options,
            ) else {
                continue;
            };
            installed_at.insert(
                (key.clone(), package.architecture.as_str()),
                candidates.len(),
            );
            candidates.push(Candidate {
                name: &package.name,
                key,
                architecture: &package.architecture,
                version,
                multi_arch: package.multi_arch,
                paragraph: &package.paragraph,
                archive: None,
                installed: Some(index),
                suites: BTreeSet::new(),
                provides: provides_of(&package.paragraph, &package.name),
            });
        }
        // Archive packages in an order independent of the input's (same name, architecture
        // and version from several sources: the smallest origin represents them).
        let mut order: Vec<usize> = reachable
            .iter()
            .copied()
            .filter(|&index| enabled(&available[index].architecture))
            .collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&available[a], &available[b]);
            (
                &a.name,
                &a.architecture,
                &a.version,
                &a.origin,
                &a.deb.sha256,
            )
                .cmp(&(
                    &b.name,
                    &b.architecture,
                    &b.version,
                    &b.origin,
                    &b.deb.sha256,
                ))
        });
        let mut seen: HashMap<(String, &str, Version), usize> = HashMap::new();
        for index in order {
            let package = &available[index];
            let Some((version, key)) = version_and_key(
                "the archive's",
                &package.name,
                &package.version,
                &package.architecture,
                package.multi_arch,
                options,
            ) else {
                continue;
            };
            let base_has_it = installed_at
                .get(&(key.clone(), package.architecture.as_str()))
                .copied()
                .filter(|&at| candidates[at].version == version);
            if let Some(at) = base_has_it {
                let candidate = &mut candidates[at];
                candidate.archive.get_or_insert(index);
                candidate.suites.insert(&package.origin.suite);
                continue;
            }
            let identity = (key.clone(), package.architecture.as_str(), version.clone());
            if let Some(&at) = seen.get(&identity) {
                candidates[at].suites.insert(&package.origin.suite);
                continue;
            }
            seen.insert(identity, candidates.len());
            candidates.push(Candidate {
                name: &package.name,
                key,
                architecture: &package.architecture,
                version,
                multi_arch: package.multi_arch,
                paragraph: &package.paragraph,
                archive: Some(index),
                installed: None,
                suites: BTreeSet::from([package.origin.suite.as_str()]),
                provides: provides_of(&package.paragraph, &package.name),
            });
        }
        // Candidate ids in an order of their own (key, installed first, newest first,
        // architecture), so that nothing depends on the input's order.
        candidates.sort_by(|a, b| {
            (&a.key, a.installed.is_none(), &b.version, a.architecture).cmp(&(
                &b.key,
                b.installed.is_none(),
                &a.version,
                b.architecture,
            ))
        });
        let pool = Pool::new();
        let mut by_key: HashMap<String, Vec<CandidateId>> = HashMap::new();
        let mut keys_of_name: HashMap<&'a str, BTreeSet<String>> = HashMap::new();
        let mut providers: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut solvables = Vec::with_capacity(candidates.len());
        for (index, candidate) in candidates.iter().enumerate() {
            let id = CandidateId(index as u32);
            let name = pool.intern_package_name(candidate.key.as_str());
            solvables.push(pool.intern_solvable(name, id));
            by_key.entry(candidate.key.clone()).or_default().push(id);
            keys_of_name
                .entry(candidate.name)
                .or_default()
                .insert(candidate.key.clone());
            for (provided, _) in &candidate.provides {
                providers
                    .entry(provided.clone())
                    .or_default()
                    .insert(candidate.key.clone());
            }
        }
        Universe {
            pool,
            candidates,
            by_key,
            keys_of_name,
            providers,
            solvables,
            options,
        }
    }

    pub fn candidate(&self, id: CandidateId) -> &Candidate<'a> {
        &self.candidates[id.0 as usize]
    }

    pub fn solvable(&self, id: CandidateId) -> SolvableId {
        self.solvables[id.0 as usize]
    }

    pub fn candidate_of(&self, solvable: SolvableId) -> CandidateId {
        self.pool.resolve_solvable(solvable).record
    }

    /// Candidates of one package name (every key of it), in candidate order.
    pub fn candidates_named(&self, name: &str) -> Vec<CandidateId> {
        self.keys_of_name
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|key| self.by_key[key].iter().copied())
            .collect()
    }

    pub fn candidates_keyed(&self, key: &str) -> &[CandidateId] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// Keys of the packages providing `name`.
    pub fn providers_of(&self, name: &str) -> impl Iterator<Item = &str> {
        self.providers
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    pub fn native_architecture(&self) -> &str {
        &self.options.architecture
    }

    /// Whether a relation names this candidate, by its own name or by what it provides.
    pub fn relation_names(&self, relation: &Relation, id: CandidateId) -> bool {
        let candidate = self.candidate(id);
        (candidate.name == relation.name && relation.admits(&candidate.version))
            || provides_admit(
                &candidate.provides,
                &relation.name,
                relation.constraint.as_ref(),
            )
    }

    /// Whether the candidate is what the version set admits (ignoring `negated`).
    pub fn admits(&self, id: CandidateId, matching: &Match) -> bool {
        let candidate = self.candidate(id);
        let by_content = match &matching.admits {
            Admits::Versions(constraint) => constraint
                .as_ref()
                .is_none_or(|(op, bound)| op.admits(&candidate.version, bound)),
            Admits::Providing { name, constraint } => {
                provides_admit(&candidate.provides, name, constraint.as_ref())
            }
            Admits::Exactly(ids) => ids.contains(&id),
        };
        by_content && self.arch_admits(candidate, &matching.arch)
    }

    fn arch_admits(&self, candidate: &Candidate<'_>, rule: &ArchRule) -> bool {
        let ArchRule::From {
            depender,
            qualifier,
        } = rule
        else {
            return true;
        };
        if candidate.multi_arch == MultiArch::Foreign {
            return true;
        }
        let native = &self.options.architecture;
        let arch_is = |arch: &str| {
            candidate.architecture == arch || (candidate.architecture == "all" && arch == native)
        };
        match qualifier.as_deref() {
            None => arch_is(depender),
            Some("any") => arch_is(depender) || candidate.multi_arch == MultiArch::Allowed,
            Some("native") => arch_is(native),
            Some(arch) => arch_is(arch),
        }
    }

    /// The architecture a candidate's dependencies are resolved for (`all` depends natively).
    fn depender_arch(&self, candidate: &Candidate<'_>) -> String {
        if candidate.architecture == "all" {
            self.options.architecture.clone()
        } else {
            candidate.architecture.to_owned()
        }
    }

    fn version_set(&self, key: &str, matching: Match) -> VersionSetId {
        let name = self.pool.intern_package_name(key);
        self.pool.intern_version_set(name, matching)
    }

    /// The version sets of an alternative group from a package of `depender`'s
    /// architecture, in apt's order of preference: each alternative's real package, then
    /// the packages providing it.
    pub fn group_version_sets(&self, group: &Alternatives, depender: &str) -> Vec<VersionSetId> {
        let mut sets = Vec::new();
        for relation in group {
            let arch = ArchRule::From {
                depender: depender.to_owned(),
                qualifier: relation.arch.clone(),
            };
            let keys = self.keys_of_name.get(relation.name.as_str());
            // An unknown name still gets its (empty) version set, so that an explanation
            // can name what was missing.
            let real_keys: Vec<&str> = match keys {
                Some(keys) => keys.iter().map(String::as_str).collect(),
                None => vec![relation.name.as_str()],
            };
            for key in real_keys {
                sets.push(self.version_set(
                    key,
                    Match {
                        admits: Admits::Versions(relation.constraint.clone()),
                        arch: arch.clone(),
                        negated: false,
                    },
                ));
            }
            for key in self.providers_of(&relation.name) {
                sets.push(self.version_set(
                    key,
                    Match {
                        admits: Admits::Providing {
                            name: relation.name.clone(),
                            constraint: relation.constraint.clone(),
                        },
                        arch: arch.clone(),
                        negated: false,
                    },
                ));
            }
        }
        sets
    }

    /// A requirement on exactly these candidates (all of one key).
    pub fn exactly(&self, key: &str, ids: Vec<CandidateId>) -> ConditionalRequirement {
        self.version_set(
            key,
            Match {
                admits: Admits::Exactly(ids),
                arch: ArchRule::Any,
                negated: false,
            },
        )
        .into()
    }

    fn requirement(&self, sets: Vec<VersionSetId>) -> Option<ConditionalRequirement> {
        let mut sets = sets.into_iter();
        let first = sets.next()?;
        let rest: Vec<VersionSetId> = sets.collect();
        Some(if rest.is_empty() {
            Requirement::Single(first).into()
        } else {
            Requirement::Union(self.pool.intern_version_set_union(first, rest.into_iter())).into()
        })
    }

    /// A candidate's parsed relationship field (an absent field has no groups).
    pub fn relations(
        &self,
        id: CandidateId,
        field: Field,
    ) -> Result<Vec<Alternatives>, crate::relation::RelationError> {
        match self.candidate(id).paragraph.get(field.name()) {
            Some(value) => parse_relations(value),
            None => Ok(Vec::new()),
        }
    }

    /// The candidates of `chosen` that satisfy the group, for a dependency of `depender`.
    pub fn group_satisfied_by(
        &self,
        group: &Alternatives,
        depender: CandidateId,
        chosen: &HashSet<CandidateId>,
    ) -> Vec<CandidateId> {
        let mut satisfying: Vec<CandidateId> = self
            .group_candidates(group, depender)
            .into_iter()
            .filter(|id| chosen.contains(id))
            .collect();
        satisfying.sort();
        satisfying
    }

    fn key_of_set(&self, set: VersionSetId) -> &str {
        self.pool
            .resolve_package_name(self.pool.resolve_version_set_package_name(set))
    }

    fn version_set_admits(&self, set: VersionSetId, id: CandidateId) -> bool {
        self.admits(id, self.pool.resolve_version_set(set))
    }

    /// The candidates a group's version sets admit, in the solver's order of preference.
    pub fn group_candidates(
        &self,
        group: &Alternatives,
        depender: CandidateId,
    ) -> Vec<CandidateId> {
        let arch = self.depender_arch(self.candidate(depender));
        let mut ordered = Vec::new();
        for set in self.group_version_sets(group, &arch) {
            for &id in self.candidates_keyed(self.key_of_set(set)) {
                if self.version_set_admits(set, id) && !ordered.contains(&id) {
                    ordered.push(id);
                }
            }
        }
        ordered
    }

    /// `Conflicts`/`Breaks` relations as what any chosen candidate of each key must be: not
    /// what the relation names (a package never conflicts with itself).
    fn constraints(&self, id: CandidateId, groups: &[Alternatives]) -> Vec<VersionSetId> {
        let own_name = self.candidate(id).name;
        let mut sets = Vec::new();
        let mut push = |key: &str, admits: Admits| {
            let owner = self.by_key.get(key).and_then(|ids| ids.first());
            if owner.is_some_and(|&owner| self.candidate(owner).name == own_name) {
                return;
            }
            sets.push(self.version_set(
                key,
                Match {
                    admits,
                    arch: ArchRule::Any,
                    negated: true,
                },
            ));
        };
        for relation in groups.iter().flatten() {
            for key in self
                .keys_of_name
                .get(relation.name.as_str())
                .into_iter()
                .flatten()
            {
                push(key, Admits::Versions(relation.constraint.clone()));
            }
            for key in self.providers_of(&relation.name) {
                push(
                    key,
                    Admits::Providing {
                        name: relation.name.clone(),
                        constraint: relation.constraint.clone(),
                    },
                );
            }
        }
        sets
    }

    fn dependencies(&self, id: CandidateId) -> Result<KnownDependencies, String> {
        let candidate = self.candidate(id);
        let depender = self.depender_arch(candidate);
        let mut known = KnownDependencies::default();
        for field in [Field::PreDepends, Field::Depends] {
            let groups = self
                .relations(id, field)
                .map_err(|error| error.to_string())?;
            for group in groups {
                let sets = self.group_version_sets(&group, &depender);
                if candidate.installed.is_some() && !self.installed_satisfy(&sets) {
                    // The base was already missing this; not ours to repair, and no reason to
                    // refuse the build.
                    tracing::warn!(
                        package = candidate.name,
                        field = field.name(),
                        "a base package's dependency is not satisfied by the base; it is ignored"
                    );
                    continue;
                }
                known.requirements.extend(self.requirement(sets));
            }
        }
        for field in [Field::Conflicts, Field::Breaks] {
            let groups = self
                .relations(id, field)
                .map_err(|error| error.to_string())?;
            known.constrains.extend(self.constraints(id, &groups));
        }
        Ok(known)
    }

    fn installed_satisfy(&self, sets: &[VersionSetId]) -> bool {
        sets.iter().any(|&set| {
            self.candidates_keyed(self.key_of_set(set))
                .iter()
                .any(|&id| {
                    self.candidate(id).installed.is_some() && self.version_set_admits(set, id)
                })
        })
    }

    pub fn describe(&self, id: CandidateId) -> String {
        let candidate = self.candidate(id);
        let mut text = format!("{} {}", candidate.name, candidate.version);
        if candidate.architecture != self.options.architecture && candidate.architecture != "all" {
            text.push_str(&format!(" ({})", candidate.architecture));
        }
        if candidate.installed.is_some() {
            text.push_str(" (in the base)");
        }
        text
    }
}

/// The name dpkg keeps at most one of: a foreign `Multi-Arch: same` package is co-installable
/// with its native self, so it has a key of its own.
pub(super) fn key_of(name: &str, arch: &str, multi_arch: MultiArch, options: &Options) -> String {
    if multi_arch == MultiArch::Same && arch != "all" && arch != options.architecture {
        format!("{name}:{arch}")
    } else {
        name.to_owned()
    }
}

/// Whether a candidate's `Provides` satisfy `name` with `constraint`: a versioned relation
/// only by a versioned provide.
fn provides_admit(
    provides: &[(String, Option<Version>)],
    name: &str,
    constraint: Option<&(Op, Version)>,
) -> bool {
    provides.iter().any(|(provided, version)| {
        provided == name
            && match (constraint, version) {
                (None, _) => true,
                (Some((op, bound)), Some(version)) => op.admits(version, bound),
                (Some(_), None) => false,
            }
    })
}

/// A package's parsed version and its key, or `None` (and a warning naming `whose` package)
/// for a version that does not parse.
fn version_and_key(
    whose: &str,
    name: &str,
    version: &str,
    architecture: &str,
    multi_arch: MultiArch,
    options: &Options,
) -> Option<(Version, String)> {
    let Ok(parsed) = version.parse::<Version>() else {
        tracing::warn!(package = %name, version, "{whose} package has a version that does not parse; it is ignored");
        return None;
    };
    Some((parsed, key_of(name, architecture, multi_arch, options)))
}

fn provides_of(paragraph: &Paragraph, package: &str) -> Vec<(String, Option<Version>)> {
    let Some(field) = paragraph.get("Provides") else {
        return Vec::new();
    };
    match parse_relations(field) {
        Ok(groups) => groups
            .into_iter()
            .flatten()
            .map(
                |Relation {
                     name, constraint, ..
                 }| {
                    // Only `=` is meaningful in Provides; anything else provides no version.
                    let version =
                        constraint.and_then(|(op, version)| (op == Op::Equal).then_some(version));
                    (name, version)
                },
            )
            .collect(),
        Err(error) => {
            tracing::warn!(package, %error, "a Provides field that does not parse is ignored");
            Vec::new()
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("not ")?;
        }
        match &self.admits {
            Admits::Versions(None) => f.write_str("(any version)"),
            Admits::Versions(Some((op, version))) => write!(f, "({op} {version})"),
            Admits::Providing {
                name,
                constraint: None,
            } => write!(f, "(providing {name})"),
            Admits::Providing {
                name,
                constraint: Some((op, version)),
            } => write!(f, "(providing {name} ({op} {version}))"),
            Admits::Exactly(_) => f.write_str("(as requested or in the base)"),
        }
    }
}

impl Interner for Universe<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, solvable: SolvableId) -> impl fmt::Display + '_ {
        self.describe(self.candidate_of(solvable))
    }

    fn display_name(&self, name: NameId) -> impl fmt::Display + '_ {
        self.pool.resolve_package_name(name).clone()
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl fmt::Display + '_ {
        self.pool.resolve_version_set(version_set).to_string()
    }

    fn display_string(&self, string_id: StringId) -> impl fmt::Display + '_ {
        self.pool.resolve_string(string_id).to_owned()
    }

    fn version_set_name(&self, version_set: VersionSetId) -> NameId {
        self.pool.resolve_version_set_package_name(version_set)
    }

    fn solvable_name(&self, solvable: SolvableId) -> NameId {
        self.pool.resolve_solvable(solvable).name
    }

    fn version_sets_in_union(
        &self,
        version_set_union: VersionSetUnionId,
    ) -> impl Iterator<Item = VersionSetId> {
        self.pool.resolve_version_set_union(version_set_union)
    }

    fn resolve_condition(&self, condition: ConditionId) -> Condition {
        self.pool.resolve_condition(condition).clone()
    }
}

impl DependencyProvider for Universe<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        version_set: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let matching = self.pool.resolve_version_set(version_set);
        candidates
            .iter()
            .copied()
            .filter(|&solvable| {
                (self.admits(self.candidate_of(solvable), matching) != matching.negated) != inverse
            })
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates<SolvableId>> {
        let ids = self.by_key.get(self.pool.resolve_package_name(name))?;
        let favored = ids
            .iter()
            .find(|&&id| self.candidate(id).installed.is_some())
            .map(|&id| self.solvable(id));
        Some(Candidates {
            candidates: ids.iter().map(|&id| self.solvable(id)).collect(),
            favored,
            hint_dependencies_available: HintDependenciesAvailable::All,
            ..Candidates::default()
        })
    }

    async fn sort_candidates(&self, _solver: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        // Candidate ids are already in preference order: installed, then newest.
        solvables.sort_by_key(|&solvable| self.candidate_of(solvable));
    }

    async fn get_dependencies(&self, solvable: SolvableId) -> Dependencies {
        match self.dependencies(self.candidate_of(solvable)) {
            Ok(known) => Dependencies::Known(known),
            Err(reason) => Dependencies::Unknown(self.pool.intern_string(reason)),
        }
    }
}
