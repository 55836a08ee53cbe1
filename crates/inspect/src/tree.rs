//! `layers --tree` for people: the layer chain as a table, bottom layer first.

use crate::chain::ChainLayer;
use crate::text::{bytes, short_digest, truncated, Align, Table};

/// `created_by` is cut to this many characters in the table (`--json` has it whole).
const CREATED_BY_WIDTH: usize = 60;

/// The packages of a batch or group layer are listed this wide in the table (`--json` has them
/// all).
const PACKAGES_WIDTH: usize = 40;

/// The chain as a table: index, name, the packages it holds (for a batch or group; one
/// package's layer is named by it), origin, size, digest, key, `created_by`.
pub fn render(image: &str, digest: &str, chain: &[ChainLayer]) -> String {
    let mut table = Table::new(&[
        ("#", Align::Right),
        ("NAME", Align::Left),
        ("PACKAGES", Align::Left),
        ("ORIGIN", Align::Left),
        ("SIZE", Align::Right),
        ("DIGEST", Align::Left),
        ("KEY", Align::Left),
        ("CREATED BY", Align::Left),
    ]);
    for layer in chain {
        let origin = match &layer.reused_from {
            Some(from) => format!("{} ({from})", layer.origin.name()),
            None => layer.origin.name().to_owned(),
        };
        table.row(vec![
            layer.index.to_string(),
            layer.name.clone(),
            if layer.members.is_empty() {
                "-".to_owned()
            } else {
                truncated(&layer.members.join(","), PACKAGES_WIDTH)
            },
            origin,
            bytes(layer.size),
            short_digest(layer.digest.as_str()),
            layer.key.as_deref().map_or("-".to_owned(), short_digest),
            truncated(layer.created_by.as_deref().unwrap_or("-"), CREATED_BY_WIDTH),
        ]);
    }
    let total: u64 = chain.iter().map(|layer| layer.size).sum();
    format!(
        "{image} ({digest}): {} layers, {}\n{}",
        chain.len(),
        bytes(total),
        table.render()
    )
}
