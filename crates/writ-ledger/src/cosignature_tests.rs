//! Witness cosignatures (C2SP tlog-cosignature v1): the layout of the spec's own example, the
//! signed message, key ids, and every way a forged cosignature must fail.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Verifier as _;
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, NoteError};
use crate::cosignature::*;

fn checkpoint() -> Checkpoint {
    Checkpoint { origin: "writ/test".into(), size: 42, root: [7u8; 32] }
}

fn witness(seed: u8) -> Cosigner {
    Cosigner::from_seed("witness.example/w1", [seed; 32]).unwrap()
}

/// The example cosignature of c2sp.org/tlog-cosignature decodes as key id ‖ big-endian
/// timestamp ‖ signature, and its timestamp is the `time` line the spec shows for it.
#[test]
fn the_spec_example_line_has_the_layout_we_write() {
    let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
    let (name, id, timestamp, signature) = parse_line(line).unwrap();
    assert_eq!(name, "witness.example.com/w1");
    assert_eq!(id, [0x8d, 0x66, 0xcf, 0x3f]);
    assert_eq!(timestamp, 1_679_315_147, "the spec's message says `time 1679315147`");
    assert_eq!(signature.len(), 64);
}

#[test]
fn a_cosignature_verifies_over_the_spec_message_and_only_that() {
    let w = witness(1);
    let line = w.cosign(&checkpoint(), 1_700_000_000);
    assert!(line.starts_with("\u{2014} witness.example/w1 ") && line.ends_with('\n'), "{line}");
    assert_eq!(w.verifier().check(&checkpoint(), &line).unwrap(), Some(1_700_000_000));
    // Checked independently: the signature is over "cosignature/v1", the time line and the
    // checkpoint body, and the key id is SHA-256(name ‖ 0x0A ‖ 0x04 ‖ key)[:4].
    let (_, id, _, signature) = parse_line(&line).unwrap();
    let vkey = B64.decode(w.verifier().to_text().rsplit('+').next().unwrap()).unwrap();
    assert_eq!(vkey[0], 0x04);
    let public: [u8; 32] = vkey[1..].try_into().unwrap();
    let mut hasher = Sha256::new();
    hasher.update(b"witness.example/w1\n\x04");
    hasher.update(public);
    assert_eq!(id, hasher.finalize()[..4]);
    let message = format!("cosignature/v1\ntime 1700000000\n{}", checkpoint().body());
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    key.verify(message.as_bytes(), &ed25519_dalek::Signature::from_slice(&signature).unwrap()).unwrap();

    let other_root = Checkpoint { root: [8u8; 32], ..checkpoint() };
    assert!(matches!(w.verifier().check(&other_root, &line), Err(NoteError::BadSignature(_))));
    let other_size = Checkpoint { size: 43, ..checkpoint() };
    assert!(matches!(w.verifier().check(&other_size, &line), Err(NoteError::BadSignature(_))));
    // The timestamp is signed: moving it breaks the signature.
    let (head, blob) = line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = B64.decode(blob).unwrap();
    raw[11] ^= 1;
    let moved = format!("{head} {}\n", B64.encode(raw));
    assert!(matches!(w.verifier().check(&checkpoint(), &moved), Err(NoteError::BadSignature(_))));
    // Another witness's line is not this witness's business.
    let stranger = witness(2).cosign(&checkpoint(), 1);
    assert_eq!(w.verifier().check(&checkpoint(), &stranger).unwrap(), None);
}

#[test]
fn keys_round_trip_and_a_checkpoint_key_is_not_a_cosigner_key() {
    let w = witness(3);
    let parsed = Cosigner::parse(&w.to_private_text()).unwrap();
    assert_eq!(parsed.verifier(), w.verifier());
    assert_eq!(CosignatureVerifier::parse(&w.verifier().to_text()).unwrap(), w.verifier());
    assert!(!format!("{w:?}").contains(&w.to_private_text()[30..]), "the private key is never printed");
    let note_key = crate::checkpoint::NoteSigner::from_seed("witness.example/w1", [3; 32]).unwrap();
    assert!(CosignatureVerifier::parse(&note_key.verifier().to_text()).is_err(), "type 0x01 refused");
    let wrong_id = w.verifier().to_text().replacen('+', "+0", 1);
    assert!(CosignatureVerifier::parse(&wrong_id).is_err());
}

#[test]
fn a_quorum_counts_each_trusted_witness_once() {
    let (a, b, c) = (
        witness(4),
        Cosigner::from_seed("w2", [5; 32]).unwrap(),
        Cosigner::from_seed("w3", [6; 32]).unwrap(),
    );
    let lines = [
        a.cosign(&checkpoint(), 10),
        a.cosign(&checkpoint(), 11),
        b.cosign(&checkpoint(), 12),
        c.cosign(&checkpoint(), 13),
    ]
    .concat();
    let trusted = [a.verifier(), b.verifier()];
    let found = cosigned_by(&checkpoint(), &lines, &trusted).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|(key, ts)| *key == a.verifier().to_text() && *ts == 10));
    let forged =
        lines.replace(&b.cosign(&checkpoint(), 12), &b.cosign(&Checkpoint { size: 1, ..checkpoint() }, 12));
    assert!(cosigned_by(&checkpoint(), &forged, &trusted).is_err(), "a trusted witness's bad line fails");
}
