//! Platforms (`os/architecture[/variant]`): parsing user input, normalising the way containerd
//! does, and deciding whether an image for one platform runs on another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ManifestError;

/// An image platform as it appears in index entries and configs.
///
/// Fields serialise in the image-spec order with the spec's names (`os.version`,
/// `os.features`). `Default` is `linux/amd64`, layerize's default `--platform`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform::new("linux", "amd64", None)
    }
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parses `os/architecture[/variant]` (e.g. `linux/arm64/v8`), lower-cased but otherwise
    /// as written: [`Platform::normalize`] and [`Platform::matches`] do the aliasing, so error
    /// messages can show what the user typed.
    pub fn parse(value: &str) -> Result<Platform, ManifestError> {
        let invalid = |reason| ManifestError::InvalidPlatform {
            value: value.to_owned(),
            reason,
        };
        let lower = value.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(invalid(
                "expected OS/ARCHITECTURE[/VARIANT], e.g. linux/amd64 or linux/arm64/v8",
            ));
        }
        let well_formed = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        };
        if !parts.iter().all(|part| well_formed(part)) {
            return Err(invalid(
                "each part must be non-empty letters, digits, '_', '.' or '-'",
            ));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }

    /// The canonical spelling, as containerd's `platforms.Normalize`: `aarch64` -> `arm64` and
    /// `arm64/v8` -> `arm64`; `x86_64`/`x86-64` -> `amd64` and `amd64/v1` -> `amd64`;
    /// `i386` -> `386`; `armhf` -> `arm/v7`, `armel` -> `arm/v6`, `arm` -> `arm/v7`;
    /// `macos` -> `darwin`. `os.version` and `os.features` are kept as they are.
    pub fn normalize(&self) -> Platform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            other => other.to_owned(),
        };
        let architecture = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase);
        let (architecture, variant) = match (architecture.as_str(), variant.as_deref()) {
            ("i386", _) => ("386", None),
            ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64", None),
            ("x86_64" | "x86-64" | "amd64", variant) => ("amd64", variant),
            ("aarch64" | "arm64", Some("8" | "v8" | "v8.0")) => ("arm64", None),
            ("aarch64" | "arm64", Some("9" | "9.0" | "v9.0")) => ("arm64", Some("v9")),
            ("aarch64" | "arm64", variant) => ("arm64", variant),
            ("armhf", _) => ("arm", Some("v7")),
            ("armel", _) => ("arm", Some("v6")),
            ("arm", None | Some("7")) => ("arm", Some("v7")),
            ("arm", Some("5")) => ("arm", Some("v5")),
            ("arm", Some("6")) => ("arm", Some("v6")),
            ("arm", Some("8")) => ("arm", Some("v8")),
            (architecture, variant) => (architecture, variant),
        };
        Platform {
            architecture: architecture.to_owned(),
            os,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an image built for `other` runs on `self` (the wanted platform): after
    /// normalising both, os and architecture are equal and `other`'s variant is `self`'s or an
    /// older revision of it (`arm/v7` runs `arm/v6`, `amd64/v3` runs `amd64`). Architectures
    /// never cross (an `arm64` request does not take `arm/v7`): layerize builds on top of what
    /// it selects, so the result must really be the platform asked for. `os.version` and
    /// `os.features` are not compared.
    pub fn matches(&self, other: &Platform) -> bool {
        let (wanted, candidate) = (self.normalize(), other.normalize());
        if wanted.os != candidate.os || wanted.architecture != candidate.architecture {
            return false;
        }
        if wanted.variant == candidate.variant {
            return true;
        }
        match (wanted.variant_revision(), candidate.variant_revision()) {
            (Some(wanted), Some(candidate)) => candidate <= wanted,
            _ => false,
        }
    }

    /// Whether both name the same platform once normalised (os, architecture and variant).
    pub fn same_as(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalize(), other.normalize());
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }

    /// The variant as an ordered revision (`v8.2` -> (8, 2)); a missing variant is the
    /// architecture's baseline where it has one (amd64 v1, arm64 v8). Expects normalised input.
    pub(crate) fn variant_revision(&self) -> Option<(u32, u32)> {
        let variant = match (self.variant.as_deref(), self.architecture.as_str()) {
            (Some(variant), _) => variant,
            (None, "amd64") => "v1",
            (None, "arm64") => "v8",
            (None, _) => return None,
        };
        let number = variant.strip_prefix('v')?;
        let (major, minor) = number.split_once('.').unwrap_or((number, "0"));
        Some((major.parse().ok()?, minor.parse().ok()?))
    }
}

impl FromStr for Platform {
    type Err = ManifestError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Platform::parse(value)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(value: &str) -> Platform {
        value.parse().unwrap()
    }

    #[test]
    fn normalisation_table() {
        for (input, expected) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64/8", "linux/arm64"),
            ("linux/arm64/v8.0", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/arm/v5", "linux/arm/v5"),
            ("linux/i386", "linux/386"),
            ("Linux/AMD64", "linux/amd64"),
            ("macos/arm64", "darwin/arm64"),
            ("linux/s390x", "linux/s390x"),
            ("windows/amd64", "windows/amd64"),
        ] {
            assert_eq!(p(input).normalize().to_string(), expected, "{input}");
        }
    }

    #[test]
    fn parse_and_display_round_trip() {
        let platform = p("linux/arm64/v8");
        assert_eq!(platform.os, "linux");
        assert_eq!(platform.architecture, "arm64");
        assert_eq!(platform.variant.as_deref(), Some("v8"));
        assert_eq!(platform.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::default().to_string(), "linux/amd64");
    }

    #[test]
    fn parse_refuses_malformed_input() {
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "linux/am d64",
            "linux//v7",
        ] {
            let err = Platform::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid platform"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn matching_table() {
        for (wanted, candidate, expected) in [
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/aarch64", "linux/arm64", true),
            ("linux/arm64/v8", "linux/arm64", true),
            ("linux/amd64", "linux/x86_64", true),
            ("linux/amd64", "linux/amd64/v1", true),
            ("linux/amd64", "linux/amd64/v3", false),
            ("linux/amd64/v3", "linux/amd64/v2", true),
            ("linux/amd64/v3", "linux/amd64", true),
            ("linux/arm/v7", "linux/arm", true),
            ("linux/arm/v7", "linux/arm/v6", true),
            ("linux/arm/v6", "linux/arm/v7", false),
            ("linux/arm64/v9", "linux/arm64", true),
            ("linux/arm64", "linux/arm64/v9", false),
            ("linux/arm64", "linux/arm/v7", false),
            ("linux/amd64", "linux/386", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux/riscv64", "linux/riscv64", true),
            ("linux/riscv64", "linux/riscv64/rva22", false),
        ] {
            assert_eq!(
                p(wanted).matches(&p(candidate)),
                expected,
                "{wanted} runs {candidate}"
            );
        }
    }

    #[test]
    fn serde_uses_spec_names() {
        let json = r#"{"architecture":"amd64","os":"windows","os.version":"10.0.20348.2113","os.features":["win32k"]}"#;
        let platform: Platform = serde_json::from_str(json).unwrap();
        assert_eq!(platform.os_version.as_deref(), Some("10.0.20348.2113"));
        assert_eq!(serde_json::to_string(&platform).unwrap(), json);
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_matches_itself(
            os in prop::sample::select(vec!["linux", "windows", "macos", "Linux"]),
            arch in prop::sample::select(vec!["amd64", "x86_64", "x86-64", "aarch64", "arm64", "arm", "armhf", "armel", "i386", "386", "s390x", "ppc64le"]),
            variant in prop::option::of(prop::sample::select(vec!["v1", "v2", "v3", "5", "6", "7", "8", "v5", "v6", "v7", "v8", "v8.0", "v8.2", "9", "v9"])),
        ) {
            let platform = Platform::new(os, arch, variant);
            let once = platform.normalize();
            prop_assert_eq!(once.normalize(), once.clone());
            prop_assert!(platform.matches(&platform));
            prop_assert!(platform.matches(&once));
            prop_assert!(once.matches(&platform));
            prop_assert!(platform.same_as(&once));
        }
    }
}
