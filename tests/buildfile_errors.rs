//! End-to-end (issue 7): a malformed build file stops `layerize build -c` before it writes
//! anything: a non-zero exit, one error line naming `layerize.yaml:LINE:COL`, no write in the
//! registry's log and no target tag. Through the binary, for bad YAML syntax and unknown keys;
//! the build file crate's own tests cover every other error.

use support::access_log::{self, Request};
use support::images::{self, Format, Image};
use support::layerize::{error_line, run_err};
use support::registry::Registry;
use support::{scratch_dir, skopeo};

/// A broken build file: its layers section, what the error must say and where.
struct Case {
    what: &'static str,
    /// The file after its `image:` line (line 1), so its lines count from 2.
    body: &'static str,
    line: usize,
    column: usize,
    /// A word the message must hold, besides the position.
    says: Option<&'static str>,
}

const CASES: [Case; 3] = [
    Case {
        what: "bad YAML: a second mapping value on one line",
        body: "layers:\n  - name: app: x\n    files: [{src: app.txt, dest: /etc/app}]\n",
        line: 3,
        column: 14,
        says: None,
    },
    Case {
        what: "an unknown key in a files entry",
        body: "layers:\n  - name: app\n    files:\n      - {src: app.txt, detsination: /etc/app}\n",
        line: 5,
        column: 24,
        says: Some("detsination"),
    },
    Case {
        what: "an unknown top-level key",
        body: "layers:\n  - name: app\n    files: [{src: app.txt, dest: /etc/app}]\noptimisation: {max_layers: 10}\n",
        line: 5,
        column: 1,
        says: Some("optimisation"),
    },
];

#[test]
fn malformed_build_files_fail_with_their_position_and_push_nothing() {
    let registry = Registry::open();
    images::push(Image::Busybox, Format::Oci, &registry, "base/busybox:1");
    let base = format!("{}/base/busybox:1", registry.host());
    let before = registry.settled_access_log().len();

    for (index, case) in CASES.iter().enumerate() {
        let project = scratch_dir();
        std::fs::write(project.path().join("app.txt"), "app\n").unwrap();
        let target = format!("{}/bad/case{index}:1", registry.host());
        let file = project.path().join("layerize.yaml");
        let yaml = format!(
            "image: {{base: \"{base}\", target: \"{target}\"}}\n{}",
            case.body
        );
        std::fs::write(&file, yaml).unwrap();

        let stderr = run_err(support::layerize!().arg("build").arg("-c").arg(&file));
        let error = error_line(&stderr);
        let position = format!("layerize.yaml:{}:{}", case.line, case.column);
        assert!(
            error.contains(&position),
            "{}: expected {position} in: {error}",
            case.what
        );
        if let Some(word) = case.says {
            assert!(error.contains(word), "{}: {error}", case.what);
        }
        assert!(
            skopeo::digest_if_exists(&target, None).is_none(),
            "{}: {target} was pushed",
            case.what
        );
    }

    let log = registry.settled_access_log();
    let writes: Vec<Request> = access_log::requests(&log[before..])
        .into_iter()
        .filter(Request::is_write)
        .collect();
    assert!(writes.is_empty(), "a malformed build wrote: {writes:#?}");
}
