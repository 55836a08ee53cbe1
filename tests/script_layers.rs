//! End-to-end (issue 8): `script:` layers on the Debian bookworm base in a loopback registry,
//! checked by what podman sees and by the report's `steps[]`.
//!
//! - Three steps (one writes `/opt/a/hello` and edits `/etc/motd` with sed, one deletes
//!   `/etc/issue`, one `needs:` the first and a tarball's files layer, runs hello into
//!   `/opt/b/result` and unpacks the tarball) and two files layers: every effect is in the pulled
//!   image, and `/opt/a/hello` runs in it.
//! - Incremental: adding a files layer or an unrelated step reruns no existing step; changing the
//!   first reruns it and the step that needs it, nothing else. The same build twice, a new runner
//!   with `--cache-from`, and a second cold build all give the same digests.
//! - A step that only prints adds no layer, and its lines come out prefixed (text) or as
//!   `phase: script` events (JSON).
//! - A failing step fails the build naming it, its exit code and its last lines, and the target
//!   tag stays where it was.
//! - `..` and symlink tricks write inside the sandbox root, never on the host.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::access_log;
use support::layerize::{run_err, run_with_report};
use support::podman::PulledImage;
use support::script_builds::{
    build_with, cache_args, files_layer, is_manifest_put, layer, layer_digests, own_layer_names,
    script_layer, step, step_statuses, steps, DebianSite,
};
use support::{scratch_dir, skopeo, tools};

/// The first step: `/opt/a/hello` (0755, prints "hi") and "Debian GNU" -> "Layerized GNU" in
/// the base's `/etc/motd`; `changed` adds one more command, as a developer editing it would.
fn hello(changed: bool) -> String {
    let mut run = vec![
        "mkdir -p /opt/a",
        r"printf '#!/bin/sh\necho hi\n' > /opt/a/hello && chmod 755 /opt/a/hello",
        "sed -i 's/Debian GNU/Layerized GNU/g' /etc/motd",
    ];
    if changed {
        run.push("echo 2 > /opt/a/version");
    }
    script_layer("hello", &run, &[], &[])
}

fn no_issue() -> String {
    script_layer("no-issue", &["rm /etc/issue"], &[], &[])
}

/// A files layer no step needs: a host file with an explicit mode and an inline file.
fn data() -> String {
    files_layer(
        "data",
        &[
            "{src: data.txt, dest: /etc/app/data.txt, mode: \"0640\"}",
            "{dest: /etc/app/version, content: \"1\\n\"}",
        ],
    )
}

/// The files layer the third step needs: the tarball it unpacks.
fn tarball() -> String {
    files_layer(
        "tools-tarball",
        &["{src: tools.tar.gz, dest: /srv/tools.tar.gz}"],
    )
}

fn result() -> String {
    script_layer(
        "result",
        &[
            "mkdir -p /opt/b /opt/tools",
            "/opt/a/hello > /opt/b/result",
            "tar -xzf /srv/tools.tar.gz -C /opt/tools",
        ],
        &["hello", "tools-tarball"],
        &[],
    )
}

fn extra() -> String {
    files_layer("extra", &["{dest: /etc/app/extra, content: \"extra\\n\"}"])
}

fn unrelated() -> String {
    script_layer(
        "unrelated",
        &["mkdir -p /opt/c", "echo c > /opt/c/file"],
        &[],
        &[],
    )
}

/// What the tarball holds: path, contents, mode.
const TARBALL_FILES: [(&str, &str, u32); 2] = [
    ("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
    ("share/readme.txt", "read me\n", 0o644),
];

/// A build context: `data.txt`, `tools.tar.gz` (of [`TARBALL_FILES`]) and the build file.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = scratch_dir();
        std::fs::write(dir.path().join("data.txt"), "data\n").unwrap();
        let tree = scratch_dir();
        for (path, contents, mode) in TARBALL_FILES {
            let file = tree.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, contents).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        tools::run(
            tools::command("tar")
                .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
                .args(["--mtime=@0", "-czf"])
                .arg(dir.path().join("tools.tar.gz"))
                .arg("-C")
                .arg(tree.path())
                .args(["bin", "share"]),
        );
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `layerize build -c FILE ARGS... --report R`, which must succeed; returns the report.
fn build(file: &Path, args: &[&str]) -> Value {
    build_with(support::layerize!(), file, args)
}

fn statuses(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, status)| (name.to_string(), status.to_string()))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}

fn key<'a>(report: &'a Value, name: &str) -> &'a str {
    step(report, name)["key"].as_str().unwrap()
}

/// Every own layer is `built` if its name is in `built`, `reused` otherwise.
fn assert_layers_built(report: &Value, built: &[&str]) {
    for name in own_layer_names(report) {
        let expected = if built.contains(&name.as_str()) {
            "built"
        } else {
            "reused"
        };
        assert_eq!(layer(report, &name)["status"], expected, "layer {name}");
    }
}

/// What every step that ran reports: exit code 0, a sandbox mode, a time, whether its network
/// was isolated, what it changed, and (when it made a layer) that layer's key.
fn assert_step_records(report: &Value) {
    for step in steps(report) {
        let name = step["name"].as_str().unwrap();
        if step["status"] == "reused" {
            continue;
        }
        assert_eq!(step["status"], "built", "{step}");
        assert_eq!(step["exit_code"], 0, "{step}");
        let mode = step["mode"].as_str().unwrap_or_default();
        assert!(["chroot", "namespaces", "userns"].contains(&mode), "{step}");
        assert!(step["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{step}");
        assert!(step["network_isolated"].is_boolean(), "{step}");
        for count in ["added", "changed", "deleted"] {
            assert!(step[count].is_u64(), "{count} in {step}");
        }
        if step["layer"] == true {
            assert_eq!(layer(report, name)["key"], step["key"], "{name}");
        }
    }
}

/// podman pulls `reference` and sees everything the first build's layers did.
fn assert_first_build_effects(reference: &str, project: &Project) {
    let pulled = PulledImage::pull(reference, None);
    let root = pulled.root();
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|error| panic!("/{path} in {reference}: {error}"))
    };
    let mode = |path: &str| {
        std::fs::metadata(root.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };

    assert_eq!(read("opt/a/hello"), "#!/bin/sh\necho hi\n");
    assert_eq!(mode("opt/a/hello"), 0o755);
    let motd = read("etc/motd");
    assert!(
        motd.contains("Layerized GNU/Linux comes with ABSOLUTELY NO WARRANTY")
            && !motd.contains("Debian GNU"),
        "/etc/motd not edited: {motd:?}"
    );
    assert!(
        std::fs::symlink_metadata(root.join("etc/issue")).is_err(),
        "/etc/issue is still there"
    );
    assert!(
        root.join("etc/issue.net").is_file(),
        "a neighbour of /etc/issue went too"
    );
    assert_eq!(read("opt/b/result"), "hi\n");
    for (path, contents, file_mode) in TARBALL_FILES {
        let path = format!("opt/tools/{path}");
        assert_eq!(read(&path), contents);
        assert_eq!(mode(&path), file_mode, "/{path}");
    }
    assert!(
        std::fs::read(root.join("srv/tools.tar.gz")).unwrap()
            == std::fs::read(project.path().join("tools.tar.gz")).unwrap(),
        "/srv/tools.tar.gz is not the project's tarball"
    );
    assert_eq!(read("etc/app/data.txt"), "data\n");
    assert_eq!(mode("etc/app/data.txt"), 0o640);
    assert_eq!(read("etc/app/version"), "1\n");
    assert!(
        root.join("etc/debian_version").is_file(),
        "the base is gone"
    );
    assert_eq!(pulled.chroot_run(&["/opt/a/hello"]), "hi\n");
}

#[test]
fn script_steps_build_on_debian_and_rerun_only_what_changed() {
    let site = DebianSite::new();
    let project = Project::new();
    let cache = scratch_dir();
    let app = |tag: &str| site.reference(&format!("app:{tag}"));
    let write =
        |target: &str, layers: &[String]| site.write_build_file(project.path(), target, layers);

    // The first build: every step runs, every layer is built, in the file's order.
    let first_layers = [hello(false), no_issue(), data(), tarball(), result()];
    let first = build(&write(&app("a"), &first_layers), &cache_args(&cache));
    assert_eq!(
        own_layer_names(&first),
        names(&["hello", "no-issue", "data", "tools-tarball", "result"])
    );
    assert_eq!(
        step_statuses(&first),
        statuses(&[
            ("hello", "built"),
            ("no-issue", "built"),
            ("result", "built")
        ])
    );
    assert_layers_built(
        &first,
        &["hello", "no-issue", "data", "tools-tarball", "result"],
    );
    assert_step_records(&first);
    for name in ["hello", "no-issue", "result"] {
        assert_eq!(step(&first, name)["layer"], true, "{name}");
    }
    let (hello_step, no_issue_step) = (step(&first, "hello"), step(&first, "no-issue"));
    assert!(hello_step["added"].as_u64().unwrap() >= 1, "{hello_step}");
    assert!(hello_step["changed"].as_u64().unwrap() >= 1, "{hello_step}");
    assert_eq!(hello_step["deleted"], 0, "{hello_step}");
    assert_eq!(no_issue_step["deleted"], 1, "{no_issue_step}");
    assert_eq!(no_issue_step["added"], 0, "{no_issue_step}");
    let result_step = step(&first, "result");
    assert!(result_step["added"].as_u64().unwrap() >= 3, "{result_step}");
    assert_eq!(result_step["deleted"], 0, "{result_step}");
    let keys: BTreeSet<&str> = ["hello", "no-issue", "result"]
        .iter()
        .map(|name| key(&first, name))
        .collect();
    assert_eq!(keys.len(), 3, "two steps share a key: {first}");
    assert_first_build_effects(&app("a"), &project);

    // A files layer added (first, under every step): no step runs again, no key changes.
    let with_extra: Vec<String> = [extra()].into_iter().chain(first_layers.clone()).collect();
    let added_file = build(&write(&app("b"), &with_extra), &cache_args(&cache));
    assert_eq!(
        step_statuses(&added_file),
        statuses(&[
            ("hello", "reused"),
            ("no-issue", "reused"),
            ("result", "reused")
        ])
    );
    assert_layers_built(&added_file, &["extra"]);
    for name in ["hello", "no-issue", "result"] {
        assert_eq!(key(&added_file, name), key(&first, name), "{name}");
        assert_eq!(
            layer(&added_file, name)["digest"],
            layer(&first, name)["digest"],
            "{name}"
        );
    }

    // An unrelated step added: only it runs.
    let with_unrelated: Vec<String> = with_extra.iter().cloned().chain([unrelated()]).collect();
    let added_step = build(&write(&app("c"), &with_unrelated), &cache_args(&cache));
    assert_eq!(
        step_statuses(&added_step),
        statuses(&[
            ("hello", "reused"),
            ("no-issue", "reused"),
            ("result", "reused"),
            ("unrelated", "built")
        ])
    );
    assert_layers_built(&added_step, &["unrelated"]);
    assert_step_records(&added_step);

    // The first step changed: it and the step that needs it run, the others are reused.
    let changed_layers: Vec<String> = with_unrelated
        .iter()
        .map(|layer| {
            if *layer == hello(false) {
                hello(true)
            } else {
                layer.clone()
            }
        })
        .collect();
    let changed_file = write(&app("d"), &changed_layers);
    let changed = build(&changed_file, &cache_args(&cache));
    assert_eq!(
        step_statuses(&changed),
        statuses(&[
            ("hello", "built"),
            ("no-issue", "reused"),
            ("result", "built"),
            ("unrelated", "reused")
        ])
    );
    assert_layers_built(&changed, &["hello", "result"]);
    assert_step_records(&changed);
    assert_ne!(key(&changed, "hello"), key(&first, "hello"));
    assert_ne!(key(&changed, "result"), key(&first, "result"));
    assert_eq!(key(&changed, "no-issue"), key(&first, "no-issue"));
    assert_eq!(key(&changed, "unrelated"), key(&added_step, "unrelated"));
    {
        let pulled = PulledImage::pull(&app("d"), None);
        let read = |path: &str| std::fs::read_to_string(pulled.root().join(path)).unwrap();
        assert_eq!(read("opt/a/version"), "2\n");
        assert_eq!(read("opt/b/result"), "hi\n");
        assert_eq!(read("opt/c/file"), "c\n");
        assert_eq!(read("etc/app/extra"), "extra\n");
        assert!(std::fs::symlink_metadata(pulled.root().join("etc/issue")).is_err());
    }

    // The same build twice: the same image, nothing run.
    let again = build(&changed_file, &cache_args(&cache));
    assert_eq!(again["digest"], changed["digest"]);
    assert!(
        steps(&again).iter().all(|step| step["status"] == "reused"),
        "{again}"
    );

    // A new runner: an empty cache dir, --cache-from the last tag, a new repository. The same
    // digests, and no step runs.
    let runner_cache = scratch_dir();
    let ci_target = site.reference("ci/app:d");
    let previous_tag = app("d");
    let mut args = cache_args(&runner_cache);
    args.extend(["--cache-from", &previous_tag, "--target", &ci_target]);
    let from_cache = build(&changed_file, &args);
    assert_eq!(layer_digests(&from_cache), layer_digests(&changed));
    assert_eq!(from_cache["digest"], changed["digest"]);
    assert!(
        steps(&from_cache)
            .iter()
            .all(|step| step["status"] == "reused"),
        "{from_cache}"
    );
    assert_eq!(
        skopeo::digest_if_exists(&ci_target, None).as_deref(),
        changed["digest"].as_str()
    );

    // A second cold build of the first file (another empty cache dir, another repository, no
    // cache source): every step runs again and makes the same bytes.
    let cold_cache = scratch_dir();
    let twin_target = site.reference("twin/app:a");
    let mut args = cache_args(&cold_cache);
    args.extend(["--target", &twin_target]);
    let twin = build(&write(&app("a"), &first_layers), &args);
    assert_eq!(step_statuses(&twin), step_statuses(&first));
    assert_eq!(layer_digests(&twin), layer_digests(&first));
    assert_eq!(twin["digest"], first["digest"]);
}

/// A step that changes nothing is reported and adds no layer; its stdout and stderr lines come
/// out as `[NAME] line` in text logs and as `phase: script` events in JSON logs.
#[test]
fn a_step_that_only_prints_streams_its_lines_and_adds_no_layer() {
    let site = DebianSite::new();
    let project = Project::new();
    let layers = [
        data(),
        script_layer(
            "say",
            &["echo hello-from-step", "echo warn-from-step >&2"],
            &[],
            &[],
        ),
    ];
    let file = site.write_build_file(project.path(), &site.reference("say:1"), &layers);
    let run = |log_format: &str, tag: &str| -> (Value, String) {
        let cache = scratch_dir();
        let scratch = scratch_dir();
        let report = scratch.path().join("report.json");
        let mut command = support::layerize!();
        command
            .args(["build", "--log-format", log_format, "-c"])
            .arg(&file)
            .args(cache_args(&cache))
            .args(["--target", &site.reference(&format!("say:{tag}"))])
            .arg("--report")
            .arg(&report);
        let output = support::layerize::run_ok(&mut command);
        let stderr = String::from_utf8(output.stderr).unwrap();
        (support::layerize::read_report(&report), stderr)
    };

    let (text_report, text_log) = run("text", "text");
    for line in ["[say] hello-from-step", "[say] warn-from-step"] {
        assert!(
            text_log.lines().any(|logged| logged.contains(line)),
            "no {line:?} in:\n{text_log}"
        );
    }
    let (json_report, json_log) = run("json", "json");
    let events: Vec<Value> = json_log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for (stream, line) in [("stdout", "hello-from-step"), ("stderr", "warn-from-step")] {
        assert!(
            events.iter().any(|event| event["phase"] == "script"
                && event["step"] == "say"
                && event["stream"] == stream
                && event["message"] == format!("[say] {line}")
                && event["line"] == line),
            "no {stream} event for {line:?} in:\n{json_log}"
        );
    }

    for report in [&text_report, &json_report] {
        let say = step(report, "say");
        assert_eq!(say["status"], "built", "{say}");
        assert_eq!(say["layer"], false, "{say}");
        assert_eq!(say["exit_code"], 0, "{say}");
        for count in ["added", "changed", "deleted"] {
            assert_eq!(say[count], 0, "{count} in {say}");
        }
        assert_eq!(own_layer_names(report), names(&["data"]));
    }
    assert_eq!(text_report["digest"], json_report["digest"]);
}

/// A step exiting 3 fails the build: the error names the step and the exit code and repeats the
/// last lines of its output, and the target tag still holds the image of the build before.
#[test]
fn a_failing_step_fails_the_build_and_leaves_the_tag_alone() {
    let site = DebianSite::new();
    let project = Project::new();
    let target = site.reference("fail:1");
    let cache = scratch_dir();
    let good = build(
        &site.write_build_file(project.path(), &target, &[data()]),
        &cache_args(&cache),
    );
    let before = good["digest"].as_str().unwrap().to_owned();

    let layers = [
        data(),
        script_layer(
            "fine",
            &["mkdir -p /opt/fine", "echo fine > /opt/fine/file"],
            &[],
            &[],
        ),
        script_layer(
            "fail",
            &[
                "for i in $(seq 1 40); do echo \"line-$i\"; done",
                "echo giving-up >&2",
                "exit 3",
                "echo not-reached",
            ],
            &[],
            &[],
        ),
    ];
    let file = site.write_build_file(project.path(), &target, &layers);
    let mark = site.log_mark();
    let mut command = support::layerize!();
    command
        .arg("build")
        .arg("-c")
        .arg(&file)
        .args(cache_args(&cache));
    let stderr = run_err(&mut command);

    assert!(stderr.contains("step \"fail\" failed"), "{stderr}");
    assert!(stderr.contains("exit code 3"), "{stderr}");
    // Once streamed as the step ran, and again in the error's output tail.
    for line in ["line-40", "giving-up"] {
        assert!(
            stderr.matches(line).count() >= 2,
            "{line:?} is not in the error's output tail:\n{stderr}"
        );
    }
    assert!(!stderr.contains("not-reached"), "{stderr}");

    let requests = site.requests_since(mark);
    let manifest_puts: Vec<_> = requests.iter().filter(|r| is_manifest_put(r)).collect();
    assert!(
        manifest_puts.is_empty(),
        "a failed build wrote a manifest: {manifest_puts:#?}"
    );
    assert_eq!(
        skopeo::digest_if_exists(&target, None).as_deref(),
        Some(before.as_str())
    );
    // Reported, not asserted: whether blobs moved before the failure.
    let uploads = access_log::uploads(&requests);
    eprintln!(
        "the failed build uploaded {} blob(s): {:?}",
        uploads.len(),
        uploads.iter().map(|(digest, _)| digest).collect::<Vec<_>>()
    );
}

/// `..` from the root, a symlink to `/`, an absolute symlink with `..` in it and a relative one
/// climbing far up: every write lands inside the sandbox root (and so in the step's layer), and
/// no file of that name appears on the host.
#[test]
fn a_script_cannot_write_outside_its_root() {
    let site = DebianSite::new();
    let project = Project::new();
    let mark = format!(
        "escaped-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let commands = [
        format!("cd /; cd ../../..; echo x > {mark}-dotdot"),
        format!("ln -s / /r && echo x > /r/../../tmp/{mark}-symlink"),
        format!("ln -s /../../../tmp /up && echo x > /up/{mark}-up"),
        format!("ln -s ../../../../../../.. /tmp/rel && echo x > /tmp/rel/{mark}-relative"),
    ];
    let run: Vec<&str> = commands.iter().map(String::as_str).collect();
    let target = site.reference("escape:1");
    let file = site.write_build_file(
        project.path(),
        &target,
        &[script_layer("escape", &run, &[], &[])],
    );
    let cache = scratch_dir();
    let tmp = scratch_dir();
    let mut command = support::layerize!();
    command
        .arg("build")
        .arg("-c")
        .arg(&file)
        .args(cache_args(&cache))
        .env("TMPDIR", tmp.path())
        .current_dir(project.path());
    let report = run_with_report(&mut command).report;
    assert_eq!(step(&report, "escape")["layer"], true, "{report}");

    // Before anything of the image is pulled (or mounted) on this host.
    let mut found = Vec::new();
    for dir in [project.path(), cache.path(), tmp.path()] {
        find_named(dir, &mark, usize::MAX, &mut found);
    }
    for dir in ["/", "/srv", "/opt", "/var/tmp", "/root"] {
        find_named(Path::new(dir), &mark, 1, &mut found);
    }
    find_named(Path::new("/tmp"), &mark, 3, &mut found);
    assert!(
        found.is_empty(),
        "a script wrote outside its root (or left a root behind): {found:?}"
    );

    let pulled = PulledImage::pull(&target, None);
    let root = pulled.root();
    for inside in [
        format!("{mark}-dotdot"),
        format!("tmp/{mark}-symlink"),
        format!("tmp/{mark}-up"),
        format!("{mark}-relative"),
    ] {
        assert_eq!(
            std::fs::read_to_string(root.join(&inside)).unwrap_or_default(),
            "x\n",
            "/{inside} is not in the step's layer"
        );
    }
    assert_eq!(std::fs::read_link(root.join("r")).unwrap(), Path::new("/"));
    assert_eq!(
        std::fs::read_link(root.join("up")).unwrap(),
        Path::new("/../../../tmp")
    );
}

/// Paths below `dir` (at most `depth` levels down, symlinks not followed) whose name starts
/// with `prefix`, appended to `found`.
fn find_named(dir: &Path, prefix: &str, depth: usize, found: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            find_named(&path, prefix, depth - 1, found);
        }
    }
}
