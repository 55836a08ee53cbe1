//! [`Converted`] facts written down and read back, so that a build can keep them by the `.deb`'s
//! SHA256: the dpkg database of a later build then needs neither the `.deb` nor another pass
//! over its `data.tar`. The text is line-based (dpkg allows no newline in a path):
//!
//! ```text
//! deb-facts-v1
//! scripts 1
//! postinst
//! conffiles 1
//! /etc/hello.conf 0123…
//! paths 3
//! /.
//! /usr
//! /usr/bin/hello
//! control
//! Package: hello
//! …
//! ```

use crate::control;

use super::Converted;

/// The first line of the text; bump it when [`Converted`] changes.
const HEADER: &str = "deb-facts-v1";

/// The facts as text for [`parse`].
pub fn to_text(facts: &Converted) -> String {
    let mut text = format!("{HEADER}\nscripts {}\n", facts.scripts.len());
    for script in &facts.scripts {
        text.push_str(&format!("{script}\n"));
    }
    text.push_str(&format!("conffiles {}\n", facts.conffiles.len()));
    for (path, md5) in &facts.conffiles {
        text.push_str(&format!("{path} {md5}\n"));
    }
    text.push_str(&format!("paths {}\n", facts.paths.len()));
    for path in &facts.paths {
        text.push_str(&format!("{path}\n"));
    }
    text.push_str("control\n");
    text.push_str(&facts.control.to_string());
    text
}

/// The facts [`to_text`] wrote; `None` for anything else (another format's, or a cut file),
/// which the caller treats as not known.
pub fn parse(text: &str) -> Option<Converted> {
    let mut lines = text.split('\n');
    if lines.next()? != HEADER {
        return None;
    }
    let mut section = |name: &str| -> Option<Vec<&str>> {
        let count: usize = lines
            .next()?
            .strip_prefix(name)?
            .strip_prefix(' ')?
            .parse()
            .ok()?;
        (0..count).map(|_| lines.next()).collect()
    };
    let scripts = section("scripts")?.into_iter().map(str::to_owned).collect();
    let conffiles = section("conffiles")?
        .into_iter()
        .map(|line| {
            let (path, md5) = line.rsplit_once(' ')?;
            Some((path.to_owned(), md5.to_owned()))
        })
        .collect::<Option<_>>()?;
    let paths = section("paths")?.into_iter().map(str::to_owned).collect();
    if lines.next()? != "control" {
        return None;
    }
    let rest: Vec<&str> = lines.collect();
    let mut paragraphs = control::parse(&rest.join("\n")).ok()?;
    (paragraphs.len() == 1).then(|| Converted {
        control: paragraphs.remove(0),
        conffiles,
        scripts,
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Converted {
        Converted {
            control: control::parse("Package: hello\nVersion: 1\nDescription: hi\n more\n")
                .unwrap()
                .remove(0),
            conffiles: vec![("/etc/a b.conf".into(), "0123abcd".into())],
            scripts: vec!["postinst".into(), "prerm".into()],
            paths: vec!["/.".into(), "/etc".into(), "/etc/a b.conf".into()],
        }
    }

    #[test]
    fn facts_read_back_as_written() {
        assert_eq!(parse(&to_text(&facts())), Some(facts()));
        let empty = Converted {
            conffiles: Vec::new(),
            scripts: Vec::new(),
            paths: Vec::new(),
            ..facts()
        };
        assert_eq!(parse(&to_text(&empty)), Some(empty));
    }

    #[test]
    fn cut_or_foreign_texts_are_not_facts() {
        let text = to_text(&facts());
        for cut in [
            10,
            text.find("paths").unwrap(),
            text.find("control").unwrap(),
        ] {
            assert_eq!(parse(&text[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse(&text.replace(HEADER, "deb-facts-v0")), None);
        assert_eq!(parse(&text.replace("conffiles 1", "conffiles 7")), None);
    }
}
