//! The `optimization` section: the layer budget (`max_layers`) and how many layers are built at
//! once (`parallel`).

use std::num::NonZeroUsize;

use crate::error::{Fault, Problem};
use crate::position::Located;
use crate::read::{found, integer, key, Fields};
use crate::yaml::{Node, Value};

/// Docker's limit on the layers of one image, base included.
pub const MAX_LAYERS_LIMIT: u32 = 125;

/// The `optimization` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Optimization {
    /// The most layers the image may have, base included (1 to [`MAX_LAYERS_LIMIT`]); `None`:
    /// the default budget.
    pub max_layers: Option<Located<u32>>,
    pub parallel: Parallel,
}

/// How many layers are built at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parallel {
    /// `true` (the default): as many as there are cores.
    #[default]
    Auto,
    /// `false`: one at a time.
    Off,
    /// `N`: up to N at once.
    Layers(NonZeroUsize),
}

impl Parallel {
    /// The number of layers built at once on a machine with `cores` cores.
    pub fn layers_at_once(self, cores: NonZeroUsize) -> NonZeroUsize {
        match self {
            Parallel::Auto => cores,
            Parallel::Off => NonZeroUsize::MIN,
            Parallel::Layers(layers) => layers,
        }
    }
}

const OPTIMIZATION_KEYS: &[&str] = &["max_layers", "parallel"];

/// Reads the `optimization` section.
pub(crate) fn read(node: &Node) -> Result<Optimization, Fault> {
    let fields = Fields::of(
        node,
        &key("optimization"),
        "the optimization section",
        OPTIMIZATION_KEYS,
    )?;
    let max_layers = fields.get("max_layers").map(max_layers).transpose()?;
    let parallel = fields.get("parallel").map(parallel).transpose()?;
    Ok(Optimization {
        max_layers,
        parallel: parallel.unwrap_or_default(),
    })
}

fn max_layers(node: &Node) -> Result<Located<u32>, Fault> {
    let value = integer(node, &key("max_layers"))?;
    match u32::try_from(value) {
        Ok(layers) if (1..=MAX_LAYERS_LIMIT).contains(&layers) => Ok(Located {
            value: layers,
            at: node.at,
        }),
        _ => Err(Fault::new(node.at, Problem::MaxLayers(value))),
    }
}

fn parallel(node: &Node) -> Result<Parallel, Fault> {
    let refuse = |what: String| Err(Fault::new(node.at, Problem::Parallel(what)));
    let Value::Scalar { text, plain: true } = &node.value else {
        return refuse(found(node).to_string());
    };
    match text.as_str() {
        "true" | "True" | "TRUE" => Ok(Parallel::Auto),
        "false" | "False" | "FALSE" => Ok(Parallel::Off),
        _ => match text.parse::<usize>().ok().and_then(NonZeroUsize::new) {
            Some(layers) => Ok(Parallel::Layers(layers)),
            None => refuse(text.clone()),
        },
    }
}
