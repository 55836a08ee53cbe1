use super::*;

#[test]
fn globs_match_as_fnmatch_without_flags() {
    let cases: &[(&str, &str, bool)] = &[
        ("/usr/share/doc/*", "/usr/share/doc/curl/README.gz", true),
        ("/usr/share/doc/*", "/usr/share/doc", false),
        ("/usr/*/READ*", "/usr/share/doc/package/README", true),
        ("/usr/share/man/*", "/usr/share/man/man1/ls.1.gz", true),
        (
            "/usr/share/doc/*/copyright",
            "/usr/share/doc/curl/copyright",
            true,
        ),
        (
            "/usr/share/doc/*/copyright",
            "/usr/share/doc/curl/copyright.gz",
            false,
        ),
        ("/a?c", "/abc", true),
        ("/a?c", "/a/c", true),
        ("/a?c", "/ac", false),
        ("/x[0-9]", "/x7", true),
        ("/x[0-9]", "/xa", false),
        ("/x[!0-9]", "/xa", true),
        ("/x[^0-9]", "/x1", false),
        ("/x[]a]", "/x]", true),
        ("/x[a-]", "/x-", true),
        ("/x[", "/x[", true),
        ("/x\\*", "/x*", true),
        ("/x\\*", "/xy", false),
        ("*", "/anything/at/all", true),
        ("/usr/share/locale/*", "/usr/share/locale-langpack/x", false),
        ("*.mo", "/usr/share/locale/de/LC_MESSAGES/a.mo", true),
        ("/a*b*c", "/aXXbYYbZZc", true),
        ("/a*b*c", "/aXXbYYbZZ", false),
    ];
    for &(pattern, text, expected) in cases {
        assert_eq!(
            glob_matches(pattern.as_bytes(), text.as_bytes()),
            expected,
            "{pattern:?} against {text:?}"
        );
    }
}

/// debuerreotype's slim images: docs, man pages and locales out, copyright files kept.
fn slim() -> PathFilters {
    PathFilters::from_config(["# a comment\npath-exclude /usr/share/doc/*\n\
         # we need to keep copyright files for legal reasons\n\
         path-include /usr/share/doc/*/copyright\n\
         path-exclude=/usr/share/man/*\n\
         path-exclude \"/usr/share/locale/*\"\n\
         force-unsafe-io\n"])
}

#[test]
fn the_last_matching_rule_decides_and_directories_under_an_include_stay() {
    let filters = slim();
    assert!(!filters.is_empty());
    assert!(filters.skips("/usr/share/doc/curl/README.gz", false));
    assert!(!filters.skips("/usr/share/doc/curl/copyright", false));
    assert!(filters.skips("/usr/share/man/man1/curl.1.gz", false));
    assert!(filters.skips("/usr/share/locale/de/LC_MESSAGES/x.mo", false));
    assert!(!filters.skips("/usr/bin/curl", false));
    // The directory that holds a copyright file stays, as does a symlink there (a doc
    // directory linked to another package's); one under the man pages goes.
    assert!(!filters.skips("/usr/share/doc/curl", true));
    assert!(!filters.skips("/usr/share/doc/libcurl4", true));
    assert!(filters.skips("/usr/share/man/man1", true));
    // A file there is not kept for that reason.
    assert!(filters.skips("/usr/share/doc/curl/changelog.gz", false));
}

#[test]
fn rules_come_in_dpkg_order_and_other_options_are_ignored() {
    // The directory's files first (by name), then dpkg.cfg: here dpkg.cfg's include is last.
    let filters = PathFilters::from_config([
        "path-exclude /opt/*\n",
        "no-debsig\nlog /var/log/dpkg.log\n",
        "path-include /opt/keep\n",
    ]);
    assert_eq!(filters.key_lines(), ["exclude /opt/*", "include /opt/keep"]);
    assert!(!filters.skips("/opt/keep", false));
    assert!(filters.skips("/opt/other", false));
    let reversed = PathFilters::from_config(["path-include /opt/keep\n", "path-exclude /opt/*\n"]);
    assert!(reversed.skips("/opt/keep", false));
    // An unbalanced quote or no value: dpkg refuses the line; layerize takes nothing from it.
    let broken = PathFilters::from_config(["path-exclude \"/opt/*\npath-exclude\n"]);
    assert!(broken.is_empty());
    assert!(!broken.skips("/opt/x", false));
}

#[test]
fn only_names_dpkg_reads_are_configuration_files() {
    for name in ["docker", "excludes", "01_nodoc", "a-b"] {
        assert!(is_config_name(name), "{name}");
    }
    for name in [".hidden", "docker.dpkg-old", "excludes~", "x.cfg", ""] {
        assert!(!is_config_name(name), "{name}");
    }
}
