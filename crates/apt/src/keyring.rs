//! OpenPGP keyrings as apt uses them (binary `.gpg` or armored `.asc`, one or many keys) and
//! the verification of an archive's signatures with them: `InRelease` (cleartext-signed) and
//! `Release` + `Release.gpg` (detached), checking what `gpgv` checks — a signature by a key or a
//! signing subkey of the keyring, with valid self- and binding signatures, neither expired nor
//! revoked at the time of the check.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag, Timestamp};

use crate::cleartext::Cleartext;

/// The public keys of one or more keyring files.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    /// Each key with the name of the file it came from, for messages.
    keys: Vec<(String, SignedPublicKey)>,
}

/// A keyring file that is not OpenPGP public keys.
#[derive(Debug, thiserror::Error)]
#[error("keyring {name}: {problem}")]
pub struct KeyringError {
    pub name: String,
    pub problem: String,
}

/// Why a signed text or a detached signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("not a valid OpenPGP signature: {0}")]
    Malformed(String),
    #[error("it carries no signature")]
    NoSignatures,
    #[error("no valid signature by a trusted key: {0}")]
    Invalid(String),
}

impl Keyring {
    /// Reads binary or ASCII-armored public keys (one or many). `name` names the file in errors
    /// and messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Keyring, KeyringError> {
        let error = |problem: String| KeyringError {
            name: name.to_owned(),
            problem,
        };
        let parsed: Vec<_> = if is_armored(bytes) {
            // A file may hold several armored blocks one after another (`gpg --export -a`
            // of several keys writes one): each is read.
            let mut parsed = Vec::new();
            for block in armored_blocks(bytes) {
                parsed.extend(
                    SignedPublicKey::from_armor_many(block)
                        .map(|(keys, _)| keys)
                        .map_err(|e| error(format!("not an armored public key block: {e}")))?,
                );
            }
            parsed
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| error(format!("not OpenPGP public keys: {e}")))?
                .collect()
        };
        let mut keys = Vec::new();
        for key in parsed {
            keys.push((
                name.to_owned(),
                key.map_err(|e| error(format!("a key cannot be read: {e}")))?,
            ));
        }
        if keys.is_empty() {
            return Err(error("holds no public key".into()));
        }
        Ok(Keyring { keys })
    }

    pub fn extend(&mut self, other: Keyring) {
        self.keys.extend(other.keys);
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The primary keys' fingerprints (upper-case hex), in the order read.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|(_, key)| fingerprint_hex(&key.primary_key))
            .collect()
    }

    /// Verifies a cleartext-signed text (`InRelease`): at least one of its signatures must be
    /// valid and made by a usable key of this keyring at `now`. Returns the signed text (dash
    /// escapes removed, `\n` line ends), never text outside the signed part.
    pub fn verify_cleartext(&self, text: &str, now: SystemTime) -> Result<String, SignatureError> {
        let message = Cleartext::split(text)?;
        self.verify_any(&message.signatures, message.signed_text().as_bytes(), now)?;
        Ok(message.text())
    }

    /// Verifies `data` (`Release`) against a detached signature (`Release.gpg`, armored or
    /// binary, possibly several signatures).
    pub fn verify_detached(
        &self,
        data: &[u8],
        signature: &[u8],
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        self.verify_any(&signatures_in(signature)?, data, now)
    }

    fn verify_any(
        &self,
        signatures: &[Signature],
        data: &[u8],
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        if signatures.is_empty() {
            return Err(SignatureError::NoSignatures);
        }
        let mut problems = Vec::new();
        for signature in signatures {
            match self.verify_one(signature, data, now) {
                Ok(()) => return Ok(()),
                Err(problem) => problems.push(problem),
            }
        }
        Err(SignatureError::Invalid(problems.join("; ")))
    }

    /// Checks one signature; the error says why no key of this keyring vouches for it.
    fn verify_one(
        &self,
        signature: &Signature,
        data: &[u8],
        now: SystemTime,
    ) -> Result<(), String> {
        let issuer = issuer_of(signature);
        if !matches!(
            signature.typ(),
            Some(SignatureType::Binary | SignatureType::Text)
        ) {
            return Err(format!(
                "the signature by {issuer} is not a document signature"
            ));
        }
        check_signature_times(signature, now).map_err(|problem| format!("{issuer}: {problem}"))?;
        let mut problems = Vec::new();
        for (name, key) in &self.keys {
            if issued_by(signature, &key.primary_key) {
                match signature.verify(&key.primary_key, data) {
                    Ok(()) => match primary_usable(key, now) {
                        Ok(()) => return Ok(()),
                        Err(problem) => problems.push(format!("{name}: key {issuer} {problem}")),
                    },
                    Err(e) => problems.push(format!("{name}: key {issuer}: bad signature ({e})")),
                }
            }
            for subkey in &key.public_subkeys {
                if !issued_by(signature, &subkey.key) {
                    continue;
                }
                match signature.verify(&subkey.key, data) {
                    Ok(()) => match primary_usable(key, now)
                        .and_then(|()| subkey_usable(key, subkey, now))
                    {
                        Ok(()) => return Ok(()),
                        Err(problem) => {
                            problems.push(format!("{name}: signing subkey {issuer} {problem}"))
                        }
                    },
                    Err(e) => {
                        problems.push(format!("{name}: subkey {issuer}: bad signature ({e})"))
                    }
                }
            }
        }
        if problems.is_empty() {
            let names: Vec<&str> = self.keys.iter().map(|(name, _)| name.as_str()).collect();
            let mut names = names;
            names.dedup();
            return Err(format!(
                "signed by key {issuer}, which is in none of the keyrings ({})",
                names.join(", ")
            ));
        }
        Err(problems.join("; "))
    }
}

/// Parses a cleartext-signed text, for callers that accept it without verification (a
/// source the user marked `trusted=yes`): the signed text, as [`Keyring::verify_cleartext`]
/// returns it.
pub fn cleartext_body(text: &str) -> Result<String, SignatureError> {
    Ok(Cleartext::split(text)?.text())
}

/// The signatures of a signature block, armored or binary (possibly several).
pub(crate) fn signatures_in(bytes: &[u8]) -> Result<Vec<Signature>, SignatureError> {
    let malformed = |error: pgp::errors::Error| SignatureError::Malformed(error.to_string());
    let parsed = if is_armored(bytes) {
        DetachedSignature::from_armor_many(bytes).map(|(signatures, _)| signatures)
    } else {
        DetachedSignature::from_bytes_many(bytes)
    }
    .map_err(malformed)?;
    let mut signatures = Vec::new();
    for signature in parsed {
        signatures.push(signature.map_err(malformed)?.signature);
    }
    Ok(signatures)
}

fn is_armored(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN PGP")
}

fn fingerprint_hex(key: &impl KeyDetails) -> String {
    hex::encode_upper(key.fingerprint().as_bytes())
}

/// The signature's issuer as messages show it: its fingerprint, else its key ID.
fn issuer_of(signature: &Signature) -> String {
    if let Some(fingerprint) = signature.issuer_fingerprint().first() {
        return hex::encode_upper(fingerprint.as_bytes());
    }
    match signature.issuer_key_id().first() {
        Some(id) => hex::encode_upper(id.as_ref()),
        None => "(no issuer)".into(),
    }
}

/// Whether `key` is the signature's issuer (by fingerprint or key ID; a signature naming no
/// issuer is tried with every key).
fn issued_by(signature: &Signature, key: &impl KeyDetails) -> bool {
    let (ids, fingerprints) = (signature.issuer_key_id(), signature.issuer_fingerprint());
    if ids.is_empty() && fingerprints.is_empty() {
        return true;
    }
    ids.iter().any(|id| **id == key.legacy_key_id())
        || fingerprints.iter().any(|fp| **fp == key.fingerprint())
}

fn time_of(timestamp: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(timestamp.as_secs()))
}

fn date(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

/// The signature has a creation time and has not expired by `now`.
fn check_signature_times(signature: &Signature, now: SystemTime) -> Result<(), String> {
    let created = signature
        .created()
        .map(time_of)
        .ok_or("the signature has no creation time")?;
    if let Some(expires_after) = signature
        .signature_expiration_time()
        .filter(|d| d.as_secs() > 0)
    {
        let expires = created + Duration::from(expires_after);
        if expires <= now {
            return Err(format!("the signature expired on {}", date(expires)));
        }
    }
    Ok(())
}

/// When a key bound by `binding` (made at its creation time `created`) expires, if it does.
fn expiry(created: Timestamp, binding: &Signature) -> Option<SystemTime> {
    binding
        .key_expiration_time()
        .filter(|d| d.as_secs() > 0)
        .map(|d| time_of(created) + Duration::from(d))
}

fn newest<'a>(signatures: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    signatures.max_by_key(|signature| signature.created().map_or(0, Timestamp::as_secs))
}

/// The primary key is not revoked, has a valid self-signature (the newest one rules), is not
/// expired at `now` and, when its flags say anything, may sign.
fn primary_usable(key: &SignedPublicKey, now: SystemTime) -> Result<(), String> {
    let primary = &key.primary_key;
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|revocation| revocation.verify_key(primary).is_ok())
    {
        return Err("is revoked".into());
    }
    let direct = key
        .details
        .direct_signatures
        .iter()
        .filter(|signature| signature.verify_key(primary).is_ok());
    let certifications = key.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(|signature| {
            issued_by(signature, primary)
                && signature
                    .verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
        })
    });
    let self_signature = newest(direct.chain(certifications))
        .ok_or("has no valid self-signature (a broken or stripped key)")?;
    if let Some(expires) = expiry(primary.created_at(), self_signature) {
        if expires <= now {
            return Err(format!("expired on {}", date(expires)));
        }
    }
    let flags = self_signature.key_flags();
    let has_flags = flags.certify()
        || flags.sign()
        || flags.encrypt_comms()
        || flags.encrypt_storage()
        || flags.authentication();
    if has_flags && !flags.sign() {
        return Err("is not a signing key (its key flags do not allow signing)".into());
    }
    Ok(())
}

/// The subkey has a valid binding signature from the primary (the newest one rules) that lets it
/// sign, with a valid back-signature, is not revoked and not expired at `now`.
fn subkey_usable(
    key: &SignedPublicKey,
    subkey: &SignedPublicSubKey,
    now: SystemTime,
) -> Result<(), String> {
    let primary = &key.primary_key;
    let verified = |signature: &&Signature| {
        signature
            .verify_subkey_binding(primary, &subkey.key)
            .is_ok()
    };
    if subkey
        .signatures
        .iter()
        .filter(|signature| signature.typ() == Some(SignatureType::SubkeyRevocation))
        .any(|signature| verified(&signature))
    {
        return Err("is revoked".into());
    }
    let binding = newest(
        subkey
            .signatures
            .iter()
            .filter(|signature| signature.typ() == Some(SignatureType::SubkeyBinding))
            .filter(verified),
    )
    .ok_or("has no valid binding signature from its primary key")?;
    if !binding.key_flags().sign() {
        return Err("is not bound for signing".into());
    }
    let back_signed = binding.embedded_signature().is_some_and(|back| {
        back.verify_primary_key_binding(&subkey.key, primary)
            .is_ok()
    });
    if !back_signed {
        return Err("has no valid back-signature (primary key binding)".into());
    }
    if let Some(expires) = expiry(subkey.key.created_at(), binding) {
        if expires <= now {
            return Err(format!("expired on {}", date(expires)));
        }
    }
    Ok(())
}

/// The armored blocks of a text, each from its `-----BEGIN` line.
fn armored_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----";
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&at| bytes[at..].starts_with(BEGIN))
        .collect();
    if starts.is_empty() {
        return vec![bytes];
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| &bytes[start..starts.get(n + 1).copied().unwrap_or(bytes.len())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

    #[test]
    fn a_binary_keyring_and_its_armored_export_hold_the_same_keys() {
        let bytes = std::fs::read(HOST_KEYRING)
            .unwrap_or_else(|e| panic!("{HOST_KEYRING}: {e} (install debian-archive-keyring)"));
        let binary = Keyring::from_bytes(&bytes, HOST_KEYRING).unwrap();
        assert!(
            binary.fingerprints().len() >= 3,
            "{:?}",
            binary.fingerprints()
        );
        let mut armored_text = Vec::new();
        for (_, key) in &binary.keys {
            armored_text.extend(
                key.to_armored_bytes(Default::default())
                    .expect("armor a key"),
            );
            armored_text.push(b'\n');
        }
        let armored = Keyring::from_bytes(&armored_text, "export.asc").unwrap();
        assert_eq!(armored.fingerprints(), binary.fingerprints());
        let mut both = Keyring::default();
        assert!(both.is_empty());
        both.extend(binary);
        both.extend(armored);
        assert_eq!(both.keys.len() % 2, 0);
    }

    #[test]
    fn garbage_is_not_a_keyring() {
        let err = Keyring::from_bytes(b"not a key", "x.gpg").unwrap_err();
        assert!(err.to_string().starts_with("keyring x.gpg: "), "{err}");
        let err = Keyring::from_bytes(
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "y.asc",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("keyring y.asc: "), "{err}");
    }
}
