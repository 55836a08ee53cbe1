//! A build file of the documented shape loads into what the build needs: layer entries with
//! their packages and the builder's inputs (sources resolved against the build file's
//! directory, host modes normalised), config edits, annotations, image and optimization.

mod common;

use std::num::NonZeroUsize;

use common::Fixture;
use layerize_builder::build::apt::AptSpec;
use layerize_builder::layer::filemap::{EntryMeta, FileSource, HostModes};
use layerize_buildfile::{
    AptOptions, AptRequest, AptScripts, ConfigEdit, Input, Kind, Parallel, Position,
};
use layerize_manifest::Platform;
use layerize_registry::reference::ImageRef;

/// The shape of docs/buildfile.md, as users write it.
const SHAPE: &str = r#"image: {base: debian:bookworm, target: registry.example.com/team/app:1.4, platform: linux/amd64}
layers:
  - name: app
    files:
      - {src: target/release/app, dest: /usr/local/bin/app, mode: "0755", owner: "1000:1000"}
      - {dest: /etc/app/version, content: "1.4\n"}
  - name: static
    dir: {src: static, dest: /srv/www}
  - name: vendor
    tar: vendor.tar.gz            # or {src: vendor.tar.gz}
  - name: no-motd
    delete: [/etc/motd]
  - name: clean-cache
    opaque: [/var/cache/foo]
  - name: tools                   # several packages as one layer (the seed's apt_batch)
    group:
      - {name: jq, files: [{src: bin/jq, dest: /usr/bin/jq}]}
      - {name: yq, dir: {src: yq, dest: /opt/yq}}
config:
  env: {APP_MODE: prod}          # ordered map
  entrypoint: [/usr/local/bin/app]
  cmd: [--serve]
  workdir: /srv
  user: "1000:1000"
  labels: {org.opencontainers.image.source: https://example.com}
  ports: ["8080/tcp", 9090]
  annotations: {org.opencontainers.image.version: "1.4"}
optimization: {max_layers: 100, parallel: 4}   # parallel: true|false|N
"#;

fn at(line: usize, column: usize) -> Position {
    Position { line, column }
}

#[test]
fn the_documented_shape_loads_into_layers_inputs_and_edits() {
    let fixture = Fixture::new();
    let file = fixture.load(SHAPE).unwrap();
    assert_eq!(file.dir(), fixture.real("."));

    let image = file.image();
    assert_eq!(
        image.base.as_ref().unwrap().value,
        "debian:bookworm".parse::<ImageRef>().unwrap()
    );
    assert_eq!(
        image.target.as_ref().unwrap().value,
        "registry.example.com/team/app:1.4"
            .parse::<ImageRef>()
            .unwrap()
    );
    assert_eq!(
        image.platform.as_ref().unwrap().value,
        Platform::parse("linux/amd64").unwrap()
    );
    assert_eq!(image.base.as_ref().unwrap().at, at(1, 15));

    let names: Vec<&str> = file.layers().iter().map(|entry| entry.name()).collect();
    assert_eq!(
        names,
        ["app", "static", "vendor", "no-motd", "clean-cache", "tools"]
    );
    let members = |index: usize| -> Vec<&str> {
        file.layers()[index]
            .members()
            .iter()
            .map(|package| package.name.as_str())
            .collect()
    };
    assert_eq!(members(0), ["app"]);
    assert_eq!(members(5), ["jq", "yq"]);
    assert!(file.layers()[5].is_group());
    assert!(!file.layers()[0].is_group());
    assert_eq!(file.layers()[1].at, at(7, 5));

    let app = &file.layers()[0].members()[0];
    assert_eq!(app.kind, Kind::Files);
    assert_eq!(
        app.inputs(),
        [
            Input::File {
                source: FileSource::Host(fixture.real("target/release/app")),
                dest: "/usr/local/bin/app".into(),
                meta: EntryMeta {
                    mode: Some(0o755),
                    uid: 1000,
                    gid: 1000,
                    ..EntryMeta::default()
                },
                modes: HostModes::Normalise,
            },
            Input::File {
                source: FileSource::Inline(b"1.4\n".to_vec()),
                dest: "/etc/app/version".into(),
                meta: EntryMeta::default(),
                modes: HostModes::Normalise,
            },
        ]
    );
    assert_eq!(app.input_positions, [at(5, 9), at(6, 9)]);

    let only_input = |index: usize| file.layers()[index].members()[0].inputs().to_vec();
    assert_eq!(
        only_input(1),
        [Input::Dir {
            source: fixture.real("static"),
            dest: "/srv/www".into(),
            modes: HostModes::Normalise,
        }]
    );
    assert_eq!(only_input(2), [Input::Tar(fixture.real("vendor.tar.gz"))]);
    assert_eq!(only_input(3), [Input::Delete("/etc/motd".into())]);
    assert_eq!(only_input(4), [Input::Opaque("/var/cache/foo".into())]);
    let tools = file.layers()[5].members();
    assert_eq!(tools[0].kind, Kind::Files);
    assert_eq!(
        tools[0].inputs(),
        [Input::File {
            source: FileSource::Host(fixture.real("bin/jq")),
            dest: "/usr/bin/jq".into(),
            meta: EntryMeta::default(),
            modes: HostModes::Normalise,
        }]
    );
    assert_eq!(tools[1].kind, Kind::Dir);
    assert_eq!(tools[1].at, at(18, 9));

    assert_eq!(
        file.config_edits(),
        [
            ConfigEdit::Env {
                key: "APP_MODE".into(),
                value: "prod".into()
            },
            ConfigEdit::Entrypoint(vec!["/usr/local/bin/app".into()]),
            ConfigEdit::Cmd(vec!["--serve".into()]),
            ConfigEdit::WorkingDir("/srv".into()),
            ConfigEdit::User("1000:1000".into()),
            ConfigEdit::Label {
                key: "org.opencontainers.image.source".into(),
                value: "https://example.com".into()
            },
            ConfigEdit::ExposedPort("8080/tcp".into()),
            ConfigEdit::ExposedPort("9090".into()),
        ]
    );
    assert_eq!(
        file.annotations(),
        [(
            "org.opencontainers.image.version".to_owned(),
            "1.4".to_owned()
        )]
    );
    let optimization = file.optimization();
    assert_eq!(optimization.max_layers.as_ref().unwrap().value, 100);
    assert_eq!(optimization.max_layers.as_ref().unwrap().at, at(28, 28));
    assert_eq!(
        optimization.parallel,
        Parallel::Layers(NonZeroUsize::new(4).unwrap())
    );
    assert_eq!(
        file.locate(at(28, 28)),
        format!("{}:28:28", file.path().display())
    );
}

#[test]
fn alternative_spellings_mean_the_same() {
    let fixture = Fixture::new();
    let file = fixture
        .load(
            "layers:\n  - name: vendor\n    tar: {src: ./vendor.tar.gz}\n  - name: gone\n    delete: /etc/motd\n  - name: app\n    files:\n      - {src: bin/jq, dest: /jq, mode: 0o4755, owner: 0:0}\n      - {src: bin/jq, dest: /jq2, mode: \"644\"}\n",
        )
        .unwrap();
    let inputs: Vec<&Input> = file
        .layers()
        .iter()
        .flat_map(|entry| entry.members()[0].inputs())
        .collect();
    assert_eq!(*inputs[0], Input::Tar(fixture.real("vendor.tar.gz")));
    assert_eq!(*inputs[1], Input::Delete("/etc/motd".into()));
    let modes: Vec<Option<u32>> = inputs[2..]
        .iter()
        .map(|input| match input {
            Input::File { meta, .. } => meta.mode,
            other => panic!("not a file: {other:?}"),
        })
        .collect();
    assert_eq!(modes, [Some(0o4755), Some(0o644)]);
}

#[test]
fn sections_but_layers_are_optional_with_defaults() {
    let fixture = Fixture::new();
    let file = fixture
        .load("layers:\n  - {name: app, delete: [/x]}\n")
        .unwrap();
    assert!(file.image().base.is_none() && file.image().target.is_none());
    assert!(file.config_edits().is_empty() && file.annotations().is_empty());
    assert!(file.optimization().max_layers.is_none());
    assert_eq!(file.optimization().parallel, Parallel::Auto);
    for (text, parallel) in [
        ("true", Parallel::Auto),
        ("false", Parallel::Off),
        ("1", Parallel::Layers(NonZeroUsize::MIN)),
    ] {
        let yaml =
            format!("layers:\n  - {{name: a, delete: [/x]}}\noptimization: {{parallel: {text}}}\n");
        assert_eq!(
            fixture.load(&yaml).unwrap().optimization().parallel,
            parallel
        );
    }
    let cores = NonZeroUsize::new(8).unwrap();
    assert_eq!(Parallel::Auto.layers_at_once(cores), cores);
    assert_eq!(Parallel::Off.layers_at_once(cores), NonZeroUsize::MIN);
}

#[test]
fn relative_oci_layouts_resolve_against_the_build_files_directory() {
    let fixture = Fixture::new();
    let file = fixture
        .load("image: {base: \"oci:base:v1\", target: \"oci:/abs/out\"}\nlayers:\n  - {name: a, delete: [/x]}\n")
        .unwrap();
    assert_eq!(
        file.image().base.as_ref().unwrap().value,
        ImageRef::Layout {
            path: fixture.real(".").join("base"),
            tag: Some("v1".into())
        }
    );
    assert_eq!(
        file.image().target.as_ref().unwrap().value,
        ImageRef::Layout {
            path: "/abs/out".into(),
            tag: None
        }
    );
}

#[test]
fn sources_resolve_against_the_build_files_directory_not_the_working_directory() {
    let fixture = Fixture::new();
    std::fs::create_dir(fixture.path("sub")).unwrap();
    std::fs::write(fixture.path("sub/local"), "local").unwrap();
    let path = fixture.path("sub/layerize.yaml");
    std::fs::write(
        &path,
        "layers:\n  - name: a\n    files:\n      - {src: local, dest: /local}\n      - {src: ../bin/jq, dest: /jq}\n",
    )
    .unwrap();
    // The file's directory is sub/: `../bin/jq` leaves it.
    let error = layerize_buildfile::BuildFile::load(&path).unwrap_err();
    let (line, column, message) = common::located(&path, &error);
    assert_eq!((line, column), (5, 15));
    assert!(
        message.contains("is outside the build file's directory"),
        "{message}"
    );

    std::fs::write(
        &path,
        "layers:\n  - name: a\n    files: [{src: local, dest: /local}]\n",
    )
    .unwrap();
    let file = layerize_buildfile::BuildFile::load(&path).unwrap();
    assert!(matches!(
        &file.layers()[0].members()[0].inputs()[0],
        Input::File { source: FileSource::Host(host), .. } if *host == fixture.real("sub/local")
    ));
}

/// The script layers of issue 8, exactly as the issue writes them, plus every optional key.
const SCRIPTS: &str = r#"layers:
  - name: hello
    script:
      run:                       # shell commands, run with /bin/sh -e (or `shell:`)
        - mkdir -p /opt/a
        - printf '#!/bin/sh\necho hi\n' > /opt/a/hello && chmod 755 /opt/a/hello
  - name: result
    script:
      run: ["/opt/a/hello > /opt/b/result"]
      needs: [hello]             # earlier layers it runs on top of; default: the base only
      env: {LANG: C.UTF-8}       # also: workdir, user, network: true (off by default)
  - name: fetch
    script:
      run: curl -fsSO https://example.com/x
      shell: [/bin/bash, -euo, pipefail, -c]
      needs: [result, hello]
      workdir: /opt
      user: "1000:1000"
      network: true
      pin: "x-1.2"
"#;

#[test]
fn script_layers_load_as_steps() {
    let fixture = Fixture::new();
    let file = fixture.load(SCRIPTS).unwrap();
    let step = |index: usize| {
        let package = &file.layers()[index].members()[0];
        assert_eq!(package.kind, Kind::Script);
        assert!(package.inputs().is_empty());
        package.script.clone().expect("a script layer has its step")
    };
    let hello = step(0);
    assert_eq!(
        hello.run,
        vec![
            "mkdir -p /opt/a".to_owned(),
            "printf '#!/bin/sh\\necho hi\\n' > /opt/a/hello && chmod 755 /opt/a/hello".to_owned()
        ]
    );
    assert_eq!(hello.shell, vec!["/bin/sh", "-e", "-c"]);
    assert!(hello.needs.is_empty() && !hello.network && hello.workdir.is_none());
    let result = step(1);
    assert_eq!(result.needs, vec!["hello"]);
    assert_eq!(result.env, vec![("LANG".to_owned(), "C.UTF-8".to_owned())]);
    let fetch = step(2);
    assert_eq!(fetch.run, vec!["curl -fsSO https://example.com/x"]);
    assert_eq!(fetch.shell, vec!["/bin/bash", "-euo", "pipefail", "-c"]);
    assert_eq!(fetch.needs, vec!["result", "hello"]);
    assert_eq!(fetch.workdir.as_deref(), Some("/opt"));
    assert_eq!(fetch.user.as_deref(), Some("1000:1000"));
    assert!(fetch.network);
    assert_eq!(fetch.pin.as_deref(), Some("x-1.2"));
    let spec = file.layers()[1].to_spec();
    assert_eq!(spec.script, Some(result));
    assert_eq!(
        spec.created_by,
        "layerize: result: script: /opt/a/hello > /opt/b/result"
    );
}

/// apt entries in every shape, and a top-level section with every option and its own packages.
const APT: &str = r#"image: {base: debian:bookworm}
apt:
  packages: [ca-certificates]
  sources:
    - "deb [arch=amd64 signed-by=keys/internal.asc] https://apt.example.com/debian bookworm main"
    - deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
  keys: [keys/internal.asc, ./keys/other.gpg]
  replace_sources: true
  scripts: skip
  recommends: true
layers:
  - name: tools
    apt: [curl, git, vim]
  - name: net
    apt: {group: [net-tools, iputils-ping]}
  - name: pinned
    apt: {packages: ["tzdata=2024a-0+deb12u1", curl/bookworm-backports, "libc6:i386", "vim=2:9.0.1378-2"], group: false}
  - name: jq
    apt: {packages: [jq, libjq1], group: true}
  - name: certs
    script: {run: [update-ca-certificates], needs: [apt, tools]}
"#;

fn request(packages: &[&str], group: bool) -> AptRequest {
    AptRequest {
        packages: packages.iter().map(|package| package.to_string()).collect(),
        group,
    }
}

#[test]
fn apt_entries_and_the_apt_section_load() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path("keys/internal.asc"), "armored").unwrap();
    std::fs::write(fixture.path("keys/other.gpg"), "binary").unwrap();
    let file = fixture.load(APT).unwrap();

    let names: Vec<&str> = file.layers().iter().map(|entry| entry.name()).collect();
    assert_eq!(names, ["apt", "tools", "net", "pinned", "jq", "certs"]);
    let apt = |index: usize| {
        let entry = &file.layers()[index];
        assert!(!entry.is_group(), "an apt entry is not a group of members");
        let package = &entry.members()[0];
        assert_eq!(package.kind, Kind::Apt);
        assert!(package.inputs().is_empty() && package.script.is_none());
        package.apt.clone().expect("an apt entry has its request")
    };
    assert_eq!(file.layers()[0].at, at(2, 1));
    assert_eq!(apt(0), request(&["ca-certificates"], false));
    assert_eq!(apt(1), request(&["curl", "git", "vim"], false));
    assert_eq!(apt(2), request(&["net-tools", "iputils-ping"], true));
    assert_eq!(
        apt(3),
        request(
            &[
                "tzdata=2024a-0+deb12u1",
                "curl/bookworm-backports",
                "libc6:i386",
                "vim=2:9.0.1378-2"
            ],
            false
        )
    );
    assert_eq!(apt(4), request(&["jq", "libjq1"], true));
    assert_eq!(
        file.layers()[5].members()[0].script.as_ref().unwrap().needs,
        ["apt", "tools"]
    );

    let internal = fixture.real("keys/internal.asc");
    assert_eq!(
        file.apt_options(),
        AptOptions {
            sources: vec![
                format!(
                    "deb [arch=amd64 signed-by={}] https://apt.example.com/debian bookworm main",
                    internal.display()
                ),
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main".to_owned(),
            ],
            replace_sources: true,
            keys: vec![internal.clone(), fixture.real("keys/other.gpg")],
            scripts: AptScripts::Skip,
            recommends: true,
        }
    );

    let specs: Vec<_> = file.layers().iter().map(|entry| entry.to_spec()).collect();
    let created: Vec<&str> = specs.iter().map(|spec| spec.created_by.as_str()).collect();
    assert_eq!(
        created[..3],
        [
            "layerize: apt: apt ca-certificates",
            "layerize: tools: apt curl git vim",
            "layerize: net: apt net-tools iputils-ping (one layer)",
        ]
    );
    for (spec, index) in specs.iter().zip(0..5) {
        assert!(spec.inputs.is_empty() && spec.members.is_empty() && spec.script.is_none());
        match &spec.apt {
            Some(AptSpec::Request(asked)) => assert_eq!(*asked, apt(index)),
            other => panic!("{}: {other:?}", spec.name),
        }
    }
    assert!(specs[5].apt.is_none());
}

#[test]
fn the_seeds_apt_list_is_a_whole_build_file() {
    let fixture = Fixture::new();
    let file = fixture
        .load("image: {base: debian:bookworm}\napt: [curl, git, vim]\n")
        .unwrap();
    assert_eq!(file.layers().len(), 1);
    assert_eq!(file.layers()[0].name(), "apt");
    assert_eq!(
        file.layers()[0].members()[0].apt,
        Some(request(&["curl", "git", "vim"], false))
    );
    assert_eq!(file.apt_options(), AptOptions::default());

    let grouped = fixture
        .load("apt: {group: [net-tools, iputils-ping], scripts: run}\nlayers: []\n")
        .unwrap();
    assert_eq!(
        grouped.layers()[0].members()[0].apt,
        Some(request(&["net-tools", "iputils-ping"], true))
    );
    assert_eq!(grouped.apt_options().scripts, AptScripts::Run);

    let without = fixture
        .load("layers:\n  - {name: app, delete: [/x]}\n")
        .unwrap();
    assert_eq!(without.apt_options(), AptOptions::default());
    let options_only = fixture
        .load("apt: {recommends: false, sources: []}\nlayers:\n  - {name: app, delete: [/x]}\n")
        .unwrap();
    assert_eq!(options_only.layers().len(), 1);
    assert_eq!(options_only.apt_options(), AptOptions::default());
}
