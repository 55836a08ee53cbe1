//! A build file named relatively (`layerize.yaml`, as `layerize build -c` is usually given it) is
//! named so in errors, and its sources resolve against the directory it is in. Alone in its test
//! binary because it changes the working directory.

mod common;

use common::Fixture;
use layerize_buildfile::{BuildFile, Input};

#[test]
fn errors_name_the_file_as_given_and_sources_resolve_against_its_directory() {
    let fixture = Fixture::new();
    std::env::set_current_dir(fixture.dir.path()).unwrap();
    std::fs::write(
        "layerize.yaml",
        "layers:\n  - name: app\n    files:\n      - src: bin/jq\n        detsination: /usr/bin/jq\n",
    )
    .unwrap();
    assert_eq!(
        BuildFile::load("layerize.yaml").unwrap_err().to_string(),
        "layerize.yaml:5:9: unknown key \"detsination\" in a files entry (expected one of: src, dest, mode, owner, content)"
    );

    std::fs::write(
        "layerize.yaml",
        "layers:\n  - {name: vendor, tar: vendor.tar.gz}\n",
    )
    .unwrap();
    let file = BuildFile::load("layerize.yaml").unwrap();
    assert_eq!(
        file.layers()[0].members()[0].inputs(),
        [Input::Tar(fixture.real("vendor.tar.gz"))]
    );
}
