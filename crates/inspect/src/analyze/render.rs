//! `layers --analyze` for people: the totals, a table of layers, then per layer the files that
//! later layers overwrite, delete or hide, and the paths that waste the most.

use std::fmt::Write;

use crate::analyze::waste::Fate;
use crate::analyze::Analysis;
use crate::text::{bytes, Align, Table};

/// Lost files listed per layer, and most wasteful paths listed (`--json` has them all).
const LISTED: usize = 10;

pub fn render(analysis: &Analysis) -> String {
    let totals = &analysis.totals;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}): {} layers, {} compressed, {} uncompressed",
        analysis.image,
        analysis.digest,
        analysis.layers.len(),
        bytes(totals.compressed_bytes),
        bytes(totals.uncompressed_bytes),
    );
    let share = match totals.file_bytes {
        0 => 0.0,
        all => 100.0 * totals.wasted_bytes as f64 / all as f64,
    };
    let _ = writeln!(
        out,
        "wasted: {} ({share:.1}% of {} of file content): copies of files that later layers overwrite, delete or hide",
        bytes(totals.wasted_bytes),
        bytes(totals.file_bytes),
    );
    if let Some(rate) = &analysis.cache_hit_rate {
        let percent = rate
            .rate
            .map_or("n/a".to_owned(), |rate| format!("{:.0}%", 100.0 * rate));
        let _ = writeln!(
            out,
            "cache hit rate of the build: {percent} ({} reused, {} built)",
            rate.reused, rate.built
        );
    }
    if totals.unread_layers > 0 {
        let _ = writeln!(
            out,
            "{} non-distributable layer(s) not read: their files are not counted",
            totals.unread_layers
        );
    }
    out.push('\n');

    let mut table = Table::new(&[
        ("#", Align::Right),
        ("NAME", Align::Left),
        ("ORIGIN", Align::Left),
        ("COMPRESSED", Align::Right),
        ("UNCOMPRESSED", Align::Right),
        ("FILES", Align::Right),
        ("WASTED", Align::Right),
    ]);
    for layer in &analysis.layers {
        table.row(vec![
            layer.index.to_string(),
            layer.name.clone(),
            layer.origin.name().to_owned(),
            bytes(layer.compressed_bytes),
            layer
                .uncompressed_bytes
                .map_or("not read".to_owned(), bytes),
            layer.files.to_string(),
            bytes(layer.wasted_bytes),
        ]);
    }
    out.push_str(&table.render());

    for layer in analysis
        .layers
        .iter()
        .filter(|layer| !layer.lost.is_empty())
    {
        let _ = writeln!(
            out,
            "\nlayer {} ({}): {} file(s) that later layers overwrite or remove, {}",
            layer.index,
            layer.name,
            layer.lost.len(),
            bytes(layer.wasted_bytes)
        );
        let mut lost = Table::new(&[
            ("  PATH", Align::Left),
            ("SIZE", Align::Right),
            ("FATE", Align::Left),
        ]);
        for copy in layer.lost.iter().take(LISTED) {
            let fate = match copy.fate {
                Fate::Overwritten => "overwritten",
                Fate::Deleted => "deleted",
                Fate::Hidden => "hidden",
            };
            lost.row(vec![
                format!("  /{}", copy.path),
                bytes(copy.size),
                format!("{fate} by layer {}", copy.by_layer),
            ]);
        }
        out.push_str(&lost.render());
        if layer.lost.len() > LISTED {
            let _ = writeln!(out, "  … and {} more", layer.lost.len() - LISTED);
        }
    }

    if !analysis.paths.is_empty() {
        out.push_str("\nmost wasted paths:\n");
        let mut paths = Table::new(&[
            ("  PATH", Align::Left),
            ("COPIES", Align::Right),
            ("WASTED", Align::Right),
            ("SURVIVES IN", Align::Left),
        ]);
        for path in analysis.paths.iter().take(LISTED) {
            paths.row(vec![
                format!("  /{}", path.path),
                path.copies.to_string(),
                bytes(path.wasted_bytes),
                path.surviving_layer
                    .map_or("deleted".to_owned(), |layer| format!("layer {layer}")),
            ]);
        }
        out.push_str(&paths.render());
    }
    out
}
