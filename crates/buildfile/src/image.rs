//! The `image` section: the base to build on, the target to write, the platform to take from a
//! multi-platform base. All are optional here, as the `layerize build` flags may give them.
//! A relative `oci:` layout directory resolves against the build file's directory, as sources do.

use layerize_manifest::Platform;
use layerize_registry::reference::ImageRef;

use crate::context::Context;
use crate::error::{Fault, Problem};
use crate::position::Located;
use crate::read::{key, string, Fields};
use crate::yaml::Node;

/// The `image` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub base: Option<Located<ImageRef>>,
    pub target: Option<Located<ImageRef>>,
    pub platform: Option<Located<Platform>>,
}

const IMAGE_KEYS: &[&str] = &["base", "target", "platform"];

/// Reads the `image` section.
pub(crate) fn read(node: &Node, context: &Context) -> Result<Image, Fault> {
    let fields = Fields::of(node, &key("image"), "the image section", IMAGE_KEYS)?;
    let reference = |name: &str| {
        fields
            .get(name)
            .map(|node| {
                let text = string(node, &key(name))?;
                let reference =
                    ImageRef::parse(&text).map_err(|error| invalid(node, name, error))?;
                Ok(Located {
                    value: against(reference, context),
                    at: node.at,
                })
            })
            .transpose()
    };
    let platform = fields
        .get("platform")
        .map(|node| {
            let text = string(node, &key("platform"))?;
            let platform =
                Platform::parse(&text).map_err(|error| invalid(node, "platform", error))?;
            Ok(Located {
                value: platform,
                at: node.at,
            })
        })
        .transpose()?;
    Ok(Image {
        base: reference("base")?,
        target: reference("target")?,
        platform,
    })
}

/// A layout's relative directory taken against the build file's directory.
fn against(reference: ImageRef, context: &Context) -> ImageRef {
    match reference {
        ImageRef::Layout { path, tag } if path.is_relative() => ImageRef::Layout {
            path: context.dir().join(path),
            tag,
        },
        other => other,
    }
}

fn invalid(node: &Node, key: &str, error: impl std::fmt::Display) -> Fault {
    let problem = Problem::InvalidValue {
        key: key.to_owned(),
        message: error.to_string(),
    };
    Fault::new(node.at, problem)
}
