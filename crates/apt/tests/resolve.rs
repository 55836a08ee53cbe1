//! The solver on small synthetic archives and bases: alternatives, Provides, the base kept or
//! upgraded, conflicts and breaks refused, requests pinned by version, suite and architecture,
//! Recommends, and the same answer whatever the input's order.

use layerize_apt::control;
use layerize_apt::package::{ArchivePackage, DebLocation, MultiArch, Origin};
use layerize_apt::resolve::{
    installed_from_status, resolve, Installed, Options, Request, Resolution, ResolveError,
};

/// An archive from `Packages`-like stanzas; `Suite:` (not a real index field) sets the origin.
fn archive(text: &str) -> Vec<ArchivePackage> {
    control::parse(text)
        .unwrap()
        .into_iter()
        .map(|paragraph| {
            let field = |name: &str| paragraph.get(name).unwrap_or_default().to_owned();
            let name = field("Package");
            let version = field("Version");
            let architecture = paragraph.get("Architecture").unwrap_or("amd64").to_owned();
            ArchivePackage {
                deb: DebLocation {
                    url: format!("http://archive.test/pool/{name}_{version}_{architecture}.deb"),
                    size: 1,
                    sha256: format!("{name}{version}{architecture}"),
                },
                origin: Origin {
                    uri: "http://archive.test/debian".into(),
                    suite: paragraph.get("Suite").unwrap_or("bookworm").to_owned(),
                    component: "main".into(),
                },
                multi_arch: MultiArch::of(&paragraph),
                name,
                version,
                architecture,
                paragraph,
            }
        })
        .collect()
}

/// A base from dpkg-status-like stanzas (each gets `Status: install ok installed` and, unless
/// given, `Architecture: amd64`).
fn base(text: &str) -> Vec<Installed> {
    let status: String = text
        .split("\n\n")
        .filter(|stanza| !stanza.trim().is_empty())
        .map(|stanza| {
            let mut stanza = format!("{}\nStatus: install ok installed\n", stanza.trim());
            if !stanza.contains("Architecture:") {
                stanza.push_str("Architecture: amd64\n");
            }
            stanza
        })
        .collect::<Vec<_>>()
        .join("\n");
    installed_from_status(&status).unwrap()
}

fn options() -> Options {
    Options {
        architecture: "amd64".into(),
        foreign_architectures: vec![],
        recommends: false,
    }
}

fn requests(names: &[&str]) -> Vec<Request> {
    names.iter().map(|name| name.parse().unwrap()).collect()
}

fn solve(
    names: &[&str],
    available: &[ArchivePackage],
    installed: &[Installed],
    options: &Options,
) -> Result<Resolution, ResolveError> {
    resolve(&requests(names), available, installed, options)
}

/// `name=version` of each chosen package, in the resolution's order.
fn chosen(resolution: &Resolution, available: &[ArchivePackage]) -> Vec<String> {
    resolution
        .packages
        .iter()
        .map(|chosen| {
            let package = &available[chosen.index];
            if package.architecture == "amd64" || package.architecture == "all" {
                format!("{}={}", package.name, package.version)
            } else {
                format!(
                    "{}:{}={}",
                    package.name, package.architecture, package.version
                )
            }
        })
        .collect()
}

fn installs(names: &[&str], available: &[ArchivePackage], installed: &[Installed]) -> Vec<String> {
    chosen(
        &solve(names, available, installed, &options()).unwrap(),
        available,
    )
}

#[test]
fn requests_parse_and_print() {
    for (text, name, arch, version, suite) in [
        ("curl", "curl", None, None, None),
        ("curl=7.88.1-10", "curl", None, Some("7.88.1-10"), None),
        (
            "curl/bookworm-backports",
            "curl",
            None,
            None,
            Some("bookworm-backports"),
        ),
        ("libc6:i386", "libc6", Some("i386"), None, None),
        (
            "libc6:i386=2.36-9",
            "libc6",
            Some("i386"),
            Some("2.36-9"),
            None,
        ),
        (
            "libc6:i386/bookworm",
            "libc6",
            Some("i386"),
            None,
            Some("bookworm"),
        ),
        ("vim=2:9.0.1378-2", "vim", None, Some("2:9.0.1378-2"), None),
    ] {
        let request: Request = text.parse().unwrap();
        assert_eq!(
            (
                request.name.as_str(),
                request.arch.as_deref(),
                request.version.as_deref(),
                request.suite.as_deref()
            ),
            (name, arch, version, suite),
            "{text}"
        );
        assert_eq!(request.to_string(), text);
    }
    for bad in [
        "", "=1.0", ":amd64", "curl:", "curl=", "curl/", "cu rl", "curl=x1", "curl=1/2",
    ] {
        let error = bad.parse::<Request>().unwrap_err();
        assert!(
            matches!(error, ResolveError::BadRequest { .. }),
            "{bad:?}: {error}"
        );
    }
}

#[test]
fn dependencies_are_followed_with_their_versions() {
    let available = archive(
        "Package: app\nVersion: 1.0\nDepends: libx (>= 2), tool\n\n\
         Package: libx\nVersion: 1.5\n\nPackage: libx\nVersion: 2.1\nPre-Depends: liby\n\n\
         Package: liby\nVersion: 1\n\nPackage: tool\nVersion: 3\nArchitecture: all\n\n\
         Package: unrelated\nVersion: 1\n",
    );
    let resolution = solve(&["app"], &available, &[], &options()).unwrap();
    assert_eq!(
        chosen(&resolution, &available),
        ["app=1.0", "libx=2.1", "liby=1", "tool=3"]
    );
    let app = &resolution.packages[0];
    assert!(app.requested && app.upgrades.is_none());
    assert_eq!(app.pulled_by, ["app"]);
    assert!(resolution.packages[1..]
        .iter()
        .all(|p| !p.requested && p.pulled_by == ["app"]));
}

#[test]
fn the_first_satisfiable_alternative_wins_unless_the_base_has_another() {
    let available = archive(
        "Package: app\nVersion: 1\nDepends: first (>= 5) | second | third\n\n\
         Package: first\nVersion: 4\n\nPackage: second\nVersion: 1\n\nPackage: third\nVersion: 1\n",
    );
    // `first` is too old, so `second`.
    assert_eq!(installs(&["app"], &available, &[]), ["app=1", "second=1"]);
    // The base has `third`: nothing else is needed.
    let installed = base("Package: third\nVersion: 1\n");
    assert_eq!(installs(&["app"], &available, &installed), ["app=1"]);
}

#[test]
fn virtual_packages_through_provides_versioned_and_not() {
    let available = archive(
        "Package: app\nVersion: 1\nDepends: mta\n\n\
         Package: versioned-user\nVersion: 1\nDepends: api (>= 2)\n\n\
         Package: postfix\nVersion: 3\nProvides: mta\n\n\
         Package: api-old\nVersion: 1\nProvides: api\n\n\
         Package: api-new\nVersion: 1\nProvides: api (= 2.5)\n",
    );
    assert_eq!(installs(&["app"], &available, &[]), ["app=1", "postfix=3"]);
    // An unversioned provide cannot satisfy a versioned dependency.
    assert_eq!(
        installs(&["versioned-user"], &available, &[]),
        ["api-new=1", "versioned-user=1"]
    );
    // A request for a virtual name with one provider is that provider.
    assert_eq!(installs(&["mta"], &available, &[]), ["postfix=3"]);
    let error = solve(&["api"], &available, &[], &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "\"api\" is a virtual package provided by api-new, api-old; request one of them"
    );
}

#[test]
fn the_base_satisfies_without_installing_anything() {
    let available = archive(
        "Package: app\nVersion: 1\nDepends: libc6 (>= 2.30)\n\n\
         Package: libc6\nVersion: 2.36-9\n\nPackage: libc6\nVersion: 2.36-9+deb12u4\n",
    );
    let installed = base("Package: libc6\nVersion: 2.36-9\nEssential: yes\n");
    assert_eq!(installs(&["app"], &available, &installed), ["app=1"]);
    // Requested and already installed at the archive's newest: nothing to do.
    let installed = base("Package: libc6\nVersion: 2.36-9+deb12u4\n");
    assert_eq!(
        installs(&["libc6", "app"], &available, &installed),
        ["app=1"]
    );
}

#[test]
fn a_base_package_is_upgraded_when_a_dependency_needs_newer() {
    let available = archive(
        "Package: app\nVersion: 1\nDepends: libz (>= 1.3)\n\n\
         Package: libz\nVersion: 1.3\nDepends: libw (>= 2)\n\n\
         Package: libw\nVersion: 2\n\n\
         Package: libz\nVersion: 1.2\n",
    );
    let installed = base(
        "Package: libz\nVersion: 1.2\nDepends: libw\n\n\
         Package: libw\nVersion: 1\n\n\
         Package: other\nVersion: 1\nDepends: libz (>= 1)\n",
    );
    let resolution = solve(&["app"], &available, &installed, &options()).unwrap();
    assert_eq!(
        chosen(&resolution, &available),
        ["app=1", "libw=2", "libz=1.3"]
    );
    let upgrades: Vec<Option<&str>> = resolution
        .packages
        .iter()
        .map(|p| p.upgrades.as_deref())
        .collect();
    assert_eq!(upgrades, [None, Some("1"), Some("1.2")]);
    assert!(resolution.packages.iter().all(|p| p.pulled_by == ["app"]));
    // Requesting a base package upgrades it to the archive's candidate, as apt-get does.
    let resolution = solve(&["libw"], &available, &installed, &options()).unwrap();
    assert_eq!(chosen(&resolution, &available), ["libw=2"]);
    assert_eq!(resolution.packages[0].upgrades.as_deref(), Some("1"));
    assert!(resolution.packages[0].requested);
}

#[test]
fn base_packages_are_never_downgraded() {
    let available =
        archive("Package: libw\nVersion: 1\n\nPackage: app\nVersion: 1\nDepends: libw (<< 2)\n");
    let installed = base("Package: libw\nVersion: 2\n");
    let error = solve(&["libw=1"], &available, &installed, &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "libw=1: the base has the newer 2; layerize does not downgrade base packages"
    );
    let error = solve(&["app"], &available, &installed, &options()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, ResolveError::Unsatisfiable { .. }),
        "{message}"
    );
    assert!(
        message.contains("app") && message.contains("libw"),
        "{message}"
    );
}

#[test]
fn a_conflict_with_the_base_is_refused_naming_both() {
    let available = archive(
        "Package: a\nVersion: 1.0\nConflicts: b\n\n\
         Package: c\nVersion: 1\nDepends: a\n",
    );
    let installed = base("Package: b\nVersion: 1.0\n");
    let error = solve(&["a"], &available, &installed, &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot install \"a\" 1.0: it conflicts with \"b\" 1.0 of the base (Conflicts: b); layerize does not remove base packages"
    );
    // Through a dependency it cannot do without.
    let error = solve(&["c"], &available, &installed, &options()).unwrap_err();
    assert!(
        matches!(error, ResolveError::ConflictsWithBase { ref package, .. } if package == "a"),
        "{error}"
    );
}

#[test]
fn breaks_either_way_are_refused() {
    let available = archive(
        "Package: new\nVersion: 2\nBreaks: old (<< 3)\n\n\
         Package: victim\nVersion: 1\n",
    );
    let installed =
        base("Package: old\nVersion: 2\n\nPackage: guard\nVersion: 1\nBreaks: victim (<< 5)\n");
    let error = solve(&["new"], &available, &installed, &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot install \"new\" 2: it conflicts with \"old\" 2 of the base (Breaks: old (<< 3)); layerize does not remove base packages"
    );
    let error = solve(&["victim"], &available, &installed, &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot install \"victim\" 1: \"guard\" 1 of the base declares Breaks: victim (<< 5); layerize does not remove base packages"
    );
    // With a newer `old` that the Breaks does not hit, `old` is upgraded instead.
    let mut available = available;
    available.extend(archive("Package: old\nVersion: 3\n"));
    let resolution = solve(&["new"], &available, &installed, &options()).unwrap();
    assert_eq!(chosen(&resolution, &available), ["new=2", "old=3"]);
    assert_eq!(resolution.packages[1].upgrades.as_deref(), Some("2"));
}

#[test]
fn a_package_may_conflict_with_what_it_provides() {
    let available = archive("Package: postfix\nVersion: 3\nProvides: mta\nConflicts: mta\n");
    assert_eq!(installs(&["postfix"], &available, &[]), ["postfix=3"]);
    let installed = base("Package: exim\nVersion: 4\nProvides: mta\n");
    let error = solve(&["postfix"], &available, &installed, &options()).unwrap_err();
    assert!(
        matches!(error, ResolveError::ConflictsWithBase { ref base, .. } if base == "exim"),
        "{error}"
    );
}

#[test]
fn unsatisfiable_dependencies_are_explained() {
    let available =
        archive("Package: app\nVersion: 1\nDepends: lib (>= 9)\n\nPackage: lib\nVersion: 1\n");
    let error = solve(&["app"], &available, &[], &options()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("cannot install \"app\" on this base:\n"),
        "{message}"
    );
    assert!(message.contains("lib (>= 9)"), "{message}");
}

#[test]
fn unknown_packages_versions_suites_and_architectures_are_named() {
    let available = archive(
        "Package: curl\nVersion: 7.88.1-10+deb12u8\n\n\
         Package: curl\nVersion: 8.14.1-2~bpo12+1\nSuite: bookworm-backports\n",
    );
    let message = |names: &[&str]| {
        solve(names, &available, &[], &options())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        message(&["crul"]),
        "no package \"crul\" in the archive (sources: http://archive.test/debian bookworm main, http://archive.test/debian bookworm-backports main); did you mean \"curl\"?"
    );
    assert!(message(&["emacs"]).ends_with("bookworm-backports main)"));
    assert_eq!(
        message(&["curl=9.9"]),
        "curl=9.9: no such version; the archive has 8.14.1-2~bpo12+1, 7.88.1-10+deb12u8"
    );
    assert_eq!(
        message(&["curl/trixie"]),
        "curl/trixie: not in that suite; \"curl\" is in bookworm, bookworm-backports"
    );
    assert_eq!(
        message(&["curl:arm64"]),
        "curl:arm64: not for that architecture; \"curl\" is there for amd64"
    );
}

#[test]
fn candidates_are_the_newest_unless_pinned_by_version_or_suite() {
    let available = archive(
        "Package: curl\nVersion: 7.88.1-10+deb12u8\n\n\
         Package: curl\nVersion: 7.88.1-10+deb12u5\n\n\
         Package: curl\nVersion: 8.14.1-2~bpo12+1\nSuite: bookworm-backports\n",
    );
    assert_eq!(
        installs(&["curl"], &available, &[]),
        ["curl=8.14.1-2~bpo12+1"]
    );
    assert_eq!(
        installs(&["curl/bookworm"], &available, &[]),
        ["curl=7.88.1-10+deb12u8"]
    );
    assert_eq!(
        installs(&["curl=7.88.1-10+deb12u5"], &available, &[]),
        ["curl=7.88.1-10+deb12u5"]
    );
}

#[test]
fn recommends_only_when_asked_and_never_fatal() {
    let available = archive(
        "Package: app\nVersion: 1\nRecommends: helper, broken | fallback\n\n\
         Package: helper\nVersion: 1\n\n\
         Package: broken\nVersion: 1\nDepends: nothing-has-this\n\n\
         Package: fallback\nVersion: 1\n",
    );
    assert_eq!(installs(&["app"], &available, &[]), ["app=1"]);
    let with = Options {
        recommends: true,
        ..options()
    };
    let resolution = solve(&["app"], &available, &[], &with).unwrap();
    assert_eq!(
        chosen(&resolution, &available),
        ["app=1", "fallback=1", "helper=1"]
    );
    assert!(resolution.packages.iter().all(|p| p.pulled_by == ["app"]));
}

#[test]
fn architectures_any_foreign_and_explicit() {
    let available = archive(
        "Package: app\nVersion: 1\nDepends: perl:any, tool\n\n\
         Package: perl\nVersion: 5.36\nArchitecture: i386\nMulti-Arch: allowed\n\n\
         Package: tool\nVersion: 1\nArchitecture: i386\nMulti-Arch: foreign\n\n\
         Package: libc6\nVersion: 2.36\nMulti-Arch: same\n\n\
         Package: libc6\nVersion: 2.36\nArchitecture: i386\nMulti-Arch: same\n\n\
         Package: strict\nVersion: 1\nDepends: perl\n",
    );
    let multiarch = Options {
        foreign_architectures: vec!["i386".into()],
        ..options()
    };
    let resolution = solve(&["app"], &available, &[], &multiarch).unwrap();
    assert_eq!(
        chosen(&resolution, &available),
        ["app=1", "perl:i386=5.36", "tool:i386=1"]
    );
    // A plain dependency is not satisfied by an `allowed` package of another architecture.
    assert!(solve(&["strict"], &available, &[], &multiarch).is_err());
    // `Multi-Arch: same` packages of two architectures side by side.
    let resolution = solve(&["libc6", "libc6:i386"], &available, &[], &multiarch).unwrap();
    assert_eq!(
        chosen(&resolution, &available),
        ["libc6=2.36", "libc6:i386=2.36"]
    );
    // Without i386 enabled, its packages are not candidates.
    assert!(solve(&["app"], &available, &[], &options()).is_err());
}

#[test]
fn pulled_by_names_every_request_that_needs_a_package() {
    let available = archive(
        "Package: a\nVersion: 1\nDepends: shared, only-a\n\n\
         Package: b\nVersion: 1\nDepends: shared\n\n\
         Package: shared\nVersion: 1\n\nPackage: only-a\nVersion: 1\n",
    );
    let resolution = solve(&["b", "a"], &available, &[], &options()).unwrap();
    let pulled: Vec<(&str, Vec<&str>)> = resolution
        .packages
        .iter()
        .map(|p| {
            let names = p.pulled_by.iter().map(String::as_str).collect();
            (available[p.index].name.as_str(), names)
        })
        .collect();
    assert_eq!(
        pulled,
        [
            ("a", vec!["a"]),
            ("b", vec!["b"]),
            ("only-a", vec!["a"]),
            ("shared", vec!["a", "b"]),
        ]
    );
}

#[test]
fn the_same_answer_whatever_the_input_order() {
    let text = "Package: app\nVersion: 1\nDepends: mta | other-mta, libx\n\n\
         Package: exim\nVersion: 4\nProvides: mta\n\n\
         Package: postfix\nVersion: 3\nProvides: mta\n\n\
         Package: other-mta\nVersion: 1\n\n\
         Package: libx\nVersion: 1\n\nPackage: libx\nVersion: 2\n\nPackage: libx\nVersion: 1.5\n";
    let available = archive(text);
    let expected = installs(&["app"], &available, &[]);
    let mut shuffled = available.clone();
    for seed in 1..20u64 {
        // A deterministic shuffle (no rand dependency): rotate and reverse by the seed.
        shuffled.rotate_left((seed as usize) % shuffled.len());
        if seed % 2 == 0 {
            shuffled.reverse();
        }
        assert_eq!(installs(&["app"], &shuffled, &[]), expected, "seed {seed}");
    }
}
