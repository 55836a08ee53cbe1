//! Splitting a cleartext-signed text (`InRelease`) along the OpenPGP cleartext signature
//! framework (RFC 9580 §7): the armor headers, the dash-escaped text and the signature block,
//! and the text in the form its signatures were made over. rPGP's own reader searches all the
//! text read so far after every line it reads, which for an archive's `InRelease` (thousands
//! of lines) was most of the time verifying it took; its signature parser is used as is
//! ([`crate::keyring::signatures_in`], shared with detached signatures).

use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature;

use crate::keyring::{signatures_in, SignatureError};

const MESSAGE_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_HEADER: &str = "-----BEGIN PGP SIGNATURE-----";
const SIGNATURE_FOOTER: &str = "-----END PGP SIGNATURE-----";

/// A cleartext-signed text, split.
pub(crate) struct Cleartext<'a> {
    /// The text between the armor headers and the signature block, still dash-escaped, its
    /// last line break (part of the framework) left out.
    escaped: &'a str,
    pub signatures: Vec<Signature>,
}

impl<'a> Cleartext<'a> {
    pub fn split(text: &'a str) -> Result<Cleartext<'a>, SignatureError> {
        let malformed = |problem: &str| SignatureError::Malformed(problem.to_owned());
        let text = text.trim_start_matches(['\n', '\r', ' ', '\t']);
        let (first, mut rest) = text
            .split_once('\n')
            .ok_or_else(|| malformed("no cleartext signature header"))?;
        if first.trim_end() != MESSAGE_HEADER {
            return Err(malformed(
                "it does not start with a cleartext signature header",
            ));
        }
        // Armor headers up to an empty line: only `Hash:`, naming known algorithms.
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or_else(|| malformed("the armor headers do not end"))?;
            rest = after;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, values) = line
                .split_once(": ")
                .ok_or_else(|| malformed("an armor header without a value"))?;
            if name != "Hash" {
                return Err(malformed(&format!("unexpected armor header {name:?}")));
            }
            for value in values.split(',') {
                value
                    .trim()
                    .parse::<HashAlgorithm>()
                    .map_err(|_| malformed(&format!("unknown hash algorithm {value:?}")))?;
            }
        }
        // The text ends at the first line that starts with dashes: a signed line starting with
        // one is dash-escaped (`- -`), so this is the signature block.
        let (escaped, block) = if rest.starts_with("-----") {
            ("", rest)
        } else {
            let at = rest
                .find("\n-----")
                .ok_or_else(|| malformed("no signature block"))?;
            let escaped = &rest[..at];
            (
                escaped.strip_suffix('\r').unwrap_or(escaped),
                &rest[at + 1..],
            )
        };
        if !block.starts_with(SIGNATURE_HEADER) {
            return Err(malformed("the text is not followed by a signature block"));
        }
        let end = block
            .find(SIGNATURE_FOOTER)
            .ok_or_else(|| malformed("the signature block does not end"))?
            + SIGNATURE_FOOTER.len();
        if !block[end..].trim().is_empty() {
            return Err(malformed("unexpected data after the signature block"));
        }
        let signatures = signatures_in(&block.as_bytes()[..end])?;
        Ok(Cleartext {
            escaped,
            signatures,
        })
    }

    /// What the signatures are over: the dash escapes and each line's trailing spaces and
    /// tabs removed, lines joined by CR LF.
    pub fn signed_text(&self) -> String {
        if self.escaped.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = self
            .escaped
            .split('\n')
            .map(|line| {
                unescaped(line.strip_suffix('\r').unwrap_or(line)).trim_end_matches([' ', '\t'])
            })
            .collect();
        lines.join("\r\n")
    }

    /// The text as its reader wants it: dash escapes removed, each line ended by `\n`.
    pub fn text(&self) -> String {
        let mut text = String::with_capacity(self.escaped.len() + 1);
        for line in self.escaped.lines() {
            text.push_str(unescaped(line));
            text.push('\n');
        }
        text
    }
}

fn unescaped(line: &str) -> &str {
    line.strip_prefix("- ").unwrap_or(line)
}

#[cfg(test)]
mod tests;
