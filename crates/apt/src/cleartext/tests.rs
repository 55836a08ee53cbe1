//! The split against what gpg writes and what rPGP's own reader makes of it: the same signed
//! text (so the same signatures verify), the same text read, and malformed frames refused.

use std::time::SystemTime;

use pgp::composed::CleartextSignedMessage;
use support::apt_repo::clearsigned;

use super::*;
use crate::keyring::Keyring;

/// Texts of the shapes the framework treats specially.
const TEXTS: [&str; 4] = [
    "Origin: Debian\nSuite: bookworm\nSHA256:\n 0123 456 main/binary-amd64/Packages\n",
    // Lines that gpg dash-escapes, trailing spaces and tabs (not signed), blank lines.
    "-----BEGIN PGP SIGNATURE-----\n- a dash\nspaces at the end   \ntab\t\n\n\nlast",
    "From the start\r\nCR LF lines\r\n",
    "",
];

#[test]
fn gpg_s_cleartext_signatures_split_as_rpgp_reads_them_and_verify() {
    for text in TEXTS {
        let (signed, key) = clearsigned(text);
        let split = Cleartext::split(&signed).unwrap();
        let (reference, _) = CleartextSignedMessage::from_string(&signed).unwrap();
        assert_eq!(split.signed_text(), reference.signed_text(), "{text:?}");
        assert_eq!(
            split.signatures.as_slice(),
            reference.signatures(),
            "{text:?}"
        );
        let read_by_rpgp: String = reference
            .text()
            .lines()
            .map(|line| format!("{}\n", line.strip_prefix("- ").unwrap_or(line)))
            .collect();
        assert_eq!(split.text(), read_by_rpgp, "{text:?}");

        let keyring = Keyring::from_bytes(key.as_bytes(), "test key").unwrap();
        let verified = keyring.verify_cleartext(&signed, SystemTime::now());
        assert_eq!(verified.as_deref(), Ok(split.text().as_str()), "{text:?}");
    }
}

#[test]
fn a_changed_text_or_a_malformed_frame_is_refused() {
    let (signed, key) = clearsigned(TEXTS[0]);
    let keyring = Keyring::from_bytes(key.as_bytes(), "test key").unwrap();
    let changed = signed.replace("bookworm", "trixie");
    assert!(matches!(
        keyring.verify_cleartext(&changed, SystemTime::now()),
        Err(SignatureError::Invalid(_))
    ));
    let malformed = [
        signed.replacen("-----BEGIN PGP SIGNED MESSAGE-----", "", 1),
        signed.replacen("Hash: SHA256", "Comment: hi", 1),
        signed.replacen("Hash: SHA256", "Hash: NOSUCH", 1),
        format!("{signed}trailing text\n"),
        signed.replacen(
            "-----BEGIN PGP SIGNATURE-----",
            "-----BEGIN PGP MESSAGE-----",
            1,
        ),
        signed[..signed.find("-----END PGP SIGNATURE-----").unwrap()].to_owned(),
    ];
    for text in &malformed {
        assert!(
            matches!(Cleartext::split(text), Err(SignatureError::Malformed(_))),
            "{text}"
        );
    }
}
