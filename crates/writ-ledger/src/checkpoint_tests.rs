//! Signed checkpoints: round trip, and every way a forged or damaged note must fail.

use crate::checkpoint::*;

fn signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::from_seed(name, [seed; 32]).unwrap()
}

fn checkpoint() -> Checkpoint {
    Checkpoint { origin: "writ/test".into(), size: 42, root: [7u8; 32] }
}

#[test]
fn a_signed_checkpoint_opens_with_its_key_and_keys_round_trip() {
    let signer = signer("writ/test", 1);
    let note = signer.sign(&checkpoint());
    assert!(
        note.starts_with(
            "writ/test\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} writ/test "
        ),
        "{note}"
    );
    assert_eq!(open(&note, &[signer.verifier()]).unwrap(), checkpoint());
    let verifier = NoteVerifier::parse(&signer.verifier().to_text()).unwrap();
    assert_eq!(verifier, signer.verifier());
    let reparsed = NoteSigner::parse(&signer.to_private_text()).unwrap();
    assert_eq!(reparsed.sign(&checkpoint()), note, "Ed25519 signatures are deterministic");
    assert!(!format!("{signer:?}").contains(&signer.to_private_text()[20..]), "Debug must not print the key");
}

#[test]
fn forged_or_damaged_notes_are_refused() {
    let signer = signer("writ/test", 1);
    let other = signer_other();
    let note = signer.sign(&checkpoint());
    let trusted = [signer.verifier()];
    assert!(matches!(open(&other.sign(&checkpoint()), &trusted), Err(NoteError::UnknownKey(_))));
    let bigger = note.replacen("\n42\n", "\n43\n", 1);
    assert!(matches!(open(&bigger, &trusted), Err(NoteError::BadSignature(_))));
    let mut lines: Vec<String> = note.lines().map(String::from).collect();
    let sig_line = lines.last().unwrap().clone();
    let (head, blob) = sig_line.rsplit_once(' ').unwrap();
    let mut chars: Vec<char> = blob.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    *lines.last_mut().unwrap() = format!("{head} {}", chars.iter().collect::<String>());
    let tampered = format!("{}\n", lines.join("\n"));
    assert!(matches!(open(&tampered, &trusted), Err(NoteError::BadSignature(_))));
    assert!(matches!(open("writ/test\n42\n", &trusted), Err(NoteError::Malformed(_))));
    assert!(matches!(open(&note.replacen("\n42\n", "\n042\n", 1), &trusted), Err(NoteError::Malformed(_))));
    // A second, valid signature by an untrusted key does not make a bad one acceptable.
    let doubled = format!("{}\u{2014} evil {}\n", bigger, "AAAA");
    assert!(open(&doubled, &trusted).is_err());
}

fn signer_other() -> NoteSigner {
    signer("writ/test", 2)
}

#[test]
fn malformed_keys_are_refused() {
    let signer = signer("writ/test", 3);
    let text = signer.verifier().to_text();
    assert!(
        NoteVerifier::parse(&text.replacen("writ/test", "writ/other", 1)).is_err(),
        "id must match the name"
    );
    assert!(NoteVerifier::parse("nonsense").is_err());
    assert!(NoteSigner::parse(&text).is_err(), "a verifier key is not a signer key");
    assert!(NoteSigner::from_seed("has space", [0; 32]).is_err());
}
