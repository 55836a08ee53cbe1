//! Every refusal of a build file names the file, line and column and says what is wrong there:
//! one test per kind of mistake, each asserting the exact message and position.

mod common;

use common::Fixture;

/// Asserts that each `(yaml, line, column, message)` is refused with exactly that.
fn assert_refused(fixture: &Fixture, cases: &[(&str, usize, usize, &str)]) {
    for (yaml, line, column, message) in cases {
        assert_eq!(
            fixture.error(yaml),
            (*line, *column, (*message).to_owned()),
            "for:\n{yaml}"
        );
    }
}

#[test]
fn bad_yaml_syntax() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: /usr/bin/jq}\n",
                4,
                1,
                "YAML syntax error: while parsing a flow sequence, expected ',' or ']'",
            ),
            (
                "layers:\n  - name: app\n   delete: [/x]\n",
                3,
                4,
                "YAML syntax error: while parsing a block collection, did not find expected '-' indicator",
            ),
        ],
    );
}

#[test]
fn unknown_keys_at_every_level() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - {name: app, delete: [/x]}\nextra: 1\n",
                3,
                1,
                "unknown key \"extra\" in the build file (expected one of: image, apt, layers, config, optimization)",
            ),
            (
                "image:\n  base: debian:bookworm\n  tagret: registry.example.com/app:1\nlayers:\n  - {name: app, delete: [/x]}\n",
                3,
                3,
                "unknown key \"tagret\" in the image section (expected one of: base, target, platform)",
            ),
            (
                "layers:\n  - name: app\n    file: [{src: bin/jq, dest: /usr/bin/jq}]\n",
                3,
                5,
                "unknown key \"file\" in a layer entry (expected one of: name, files, dir, tar, delete, opaque, group, script, apt)",
            ),
            (
                "layers:\n  - name: app\n    files:\n      - src: bin/jq\n        detsination: /usr/bin/jq\n",
                5,
                9,
                "unknown key \"detsination\" in a files entry (expected one of: src, dest, mode, owner, content)",
            ),
            (
                "layers:\n  - {name: web, dir: {src: static, dest: /srv, mode: \"0755\"}}\n",
                2,
                48,
                "unknown key \"mode\" in a dir entry (expected one of: src, dest)",
            ),
            (
                "layers:\n  - {name: v, tar: {src: vendor.tar.gz, strip: 1}}\n",
                2,
                41,
                "unknown key \"strip\" in a tar entry (expected one of: src)",
            ),
            (
                "layers:\n  - name: tools\n    group:\n      - name: jq\n        files: [{src: bin/jq, dest: /usr/bin/jq}]\n        version: 1.7\n",
                6,
                9,
                "unknown key \"version\" in a group member (expected one of: name, files, dir, tar, delete, opaque)",
            ),
            (
                "layers:\n  - {name: app, delete: [/x]}\nconfig:\n  entrypoint: [/app]\n  expose: [80]\n",
                5,
                3,
                "unknown key \"expose\" in the config section (expected one of: env, entrypoint, cmd, workdir, user, labels, ports, annotations)",
            ),
            (
                "layers:\n  - {name: app, delete: [/x]}\noptimization: {max_layer: 10}\n",
                3,
                16,
                "unknown key \"max_layer\" in the optimization section (expected one of: max_layers, parallel)",
            ),
        ],
    );
}

#[test]
fn duplicate_keys() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files:\n      - src: bin/jq\n        dest: /usr/bin/jq\n        dest: /usr/bin/jq2\n",
                6,
                9,
                "duplicate key \"dest\" (first given at line 5, column 9)",
            ),
            (
                "layers: [{name: a, delete: [/x]}]\n\"layers\": [{name: b, delete: [/y]}]\n",
                2,
                1,
                "duplicate key \"layers\" (first given at line 1, column 1)",
            ),
            (
                "layers:\n  - {name: a, delete: [/x]}\nconfig:\n  env: {A: 1, B: 2, A: 3}\n",
                4,
                21,
                "duplicate key \"A\" (first given at line 4, column 9)",
            ),
        ],
    );
}

#[test]
fn duplicate_layer_names_across_layers_and_group_members() {
    let fixture = Fixture::new();
    let unique = "names are unique across the file, group members included";
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - {name: app, delete: [/x]}\n  - {name: app, delete: [/y]}\n",
                3,
                12,
                &format!("duplicate layer name \"app\" (first used at line 2, column 12); {unique}"),
            ),
            (
                "layers:\n  - name: app\n    delete: [/x]\n  - name: tools\n    group:\n      - name: jq\n        delete: [/y]\n      - name: app\n        delete: [/z]\n",
                8,
                15,
                &format!("duplicate layer name \"app\" (first used at line 2, column 11); {unique}"),
            ),
            (
                "layers:\n  - name: tools\n    group:\n      - {name: jq, delete: [/y]}\n      - {name: jq, delete: [/z]}\n",
                5,
                16,
                &format!("duplicate layer name \"jq\" (first used at line 4, column 16); {unique}"),
            ),
        ],
    );
}

#[test]
fn invalid_layer_names() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[(
            "layers:\n  - {name: -app, delete: [/x]}\n",
            2,
            12,
            "invalid layer name \"-app\": a name starts with a letter or digit and holds only letters, digits, '.', '_', '+' and '-'",
        )],
    );
}

#[test]
fn missing_sources_at_their_src_value() {
    let fixture = Fixture::new();
    let dir = fixture.real(".");
    let dir = dir.display();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files:\n      - {src: target/debug/app, dest: /usr/local/bin/app}\n",
                4,
                15,
                &format!("source \"target/debug/app\" does not exist (looked for {dir}/target/debug/app)"),
            ),
            (
                "layers:\n  - name: web\n    dir:\n      src: public\n      dest: /srv\n",
                4,
                12,
                &format!("source \"public\" does not exist (looked for {dir}/public)"),
            ),
            (
                "layers:\n  - {name: v, tar: vendor.tar.zst}\n",
                2,
                20,
                &format!("source \"vendor.tar.zst\" does not exist (looked for {dir}/vendor.tar.zst)"),
            ),
            (
                "layers:\n  - name: web\n    dir: {src: bin/jq, dest: /srv}\n",
                3,
                16,
                &format!("source \"bin/jq\" is not a directory ({dir}/bin/jq)"),
            ),
            (
                "layers:\n  - name: app\n    files: [{src: static, dest: /srv}]\n",
                3,
                19,
                &format!("source \"static\" is not a regular file ({dir}/static)"),
            ),
        ],
    );
}

#[test]
fn sources_escaping_the_build_files_directory() {
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), fixture.path("secret-link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), fixture.path("outside-dir")).unwrap();
    let dir = fixture.real(".");
    let outside_real = std::fs::canonicalize(outside.path()).unwrap();
    let context = format!(
        "outside the build file's directory {}: sources must be inside it, as in a Docker build context",
        dir.display()
    );
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files: [{src: ../secret, dest: /secret}]\n",
                3,
                19,
                &format!("source \"../secret\" is {context}"),
            ),
            (
                "layers:\n  - name: app\n    files: [{src: bin/../../secret, dest: /secret}]\n",
                3,
                19,
                &format!("source \"bin/../../secret\" is {context}"),
            ),
            (
                "layers:\n  - name: app\n    files: [{src: /etc/hostname, dest: /etc/hostname}]\n",
                3,
                19,
                &format!("source \"/etc/hostname\" is {context}"),
            ),
            (
                "layers:\n  - name: app\n    files: [{src: secret-link, dest: /secret}]\n",
                3,
                19,
                &format!(
                    "source \"secret-link\" leads through a symlink to {}/secret, {context}",
                    outside_real.display()
                ),
            ),
            (
                "layers:\n  - name: web\n    dir: {src: outside-dir, dest: /srv}\n",
                3,
                16,
                &format!(
                    "source \"outside-dir\" leads through a symlink to {}, {context}",
                    outside_real.display()
                ),
            ),
        ],
    );
}

#[test]
fn destinations_escaping_the_root_or_relative() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: /../etc/passwd}]\n",
                3,
                33,
                "destination \"/../etc/passwd\" climbs above the image root",
            ),
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: usr/bin/jq}]\n",
                3,
                33,
                "destination \"usr/bin/jq\" is relative; paths in the image are absolute (start with /)",
            ),
            (
                "layers:\n  - name: web\n    dir: {src: static, dest: /srv/../../..}\n",
                3,
                30,
                "destination \"/srv/../../..\" climbs above the image root",
            ),
            (
                "layers:\n  - name: gone\n    delete: [/etc/motd, etc/issue]\n",
                3,
                25,
                "destination \"etc/issue\" is relative; paths in the image are absolute (start with /)",
            ),
            (
                "layers:\n  - name: gone\n    delete: /\n",
                3,
                13,
                "\"/\" is the image root, which cannot be deleted",
            ),
            (
                "layers:\n  - name: app\n    files: [{content: x, dest: /tmp/..}]\n",
                3,
                32,
                "\"/tmp/..\" is the image root, which cannot be a file",
            ),
        ],
    );
}

#[test]
fn wrong_types() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers: {name: app}\n",
                1,
                9,
                "\"layers\" must be a list of layer entries, found a mapping",
            ),
            (
                "layers:\n  - app\n",
                2,
                5,
                "a layer entry must be a mapping, found a string",
            ),
            (
                "layers:\n  - name: app\n    files: bin/jq\n",
                3,
                12,
                "\"files\" must be a list of files entries, found a string",
            ),
            (
                "layers:\n  - name: app\n    files: [{src: [bin/jq], dest: /jq}]\n",
                3,
                19,
                "\"src\" must be a string, found a list",
            ),
            (
                "layers:\n  - name: app\n    files:\n      - src: bin/jq\n        dest:\n",
                5,
                13,
                "\"dest\" must be a string, found nothing (null)",
            ),
            (
                "layers:\n  - {name: 12, delete: [/x]}\nconfig:\n  entrypoint: /app\n",
                4,
                15,
                "\"entrypoint\" must be a list of strings, found a string",
            ),
            (
                "layers:\n  - {name: a, delete: [/x]}\nconfig:\n  env: [A=1]\n",
                4,
                8,
                "\"env\" must be a mapping, found a list",
            ),
            (
                "layers:\n  - {name: a, delete: [/x]}\noptimization: {max_layers: lots}\n",
                3,
                28,
                "\"max_layers\" must be a whole number, found a string",
            ),
            (
                "layers:\n  - {name: a, delete: [/x]}\noptimization: {parallel: \"4\"}\n",
                3,
                26,
                "parallel must be true, false or a number of layers built at once (at least 1), found a string",
            ),
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: /jq, mode: [7]}]\n",
                3,
                44,
                "\"mode\" must be an octal mode like \"0755\", found a list",
            ),
            ("- a\n", 1, 1, "the build file must be a mapping, found a list"),
        ],
    );
}

#[test]
fn two_kinds_or_none() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: /usr/bin/jq}]\n    dir: {src: static, dest: /srv}\n",
                4,
                5,
                "a layer entry \"app\" has two kinds, \"files\" and \"dir\"; it takes exactly one (put the other in an entry of its own, or both in a group)",
            ),
            (
                "layers:\n  - name: app\n",
                2,
                5,
                "a layer entry \"app\" has no kind: give one of files, dir, tar, delete, opaque, group, script, apt",
            ),
            (
                "layers:\n  - name: tools\n    group:\n      - {name: jq, tar: vendor.tar.gz, delete: [/x]}\n",
                4,
                40,
                "a group member \"jq\" has two kinds, \"tar\" and \"delete\"; it takes exactly one (put the other in an entry of its own)",
            ),
            (
                "layers:\n  - name: tools\n    group:\n      - {name: jq}\n",
                4,
                9,
                "a group member \"jq\" has no kind: give one of files, dir, tar, delete, opaque",
            ),
            (
                "layers:\n  - name: tools\n    group:\n      - {name: inner, group: []}\n",
                4,
                23,
                "a group member cannot be a group itself; list its packages in the outer group",
            ),
        ],
    );
}

#[test]
fn bad_apt_entries() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: tools\n    group:\n      - {name: curl, apt: [curl]}\n",
                4,
                22,
                "an apt entry cannot be a group member: its packages become layers of their own (or one layer with `apt: {group: [...]}`), so it is a layer entry of its own",
            ),
            (
                "layers:\n  - name: tools\n    apt: []\n",
                3,
                10,
                "\"apt\" is an empty list; give at least one package",
            ),
            (
                "layers:\n  - name: tools\n    apt: curl\n",
                3,
                10,
                "\"apt\" must be a list of packages ([curl, git]) or a mapping ({group: [...]}), found a string",
            ),
            (
                "layers:\n  - name: tools\n    apt: [curl, Git]\n",
                3,
                17,
                "invalid apt package \"Git\": a Debian package name is at least two characters of a-z, 0-9, '+', '-' and '.', starting with a letter or digit",
            ),
            (
                "layers:\n  - name: tools\n    apt: [\"curl=\"]\n",
                3,
                11,
                "invalid apt package \"curl=\": a version after '=' starts with a digit and holds only letters, digits, '.', '+', '~', ':' and '-'",
            ),
            (
                "layers:\n  - name: tools\n    apt: [curl/]\n",
                3,
                11,
                "invalid apt package \"curl/\": a suite after '/' is letters, digits, '.', '_', '+' and '-' (bookworm-backports, stable)",
            ),
            (
                "layers:\n  - name: tools\n    apt: [\"libc6:\"]\n",
                3,
                11,
                "invalid apt package \"libc6:\": an architecture after ':' is a-z, 0-9 and '-' (amd64, arm64, i386, any)",
            ),
            (
                "layers:\n  - name: tools\n    apt: [~]\n",
                3,
                11,
                "an item of \"apt\" must be a string, found nothing (null)",
            ),
            (
                "layers:\n  - name: tools\n    apt:\n      - curl\n      - git\n      - curl=7.88.1-10\n",
                6,
                9,
                "apt package \"curl\" is listed twice in one entry (first at line 4, column 9)",
            ),
            (
                "layers:\n  - name: tools\n    apt: {group: true}\n",
                3,
                10,
                "an apt entry names no packages: give `packages: [...]`, or `group: [...]` for one layer",
            ),
            (
                "layers:\n  - name: tools\n    apt: {packages: [curl], group: [git]}\n",
                3,
                29,
                "the apt packages are given twice, as \"group\" and as \"packages\": write `group: [...]` alone, or `packages: [...]` with `group: true`",
            ),
            (
                "layers:\n  - name: tools\n    apt: {packages: [curl], group: yes}\n",
                3,
                36,
                "\"group\" must be true or false, found a string",
            ),
            (
                "layers:\n  - name: tools\n    apt: {packages: [curl], group: {a: b}}\n",
                3,
                36,
                "\"group\" must be a list of packages, or true or false beside \"packages\", found a mapping",
            ),
            (
                "layers:\n  - name: tools\n    apt: {group: []}\n",
                3,
                18,
                "\"group\" is an empty list; give at least one package",
            ),
            (
                "layers:\n  - name: tools\n    apt: {packages: [curl], recommends: true}\n",
                3,
                29,
                "unknown key \"recommends\" in an apt entry (expected one of: packages, group)",
            ),
            (
                "layers:\n  - name: tools\n    apt: [curl]\n    files: [{dest: /x, content: x}]\n",
                4,
                5,
                "a layer entry \"tools\" has two kinds, \"apt\" and \"files\"; it takes exactly one (put the other in an entry of its own, or both in a group)",
            ),
        ],
    );
}

#[test]
fn bad_apt_sections() {
    let fixture = Fixture::new();
    let layers = "layers:\n  - {name: app, delete: [/x]}\n";
    let cases: Vec<(String, usize, usize, &str)> = vec![
        (
            format!("apt: {{scripts: never}}\n{layers}"),
            1,
            16,
            "scripts: run (the maintainer scripts, in the sandbox, as one configure layer) or skip (left out), found \"never\"",
        ),
        (
            format!("apt: {{recommends: yes}}\n{layers}"),
            1,
            19,
            "\"recommends\" must be true or false, found a string",
        ),
        (
            format!("apt: {{replace_sources: 1}}\n{layers}"),
            1,
            24,
            "\"replace_sources\" must be true or false, found a number",
        ),
        (
            format!("apt: {{script: skip}}\n{layers}"),
            1,
            7,
            "unknown key \"script\" in the apt section (expected one of: packages, group, sources, keys, replace_sources, scripts, recommends)",
        ),
        (
            format!("apt: curl\n{layers}"),
            1,
            6,
            "\"apt\" must be a list of packages, or a mapping of apt options, found a string",
        ),
        (
            format!("apt: []\n{layers}"),
            1,
            6,
            "\"apt\" is an empty list; give at least one package",
        ),
        (
            format!("apt: {{group: false}}\n{layers}"),
            1,
            6,
            "the apt section names no packages: give `packages: [...]`, or `group: [...]` for one layer",
        ),
        (
            format!("apt: {{sources: \"deb http://x bookworm main\"}}\n{layers}"),
            1,
            16,
            "\"sources\" must be a list of one-line sources, found a string",
        ),
        (
            format!("apt:\n  sources:\n    - deb http://deb.debian.org/debian bookworm main\n    - deb-src http://deb.debian.org/debian bookworm main\n{layers}"),
            4,
            7,
            "invalid apt source \"deb-src http://deb.debian.org/debian bookworm main\": deb-src is for source packages, which layerize does not install; give a deb line",
        ),
        (
            format!("apt: {{sources: [\"deb http://x bookworm\"]}}\n{layers}"),
            1,
            17,
            "invalid apt source \"deb http://x bookworm\": at least one component follows the suite, e.g. main",
        ),
        (
            format!("apt: {{keys: [missing.asc]}}\n{layers}"),
            1,
            14,
            "source \"missing.asc\" does not exist (looked for RESOLVED/missing.asc)",
        ),
        (
            format!("apt: {{keys: [static]}}\n{layers}"),
            1,
            14,
            "source \"static\" is not a regular file (RESOLVED/static)",
        ),
        (
            format!("apt: {{keys: [../repo.asc]}}\n{layers}"),
            1,
            14,
            "source \"../repo.asc\" is outside the build file's directory RESOLVED: sources must be inside it, as in a Docker build context",
        ),
        (
            format!("apt: [curl]\nlayers:\n  - {{name: apt, delete: [/x]}}\n"),
            3,
            12,
            "duplicate layer name \"apt\" (first used at line 1, column 1); names are unique across the file, group members included",
        ),
        (
            "image: {base: debian:bookworm}\napt: {scripts: skip}\n".to_owned(),
            1,
            1,
            "the build file needs \"layers\"",
        ),
        (
            format!("apt: {{recommends: true}}\nlayers: []\n"),
            2,
            9,
            "the layers list is empty; a build file needs at least one layer",
        ),
    ];
    let resolved = fixture.real(".");
    let resolved = resolved.to_str().unwrap();
    for (yaml, line, column, message) in &cases {
        let message = message.replace("RESOLVED", resolved);
        assert_eq!(
            fixture.error(yaml),
            (*line, *column, message),
            "for:\n{yaml}"
        );
    }
}

#[test]
fn bad_script_steps() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: setup\n    script: ./setup.sh\n",
                3,
                13,
                "\"script\" must be a mapping, found a string",
            ),
            (
                "layers:\n  - name: setup\n    script: {shell: [/bin/sh, -c]}\n",
                3,
                13,
                "a script needs \"run\"",
            ),
            (
                "layers:\n  - name: setup\n    script: {run: []}\n",
                3,
                19,
                "\"run\" is an empty list; give at least one command",
            ),
            (
                "layers:\n  - name: result\n    script: {run: [x], needs: [hello]}\n  - name: hello\n    script: {run: [y]}\n",
                3,
                32,
                "needs \"hello\", which is not a layer written before this one; a step runs on top of earlier layers only",
            ),
            (
                "layers:\n  - name: self\n    script: {run: [x], needs: [self]}\n",
                3,
                32,
                "needs \"self\", which is not a layer written before this one; a step runs on top of earlier layers only",
            ),
            (
                "layers:\n  - name: s\n    script: {run: [x], network: yes}\n",
                3,
                33,
                "\"network\" must be true or false, found a string",
            ),
            (
                "layers:\n  - name: s\n    script: {run: [x], pin: v1}\n",
                3,
                29,
                "\"pin\": pin replaces the date in the key of a step with network: true; without the network the key has no date",
            ),
            (
                "layers:\n  - name: s\n    script: {run: [x], shell: sh -c}\n",
                3,
                31,
                "\"shell\": the shell must start with an absolute path in the image, e.g. [/bin/bash, -e, -c]",
            ),
            (
                "layers:\n  - name: s\n    script: {run: [x], workdir: opt}\n",
                3,
                33,
                "destination \"opt\" is relative; paths in the image are absolute (start with /)",
            ),
            (
                "layers:\n  - name: s\n    script: {run: [x], timeout: 5}\n",
                3,
                24,
                "unknown key \"timeout\" in a script (expected one of: run, shell, needs, env, workdir, user, network, pin)",
            ),
            (
                "layers:\n  - name: tools\n    group:\n      - {name: s, script: {run: [x]}}\n",
                4,
                19,
                "a script cannot be a group member: its layer is what it changes, so it is a layer entry of its own",
            ),
        ],
    );
}

#[test]
fn empty_or_missing_layers() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers: []\n",
                1,
                9,
                "the layers list is empty; a build file needs at least one layer",
            ),
            (
                "image: {base: debian:bookworm}\n",
                1,
                1,
                "the build file needs \"layers\"",
            ),
            (
                "# nothing yet\n",
                1,
                1,
                "the build file holds no YAML document; it needs at least a layers list",
            ),
            (
                "layers:\n  - name: app\n    files: []\n",
                3,
                12,
                "\"files\" is an empty list; give at least one file",
            ),
            (
                "layers:\n  - name: tools\n    group: []\n",
                3,
                12,
                "\"group\" is an empty list; give at least one package",
            ),
        ],
    );
}

#[test]
fn max_layers_out_of_range() {
    let fixture = Fixture::new();
    let range = "is out of range: at least 1 and at most 125 (Docker's limit on the layers of one image, base included)";
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - {name: a, delete: [/x]}\noptimization: {max_layers: 126}\n",
                3,
                28,
                &format!("max_layers 126 {range}"),
            ),
            (
                "layers:\n  - {name: a, delete: [/x]}\noptimization:\n  max_layers: 0\n",
                4,
                15,
                &format!("max_layers 0 {range}"),
            ),
            (
                "layers:\n  - {name: a, delete: [/x]}\noptimization:\n  max_layers: -3\n",
                4,
                15,
                &format!("max_layers -3 {range}"),
            ),
        ],
    );
    for ok in [1, 125] {
        let yaml =
            format!("layers:\n  - {{name: a, delete: [/x]}}\noptimization: {{max_layers: {ok}}}\n");
        let file = fixture.load(&yaml).unwrap();
        assert_eq!(file.optimization().max_layers.as_ref().unwrap().value, ok);
    }
}

#[test]
fn files_entries_need_exactly_one_of_src_and_content() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files:\n      - {src: bin/jq, content: x, dest: /jq}\n",
                4,
                23,
                "a files entry has both \"src\" and \"content\"; give one: a host file or the file's text",
            ),
            (
                "layers:\n  - name: app\n    files:\n      - {dest: /jq, mode: \"0755\"}\n",
                4,
                9,
                "a files entry needs \"src\" (a host file) or \"content\" (the file's text)",
            ),
            (
                "layers:\n  - name: app\n    files:\n      - {src: bin/jq}\n",
                4,
                9,
                "a files entry needs \"dest\"",
            ),
        ],
    );
}

#[test]
fn ambiguous_modes_and_bad_owners() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: /jq, mode: 0755}]\n",
                3,
                44,
                "mode 0755: a plain number is ambiguous (YAML 1.1 reads 0755 as octal, YAML 1.2 as decimal 755, and chmod reads 755 as octal); quote it, \"0755\", or write 0o755",
            ),
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: /jq, mode: \"0855\"}]\n",
                3,
                44,
                "mode 0855: not an octal number like \"0755\"",
            ),
            (
                "layers:\n  - name: app\n    files: [{src: bin/jq, dest: /jq, owner: app}]\n",
                3,
                45,
                "owner \"app\" must be UID:GID with numeric ids, e.g. \"1000:1000\"",
            ),
        ],
    );
}

#[test]
fn bad_image_and_config_values_at_their_line() {
    let fixture = Fixture::new();
    let layers = "layers:\n  - {name: a, delete: [/x]}\n";
    assert_refused(
        &fixture,
        &[
            (
                &format!("image:\n  platform: linux\n{layers}"),
                2,
                13,
                "platform: invalid platform \"linux\": expected OS/ARCHITECTURE[/VARIANT], e.g. linux/amd64 or linux/arm64/v8",
            ),
            (
                &format!("image:\n  base: Debian:Bookworm\n{layers}"),
                2,
                9,
                "base: invalid reference \"Debian:Bookworm\": repository names must be lowercase",
            ),
            (
                &format!("{layers}config:\n  ports: [8080, \"53/http\"]\n"),
                4,
                17,
                "ports: exposed port \"53/http\" must be PORT[/tcp|udp|sctp] with PORT in 1-65535",
            ),
            (
                &format!("{layers}config:\n  workdir: srv\n"),
                4,
                12,
                "workdir: working directory \"srv\" must be an absolute path",
            ),
            (
                &format!("{layers}config:\n  env:\n    \"A=B\": x\n"),
                5,
                12,
                "env: environment variable name \"A=B\" must be non-empty and contain no '='",
            ),
        ],
    );
}

#[test]
fn aliases_and_tags_are_refused() {
    let fixture = Fixture::new();
    assert_refused(
        &fixture,
        &[
            (
                "layers:\n  - {name: a, delete: &paths [/x]}\n  - {name: b, delete: *paths}\n",
                3,
                23,
                "YAML aliases (*name) are not supported in a build file: write the value out",
            ),
            (
                "layers:\n  - {name: a, delete: [!!str /x]}\n",
                2,
                24,
                "YAML tags (!name, !!type) are not supported in a build file: quote a value to make it a string",
            ),
        ],
    );
}

#[test]
fn an_unreadable_build_file_is_named() {
    let fixture = Fixture::new();
    let missing = fixture.path("nope.yaml");
    let error = layerize_buildfile::BuildFile::load(&missing).unwrap_err();
    assert!(error.position().is_none());
    assert_eq!(
        error.to_string(),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}
