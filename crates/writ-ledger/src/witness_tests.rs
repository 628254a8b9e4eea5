//! The witness's decisions (C2SP tlog-witness add-checkpoint): the spec's example request,
//! and each refusal with the status the spec gives it.

use crate::checkpoint::{Checkpoint, NoteSigner};
use crate::merkle::{Tree, leaf_hash};
use crate::witness::*;

/// The example request body of c2sp.org/tlog-witness reads as the spec describes it.
#[test]
fn the_spec_example_request_parses() {
    let body = "old 20852014\n\
        PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
        jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
        5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
        /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
        \n\
        example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
    let request = parse(body).unwrap();
    assert_eq!(request.old, 20_852_014);
    assert_eq!(request.proof.len(), 4);
    assert!(request.note.starts_with("example.com/behind-the-sofa\n20852163\n"));
    // A witness that does not know the log answers 404.
    let ours = NoteSigner::from_seed("writ/test", [1; 32]).unwrap().verifier();
    assert_eq!(decide(&request, &[ours], None).unwrap_err().status(), 404);
    // Malformed bodies are 400.
    for bad in ["old 01\n\nx", "new 1\n\nx", "old 1\nnot-a-hash\n\nx", "old 1"] {
        assert_eq!(parse(bad).unwrap_err().status(), 400, "{bad:?}");
    }
    let long = format!("old 1\n{}\nx", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64));
    assert_eq!(parse(&long).unwrap_err().status(), 400);
}

struct Log {
    signer: NoteSigner,
    tree: Tree,
}

impl Log {
    fn new(seed: u8) -> Log {
        Log { signer: NoteSigner::from_seed("writ/test", [seed; 32]).unwrap(), tree: Tree::new() }
    }

    fn grow(&mut self, by: u64, tag: &str) {
        for n in 0..by {
            self.tree.push(leaf_hash(format!("{tag}{n}").as_bytes()));
        }
    }

    fn note(&self, size: u64) -> String {
        let root = self.tree.root_at(size).unwrap();
        self.signer.sign(&Checkpoint { origin: "writ/test".into(), size, root })
    }

    fn request(&self, old: u64, size: u64) -> AddCheckpoint {
        let proof = if old == 0 { Vec::new() } else { self.tree.consistency_proof(old, size).unwrap() };
        parse(&request_body(old, &proof, &self.note(size))).unwrap()
    }

    fn head(&self, size: u64) -> Head {
        Head { size, root: self.tree.root_at(size).unwrap() }
    }
}

#[test]
fn a_witness_cosigns_only_what_extends_its_last_head() {
    let mut log = Log::new(1);
    log.grow(10, "a");
    let keys = [log.signer.verifier()];
    // First contact: old 0, no proof.
    let first = decide(&log.request(0, 5), &keys, None).unwrap();
    assert_eq!(first.size, 5);
    // Extending with a valid proof.
    assert_eq!(decide(&log.request(5, 10), &keys, Some(&log.head(5))).unwrap().size, 10);
    // The same head again is fine; old must name what was last cosigned.
    assert!(decide(&log.request(10, 10), &keys, Some(&log.head(10))).is_ok());
    assert_eq!(decide(&log.request(5, 10), &keys, Some(&log.head(10))).unwrap_err(), Refused::Conflict(10));
    assert_eq!(decide(&log.request(0, 10), &keys, Some(&log.head(10))).unwrap_err().status(), 409);
    // A rolled-back log (an older checkpoint) cannot name the witness's size as old.
    assert_eq!(decide(&log.request(5, 5), &keys, Some(&log.head(10))).unwrap_err(), Refused::Conflict(10));
    // old beyond the checkpoint is a bad request.
    let mut backwards = log.request(5, 5);
    backwards.old = 6;
    assert_eq!(decide(&backwards, &keys, Some(&log.head(6))).unwrap_err().status(), 400);

    // A forked history: same first 5 leaves, then different ones.
    let mut fork = Log::new(1);
    fork.grow(5, "a");
    fork.grow(7, "b");
    let refused = decide(&fork.request(10, 12), &keys, Some(&log.head(10))).unwrap_err();
    assert_eq!(refused, Refused::Inconsistent { old: 10, new: 12 });
    // The fork at the witness's own size: another root is a conflict.
    let mut same_size = Log::new(1);
    same_size.grow(5, "a");
    same_size.grow(5, "c");
    assert_eq!(decide(&same_size.request(10, 10), &keys, Some(&log.head(10))).unwrap_err().status(), 409);
    // A proof for first contact is refused; a checkpoint by another key is 403.
    let mut with_proof = log.request(5, 10);
    with_proof.old = 0;
    assert_eq!(decide(&with_proof, &keys, None).unwrap_err().status(), 422);
    let stranger =
        Log { signer: NoteSigner::from_seed("writ/test", [9; 32]).unwrap(), tree: log.tree.clone() };
    assert_eq!(decide(&stranger.request(0, 10), &keys, None).unwrap_err().status(), 403);
}
