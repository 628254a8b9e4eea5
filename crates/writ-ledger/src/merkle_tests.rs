//! The Merkle tree against published RFC 6962 test vectors, a naive reference tree, and an
//! independent implementation (`ct-merkle`).

use proptest::prelude::*;

use crate::merkle::*;

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Hash {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The eight leaves of the RFC 6962 test vectors used by Certificate Transparency
/// implementations (certificate-transparency-go `merkle` tests, Trillian, transparency-dev).
fn vector_leaves() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0x00],
        vec![0x10],
        vec![0x20, 0x21],
        vec![0x30, 0x31],
        vec![0x40, 0x41, 0x42, 0x43],
        vec![0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        (0x60..=0x6f).collect(),
    ]
}

fn vector_tree() -> Tree {
    let mut tree = Tree::new();
    for leaf in vector_leaves() {
        tree.push(leaf_hash(&leaf));
    }
    tree
}

#[test]
fn roots_match_the_published_vectors() {
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let tree = vector_tree();
    for (size, expected) in roots.iter().enumerate() {
        assert_eq!(hex(&tree.root_at(size as u64 + 1).unwrap()), *expected, "root of {} leaves", size + 1);
    }
    assert_eq!(hex(&empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn inclusion_proofs_match_the_published_vectors() {
    let cases: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let tree = vector_tree();
    for (index, size, expected) in cases {
        let proof = tree.inclusion_proof(index, size).unwrap();
        assert_eq!(proof.iter().map(hex).collect::<Vec<_>>(), expected, "leaf {index} in {size}");
        let root = tree.root_at(size).unwrap();
        assert!(verify_inclusion(&tree.leaf(index).unwrap(), index, size, &proof, &root));
    }
}

#[test]
fn consistency_proofs_match_the_published_vectors() {
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let tree = vector_tree();
    for (old, new, expected) in cases {
        let proof = tree.consistency_proof(old, new).unwrap();
        assert_eq!(proof.iter().map(hex).collect::<Vec<_>>(), expected, "{old} → {new}");
        let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
        assert!(verify_consistency(old, new, &old_root, &new_root, &proof));
    }
}

#[test]
fn tampered_proofs_and_roots_are_rejected() {
    let tree = vector_tree();
    let root = tree.root();
    let leaf = tree.leaf(5).unwrap();
    let proof = tree.inclusion_proof(5, 8).unwrap();
    assert!(!verify_inclusion(&leaf, 4, 8, &proof, &root), "wrong index");
    // Size 7 would pass: leaf 5's path has the same shape in trees of 7 and 8 leaves, and the
    // root (of 8) binds the real size. Checkpoints always sign size and root together.
    assert!(!verify_inclusion(&leaf, 5, 6, &proof, &root), "wrong size");
    assert!(!verify_inclusion(&leaf, 5, 8, &proof[..2], &root), "short proof");
    let mut flipped = proof.clone();
    flipped[1][0] ^= 1;
    assert!(!verify_inclusion(&leaf, 5, 8, &flipped, &root), "altered proof");
    assert!(!verify_inclusion(&unhex(&hex(&leaf).replace('b', "c")), 5, 8, &proof, &root), "other leaf");
    let consistency = tree.consistency_proof(6, 8).unwrap();
    let old = tree.root_at(6).unwrap();
    assert!(!verify_consistency(6, 8, &tree.root_at(5).unwrap(), &root, &consistency));
    assert!(!verify_consistency(5, 8, &old, &root, &consistency));
    assert!(!verify_consistency(6, 8, &old, &root, &consistency[1..]));
    assert!(!verify_consistency(8, 6, &root, &old, &consistency));
}

/// The RFC's definition, written as directly as possible.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_prefix_root_and_proof_agrees_with_the_naive_tree(count in 1usize..80, seed in any::<u64>()) {
        let leaves: Vec<Hash> = (0..count).map(|i| leaf_hash(&(seed ^ i as u64).to_le_bytes())).collect();
        let mut tree = Tree::new();
        for leaf in &leaves {
            tree.push(*leaf);
        }
        for size in 1..=count as u64 {
            let root = tree.root_at(size).unwrap();
            prop_assert_eq!(root, naive_root(&leaves[..size as usize]));
            let index = seed % size;
            let proof = tree.inclusion_proof(index, size).unwrap();
            prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root));
            let old = (seed >> 8) % size + 1;
            let consistency = tree.consistency_proof(old, size).unwrap();
            prop_assert!(verify_consistency(old, size, &tree.root_at(old).unwrap(), &root, &consistency));
            if old < size {
                let wrong = leaf_hash(b"not the old root");
                prop_assert!(!verify_consistency(old, size, &wrong, &root, &consistency));
            }
        }
    }
}

/// A leaf for `ct-merkle`: its bytes, hashed as RFC 6962 leaf input.
struct Bytes(Vec<u8>);

impl ct_merkle::HashableLeaf for Bytes {
    fn hash<H: sha2::digest::Update>(&self, hasher: &mut H) {
        hasher.update(&self.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn roots_and_proofs_agree_with_ct_merkle(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..70)) {
        let mut ours = Tree::new();
        let mut theirs = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, Bytes>::new();
        for leaf in &leaves {
            ours.push(leaf_hash(leaf));
            theirs.push(Bytes(leaf.clone()));
            let size = ours.size();
            let their_root = theirs.root();
            prop_assert_eq!(&ours.root()[..], &their_root.as_bytes()[..]);
            let index = (size - 1) / 2;
            let proof: Vec<u8> = ours.inclusion_proof(index, size).unwrap().concat();
            let their_proof = theirs.prove_inclusion(index as usize);
            prop_assert_eq!(&proof[..], their_proof.as_bytes());
            if size > 1 {
                let old = size / 2;
                let ours_consistency: Vec<u8> = ours.consistency_proof(old, size).unwrap().concat();
                let theirs_consistency = theirs.prove_consistency((size - old) as usize);
                prop_assert_eq!(&ours_consistency[..], theirs_consistency.as_bytes());
            }
        }
    }
}
