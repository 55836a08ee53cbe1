//! Output for people: byte counts in binary units and tables with aligned columns.

/// `512 B`, `1.5 KiB`, `2.0 GiB`: binary units, one decimal above bytes.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A digest shortened for a table: `sha256:` and the first 12 hex digits.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ => digest.to_owned(),
    }
}

/// Text cut to `max` characters, ending in `…` when cut.
pub fn truncated(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// How a column is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table: a header row and rows of cells, printed with columns padded to their widest cell
/// and two spaces between them; the last column is never padded.
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|(name, _)| name.clone()).collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|column| {
                std::iter::once(&header)
                    .chain(&self.rows)
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len() - 1;
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                let pad = widths[column] - cell.chars().count();
                let right = self.columns[column].1 == Align::Right;
                if right {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                line.push_str(cell);
                if column < last {
                    if !right {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    line.push_str("  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn digests_and_text_are_shortened_for_tables() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&digest), "sha256:abababababab");
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
        assert_eq!(truncated("abcdef", 4), "abc…");
        assert_eq!(truncated("abc", 4), "abc");
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&[
            ("#", Align::Right),
            ("NAME", Align::Left),
            ("X", Align::Left),
        ]);
        table.row(vec!["0".into(), "base[0]".into(), "a".into()]);
        table.row(vec!["10".into(), "app".into(), "".into()]);
        assert_eq!(table.render(), " #  NAME     X\n 0  base[0]  a\n10  app\n");
    }
}
