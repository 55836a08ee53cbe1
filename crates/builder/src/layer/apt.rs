//! The keys of apt layers, known from the verified index before any `.deb` is fetched, so that a
//! reused package layer costs no download: a package layer's key is its `.deb`'s sha256 (with the
//! conversion's format, the base's merged-/usr links, which decide where its files land, and the
//! base's dpkg path filters, which decide which of them land at all), the
//! dpkg database layer's is the base's database and the packages it adds.

use std::collections::BTreeMap;

use layerize_manifest::Digest;
use sha2::{Digest as _, Sha256};

use super::key::{codec_name, LAYER_FORMAT};
use super::LayerOptions;

/// Bump when the dpkg database layer changes for the same inputs.
pub const DATABASE_FORMAT: u32 = 1;

/// The key of a layer holding the `.deb`s `debs` (dpkg name and sha256 each, in layer order),
/// converted by `conversion` onto a base whose top-level directories `usr_links` are symlinks
/// and whose dpkg leaves out what `path_filters` say (one line per rule, in order).
pub fn packages_key(
    debs: &[(&str, &str)],
    conversion: &str,
    usr_links: &BTreeMap<String, String>,
    path_filters: &[String],
    options: &LayerOptions,
) -> String {
    let mut text = format!(
        "layerize apt packages\nformat {LAYER_FORMAT}.{conversion}\ncodec {}\nmtime {}\n",
        codec_name(options.compression),
        options.mtime
    );
    for (link, target) in usr_links {
        text.push_str(&format!("link {link} {target}\n"));
    }
    // None on most bases: their keys stay what they were before filters were known.
    for rule in path_filters {
        text.push_str(&format!("filter {rule}\n"));
    }
    for (name, sha256) in debs {
        text.push_str(&format!("deb {name} {sha256}\n"));
    }
    sha256_key(&text)
}

/// What the dpkg database layer is made from, for its key.
pub struct DatabaseInputs<'a> {
    pub base_status: &'a str,
    pub base_extended_states: Option<&'a str>,
    /// Dpkg name, `.deb` sha256 and whether it was requested, for each package added.
    pub packages: Vec<(&'a str, &'a str, bool)>,
    pub configure: bool,
    /// The old `.list` of each upgraded base package.
    pub old_lists: &'a [(String, String)],
    pub usr_links: &'a BTreeMap<String, String>,
}

/// The key of the dpkg database layer.
pub fn database_key(inputs: &DatabaseInputs<'_>, options: &LayerOptions) -> String {
    let digest = |text: &str| hex_sha256(text.as_bytes());
    let mut text = format!(
        "layerize apt database\nformat {LAYER_FORMAT}.{DATABASE_FORMAT}\ncodec {}\nmtime {}\nstatus {}\nextended {}\nconfigure {}\n",
        codec_name(options.compression),
        options.mtime,
        digest(inputs.base_status),
        inputs.base_extended_states.map_or_else(|| "none".to_owned(), digest),
        inputs.configure,
    );
    for (link, target) in inputs.usr_links {
        text.push_str(&format!("link {link} {target}\n"));
    }
    for (name, list) in inputs.old_lists {
        text.push_str(&format!("old {name} {}\n", digest(list)));
    }
    let mut packages = inputs.packages.clone();
    packages.sort();
    for (name, sha256, requested) in packages {
        text.push_str(&format!("deb {name} {sha256} {requested}\n"));
    }
    sha256_key(&text)
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha256_key(text: &str) -> String {
    Digest::sha256(text.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, CompressionPool};

    fn options(mtime: u64) -> LayerOptions {
        LayerOptions {
            compression: Compression::Gzip { level: 6 },
            pool: CompressionPool::new(1),
            mtime,
        }
    }

    #[test]
    fn a_package_key_is_its_debs_conversion_links_filters_codec_and_mtime() {
        let links: BTreeMap<String, String> = [("bin".to_owned(), "usr/bin".to_owned())].into();
        let key = |debs: &[(&str, &str)], conversion: &str, links: &BTreeMap<_, _>, mtime| {
            packages_key(debs, conversion, links, &[], &options(mtime))
        };
        let one = key(&[("curl", "aa")], "v1", &links, 1);
        assert_eq!(one, key(&[("curl", "aa")], "v1", &links, 1));
        for other in [
            key(&[("curl", "ab")], "v1", &links, 1),
            key(&[("curl", "aa")], "v2", &links, 1),
            key(&[("curl", "aa")], "v1", &BTreeMap::new(), 1),
            key(&[("curl", "aa")], "v1", &links, 2),
            key(&[("curl", "aa"), ("git", "bb")], "v1", &links, 1),
            packages_key(
                &[("curl", "aa")],
                "v1",
                &links,
                &["exclude /usr/share/doc/*".to_owned()],
                &options(1),
            ),
        ] {
            assert_ne!(one, other);
        }
    }

    #[test]
    fn a_database_key_ignores_the_order_packages_come_in() {
        let links = BTreeMap::new();
        let inputs = |packages: Vec<(&'static str, &'static str, bool)>| DatabaseInputs {
            base_status: "Package: base\n",
            base_extended_states: None,
            packages,
            configure: true,
            old_lists: &[],
            usr_links: &links,
        };
        let a = database_key(
            &inputs(vec![("a", "1", true), ("b", "2", false)]),
            &options(1),
        );
        let b = database_key(
            &inputs(vec![("b", "2", false), ("a", "1", true)]),
            &options(1),
        );
        assert_eq!(a, b);
        let c = database_key(
            &inputs(vec![("a", "1", true), ("b", "2", true)]),
            &options(1),
        );
        assert_ne!(a, c);
    }
}
