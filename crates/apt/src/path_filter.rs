//! The base's dpkg path filters (`path-exclude` and `path-include` in `/etc/dpkg/dpkg.cfg.d/*`
//! and `/etc/dpkg/dpkg.cfg`): the paths of a package that dpkg on that base would not unpack.
//! Slim and minimised images (`debian:*-slim`, `ubuntu`) set them to leave documentation, man
//! pages and locales out, and `apt-get install` there keeps doing so; a package's layer does the
//! same. As in dpkg, a filtered path stays in the package's `.list` and `md5sums`.
//!
//! dpkg's rules, as `dpkg(1)` and its filter code give them: the configuration files are read in
//! that order (the directory's files by name, only names of letters, digits, `_` and `-`); each
//! pattern is a shell glob matched against the whole path (`/usr/share/doc/x/README`), where `*`
//! and `?` also match `/`; the last pattern that matches decides; and a directory or symlink a
//! pattern excludes is kept when an include pattern's literal start (up to its first wildcard,
//! trailing `/` dropped) is where its path starts, so that what the include brings back has its
//! parents.

/// One `path-exclude` or `path-include` line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Rule {
    pattern: String,
    include: bool,
}

/// The base's path filters, in dpkg's order. Empty: every path is unpacked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathFilters {
    rules: Vec<Rule>,
}

/// The configuration directory, whose files dpkg reads first.
pub const CONFIG_DIR: &str = "etc/dpkg/dpkg.cfg.d";
/// The configuration file dpkg reads after the directory.
pub const CONFIG_FILE: &str = "etc/dpkg/dpkg.cfg";

/// Whether dpkg reads the file `name` of [`CONFIG_DIR`].
pub fn is_config_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

impl PathFilters {
    /// The filters of dpkg configuration `texts`, in the order dpkg reads them. Other options
    /// are not layerize's business and are left alone, as are lines dpkg would refuse.
    pub fn from_config<'a>(texts: impl IntoIterator<Item = &'a str>) -> PathFilters {
        let mut rules = Vec::new();
        for text in texts {
            for line in text.lines() {
                let line = line.trim_end();
                if line.starts_with('#') {
                    continue;
                }
                let name_end = line
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .unwrap_or(line.len());
                let include = match &line[..name_end] {
                    "path-exclude" => false,
                    "path-include" => true,
                    _ => continue,
                };
                let rest = &line[name_end..];
                let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
                if let Some(pattern) = unquoted(rest).filter(|pattern| !pattern.is_empty()) {
                    rules.push(Rule {
                        pattern: pattern.to_owned(),
                        include,
                    });
                }
            }
        }
        PathFilters { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether dpkg leaves out the package path `path` (`/usr/share/doc/x/README`);
    /// `dir_or_symlink` for a directory or a symlink entry.
    pub fn skips(&self, path: &str, dir_or_symlink: bool) -> bool {
        let mut skip = false;
        for rule in &self.rules {
            if glob_matches(rule.pattern.as_bytes(), path.as_bytes()) {
                skip = !rule.include;
            }
        }
        if !skip || !dir_or_symlink {
            return skip;
        }
        // Kept when an include may bring back something under it.
        !self
            .rules
            .iter()
            .filter(|rule| rule.include)
            .any(|rule| starts_like(path, &rule.pattern))
    }

    /// One line per rule (`exclude PATTERN`), for the keys of the layers they shape.
    pub fn key_lines(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|rule| {
                let verb = if rule.include { "include" } else { "exclude" };
                format!("{verb} {}", rule.pattern)
            })
            .collect()
    }
}

/// A value with one pair of surrounding quotes (`"…"` or `'…'`) removed; `None` when a quote
/// opens without closing.
fn unquoted(value: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote) {
            return inner.strip_suffix(quote);
        }
    }
    Some(value)
}

/// dpkg's test for keeping an excluded directory: `path` and the literal start of `pattern`
/// (before its first `*`, `?`, `[` or `\`, trailing `/` dropped) agree over that start's length,
/// a path shorter than it never agreeing.
fn starts_like(path: &str, pattern: &str) -> bool {
    let literal_end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    let literal = pattern[..literal_end].trim_end_matches('/');
    path.as_bytes().starts_with(literal.as_bytes())
}

/// `fnmatch(3)` with no flags: `*` any bytes (`/` too), `?` any one byte, `[...]` a set (`!` or
/// `^` first negates, `a-z` ranges, `]` first is literal), `\` quotes the next byte. A `[`
/// without its `]` is a literal `[`.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    // Backtracking to the last `*` suffices: it can always take more of the text.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match set_matches(&pattern[p..], text[t]) {
                Some((true, len)) => Some(p + len),
                Some((false, _)) => None,
                None => (text[t] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&literal) => (literal == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((after_star, from))) => {
                p = after_star;
                t = from + 1;
                star = Some((after_star, from + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// Whether the set at the start of `pattern` (`[...]`) holds `byte`, and the set's length;
/// `None` when it has no closing `]`.
fn set_matches(pattern: &[u8], byte: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let mut low = *pattern.get(i)?;
        if low == b']' && !first {
            return Some((found != negated, i + 1));
        }
        first = false;
        if low == b'\\' {
            i += 1;
            low = *pattern.get(i)?;
        }
        let mut high = low;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&b| b != b']') {
            high = pattern[i + 2];
            if high == b'\\' {
                high = *pattern.get(i + 3)?;
                i += 1;
            }
            i += 2;
        }
        if (low..=high).contains(&byte) {
            found = true;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests;
