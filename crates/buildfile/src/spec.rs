//! A build file's layer entries as the builder's layer specs: one spec per entry, a group's
//! members in order as one layer, and a `created_by` that names what each package puts where
//! (never host paths, which differ between checkouts and would change the image's digest).

use layerize_builder::build::apt::{AptRequest, AptSpec};
use layerize_builder::layer::recipe::Input;
use layerize_builder::LayerSpec;

use crate::{LayerEntry, Package};

impl LayerEntry {
    /// The entry as a layer spec for the build.
    pub fn to_spec(&self) -> LayerSpec {
        if let Some(request) = self.members()[0].apt.as_ref() {
            return apt_layer_spec(self.name(), request.clone());
        }
        if let Some(step) = self.members()[0]
            .script
            .as_ref()
            .filter(|_| !self.is_group())
        {
            return LayerSpec {
                name: self.name().to_owned(),
                created_by: step.created_by(self.name()),
                inputs: Vec::new(),
                members: Vec::new(),
                script: Some(step.clone()),
                apt: None,
            };
        }
        let created_by = if self.is_group() {
            let members: Vec<String> = self
                .members()
                .iter()
                .map(|package| format!("{} ({})", package.name, summary(package)))
                .collect();
            format!("layerize: {}: {}", self.name(), members.join("; "))
        } else {
            let package = &self.members()[0];
            format!("layerize: {}: {}", self.name(), summary(package))
        };
        LayerSpec {
            name: self.name().to_owned(),
            created_by,
            inputs: self
                .members()
                .iter()
                .flat_map(|package| package.inputs().iter().cloned())
                .collect(),
            members: if self.is_group() {
                self.members()
                    .iter()
                    .map(|package| package.name.clone())
                    .collect()
            } else {
                Vec::new()
            },
            script: None,
            apt: None,
        }
    }
}

/// The spec of an apt entry named `name` (in the build file, or `--apt`'s `apt-cli`), which the
/// build expands into its package, dpkg and configure layers.
pub fn apt_layer_spec(name: &str, request: AptRequest) -> LayerSpec {
    let grouped = if request.group { " (one layer)" } else { "" };
    LayerSpec {
        name: name.to_owned(),
        created_by: format!(
            "layerize: {name}: apt {}{grouped}",
            request.packages.join(" ")
        ),
        inputs: Vec::new(),
        members: Vec::new(),
        script: None,
        apt: Some(AptSpec::Request(request)),
    }
}

fn summary(package: &Package) -> String {
    let parts: Vec<String> = package.inputs().iter().map(Input::summary).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use crate::BuildFile;

    #[test]
    fn entries_become_specs_without_host_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("yq")).unwrap();
        std::fs::write(dir.path().join("jq"), b"jq").unwrap();
        let text = "layers:\n  - name: motd\n    delete: [/etc/motd]\n  - name: tools\n    group:\n      - {name: jq, files: [{src: jq, dest: /usr/bin/jq}]}\n      - {name: yq, dir: {src: yq, dest: /opt/yq}}\n";
        let file = BuildFile::parse(dir.path().join("layerize.yaml"), text).unwrap();
        let specs: Vec<_> = file.layers().iter().map(|entry| entry.to_spec()).collect();
        assert_eq!(specs[0].name, "motd");
        assert!(specs[0].members.is_empty());
        assert_eq!(specs[0].created_by, "layerize: motd: delete /etc/motd");
        assert_eq!(specs[1].members, vec!["jq", "yq"]);
        assert_eq!(specs[1].inputs.len(), 2);
        assert_eq!(
            specs[1].created_by,
            "layerize: tools: jq (file /usr/bin/jq); yq (dir /opt/yq)"
        );
        let root = dir.path().to_str().unwrap();
        assert!(specs.iter().all(|spec| !spec.created_by.contains(root)));
    }
}
