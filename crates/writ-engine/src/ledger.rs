//! The ledger service: builds the Merkle tree over the event log, signs checkpoints (refusing to
//! sign a history inconsistent with the last signed head), verifies the whole log, and makes
//! inclusion and consistency proofs. Keys are passed in; the engine never reads key files.

use writ_core::event::RegistryEvent;
use writ_core::identity::Actor;
use writ_ledger::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, Signing};
use writ_ledger::merkle::{Hash, Tree};
use writ_ledger::verify::{Entry, Report, verify};
use writ_store::{EventRow, StoredCheckpoint};

use crate::{Engine, EngineError, Result};

/// The meta key holding the log's origin line.
pub const ORIGIN: &str = "ledger.origin";
/// Events read per page while scanning the log.
const PAGE: usize = 10_000;

/// An inclusion proof for one event against a signed checkpoint.
#[derive(Clone, Debug)]
pub struct InclusionProof {
    pub index: u64,
    pub leaf: Hash,
    pub proof: Vec<Hash>,
    pub checkpoint: StoredCheckpoint,
}

/// A consistency proof between two tree sizes.
#[derive(Clone, Debug)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: Hash,
    pub new_root: Hash,
    pub proof: Vec<Hash>,
}

/// Why the ledger refused to sign.
fn refused(detail: String) -> EngineError {
    EngineError::Store(writ_store::StoreError::Corrupt(detail))
}

impl Engine {
    /// The log's origin (`writ/<id>`), set once by `writ init`.
    pub fn ledger_origin(&self) -> Result<String> {
        self.store
            .meta(ORIGIN)?
            .ok_or_else(|| EngineError::NotFound { what: "ledger origin", name: ORIGIN.into() })
    }

    /// Records the origin and the public key of a new ledger (once).
    pub fn init_ledger(&self, signer: &NoteSigner) -> Result<()> {
        let verifier = signer.verifier();
        self.store.init_meta(ORIGIN, verifier.name())?;
        self.store.init_meta(&format!("ledger.key.{}", verifier.id_hex()), &verifier.to_text())?;
        Ok(())
    }

    /// Records that `key` joins the log's checkpoint keys (`retired: false`) or leaves them:
    /// `ledger.key_added` / `ledger.key_retired`. The key file itself is the caller's.
    pub fn record_ledger_key(&self, actor: Actor, key: &NoteVerifier, retired: bool) -> Result<u64> {
        self.acting(&actor)?;
        if key.name() != self.ledger_origin()? {
            return Err(refused(format!(
                "the key {} is not named after this ledger's origin",
                key.to_text()
            )));
        }
        let event = RegistryEvent::LedgerKey { actor, key: key.to_text(), retired, at: self.clock.now() };
        let index = self.store.add_ledger_key(
            &key.id_hex(),
            &key.to_text(),
            &crate::registry_event(&event, self.hmac()?),
        )?;
        tracing::warn!(target: "writ::ledger", key = %key.to_text(), retired, index, "checkpoint signing key rotated");
        Ok(index)
    }

    /// Every event row in index order.
    pub fn all_events(&self) -> Result<Vec<EventRow>> {
        let mut rows: Vec<EventRow> = Vec::new();
        loop {
            // Resume after the last index seen, not after the count: a deleted event leaves a gap.
            let from = rows.last().map_or(0, |r| r.index + 1);
            let page = self.store.events(from, PAGE)?;
            let done = page.len() < PAGE;
            rows.extend(page);
            if done {
                return Ok(rows);
            }
        }
    }

    /// The tree over the stored events, hashing the stored bytes.
    pub fn ledger_tree(&self) -> Result<Tree> {
        self.with_tree(|tree| Ok(tree.clone()))
    }

    /// Brings the engine's tree up to the end of the log, hashing only the events it has not
    /// seen yet (a long-running server signs a checkpoint every second; rebuilding the whole
    /// tree each time would grow with the log), then runs `work` on it. A gap in the indices is
    /// refused: nothing is signed or proved over a log with a hole.
    fn with_tree<T>(&self, work: impl FnOnce(&Tree) -> Result<T>) -> Result<T> {
        let mut tree = self.tree.lock().map_err(|_| refused("the ledger tree cache is poisoned".into()))?;
        loop {
            let page = self.store.leaves(tree.size(), PAGE)?;
            let done = page.len() < PAGE;
            for row in page {
                if row.index != tree.size() {
                    return Err(refused(format!(
                        "event {} follows {} events: the log has a gap; run `writ ledger verify`",
                        row.index,
                        tree.size()
                    )));
                }
                tree.push(writ_ledger::leaf_hash(&row.bytes));
            }
            if done {
                return work(&tree);
            }
        }
    }

    /// Signs a checkpoint over the whole log unless the newest one already covers it. Refuses if
    /// the stored events no longer reproduce the newest signed root (tampering since then).
    pub fn checkpoint(&self, signer: &impl Signing) -> Result<StoredCheckpoint> {
        let origin = self.ledger_origin()?;
        if signer.origin() != origin {
            return Err(refused(format!(
                "the signing key is for {}, this ledger is {origin}",
                signer.origin()
            )));
        }
        // The newest checkpoint first, then the tree: events are only ever appended, so the tree
        // read afterwards covers it even if another instance signed meanwhile.
        let latest = self.store.latest_checkpoint()?;
        let (size, root) = self.with_tree(|tree| {
            if let Some(latest) = &latest
                && tree.root_at(latest.size) != Some(latest.root)
            {
                return Err(refused(format!(
                    "the stored events do not match the checkpoint at size {}; run `writ ledger verify`",
                    latest.size
                )));
            }
            Ok((tree.size(), tree.root()))
        })?;
        if let Some(latest) = latest.filter(|l| l.size == size) {
            return Ok(latest);
        }
        let checkpoint = Checkpoint { origin, size, root };
        let stored = StoredCheckpoint {
            size: checkpoint.size,
            root: checkpoint.root,
            note: signer.sign_note(&checkpoint),
            created_at: self.clock.now(),
        };
        self.store.add_checkpoint(&stored)?;
        tracing::info!(target: "writ::ledger", size = stored.size, "checkpoint signed");
        Ok(stored)
    }

    /// Verifies the whole log against its checkpoints with `trusted` keys only.
    pub fn verify_ledger(&self, trusted: &[NoteVerifier], deep: bool) -> Result<Report> {
        let notes: Vec<String> = self.store.checkpoints()?.into_iter().map(|c| c.note).collect();
        let origin = self.store.meta(ORIGIN)?;
        // One thread reads pages while this one hashes: the two halves of the work overlap.
        let (pages, received) = std::sync::mpsc::sync_channel::<Result<Vec<writ_store::LeafRow>>>(4);
        let store = self.store.clone();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut from = 0;
                loop {
                    let page = store.leaves(from, PAGE).map_err(EngineError::from);
                    let done = page.as_ref().map_or(true, |p| p.len() < PAGE);
                    // Resume after the last index seen, not after the count: a deleted event
                    // leaves a gap.
                    if let Some(last) = page.as_ref().ok().and_then(|p| p.last()) {
                        from = last.index + 1;
                    }
                    if pages.send(page).is_err() || done {
                        return;
                    }
                }
            });
            let failure = std::cell::RefCell::new(None);
            let entries = received
                .iter()
                .map_while(|page| match page {
                    Ok(page) => Some(page),
                    Err(error) => {
                        failure.replace(Some(error));
                        None
                    }
                })
                .flatten()
                .map(|row| Entry { index: row.index, bytes: row.bytes, recorded_leaf: row.leaf });
            let report = verify(entries, &notes, trusted, origin.as_deref(), deep);
            match failure.into_inner() {
                Some(error) => Err(error),
                None => Ok(report),
            }
        })
    }

    /// An inclusion proof for event `index` against the newest checkpoint that covers it.
    pub fn prove_inclusion(&self, index: u64) -> Result<InclusionProof> {
        let checkpoint = self.store.checkpoints()?.pop().filter(|c| c.size > index).ok_or_else(|| {
            EngineError::NotFound { what: "checkpoint covering event", name: index.to_string() }
        })?;
        let tree = self.ledger_tree()?;
        let not_found = || EngineError::NotFound { what: "event", name: index.to_string() };
        let leaf = tree.leaf(index).ok_or_else(not_found)?;
        let proof = tree.inclusion_proof(index, checkpoint.size).ok_or_else(not_found)?;
        if !writ_ledger::merkle::verify_inclusion(&leaf, index, checkpoint.size, &proof, &checkpoint.root) {
            return Err(refused(format!(
                "event {index} does not prove against the checkpoint at size {}",
                checkpoint.size
            )));
        }
        Ok(InclusionProof { index, leaf, proof, checkpoint })
    }

    /// A consistency proof between tree sizes `old_size` and `new_size`.
    pub fn prove_consistency(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof> {
        let bad = || EngineError::NotFound { what: "tree size", name: format!("{old_size}..{new_size}") };
        self.with_tree(|tree| {
            let proof = tree.consistency_proof(old_size, new_size).ok_or_else(bad)?;
            let old_root = tree.root_at(old_size).ok_or_else(bad)?;
            let new_root = tree.root_at(new_size).ok_or_else(bad)?;
            Ok(ConsistencyProof { old_size, new_size, old_root, new_root, proof })
        })
    }
}
