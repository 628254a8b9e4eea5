//! The Writ lines in free text (a ticket's description, a pull request's body, a commit
//! message), written like git trailers, one per line, key case-insensitive:
//!
//! ```text
//! Writ-Grant: alice access:deploy for 8h
//! Writ-Revoke: bob access:admin
//! Writ-Rotate: svc-ci vault:static/app
//! Writ-Event: deploy
//! Writ-Justification: release 4.2 needs the deploy role
//! Writ-Window: 2026-12-08T22:00 2026-12-09T02:00 Europe/Berlin
//! Writ-Change: CHG-01JD2W3X4Y5Z6A7B8C9D0E1F2G
//! ```
//!
//! `Writ-Window:` is the maintenance window, `START END [ZONE]` (RFC 3339 instants, or local
//! date-times in the zone; UTC when none is given), read by the engine with the time zone
//! database.
//!
//! Grant, revoke and rotate lines make a request block (the change the text asks for);
//! `Writ-Change:` names an existing change the text belongs to.

use writ_core::change::{BusinessEvent, ChangeId, OpAction};
use writ_core::name::{EntitlementRef, IdentityName};
use writ_core::time::Duration;

/// One operation a block asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOp {
    pub action: OpAction,
    pub identity: IdentityName,
    pub entitlement: EntitlementRef,
    pub duration: Option<Duration>,
}

/// The change a text asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBlock {
    pub ops: Vec<BlockOp>,
    pub event: Option<BusinessEvent>,
    pub justification: Option<String>,
    /// The maintenance window as written: start, end, zone.
    pub window: Option<(String, String, String)>,
}

/// What a text holds: a request block, the changes it names, or the first problem found (a
/// block with a problem is not used at all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub block: Option<RequestBlock>,
    pub changes: Vec<ChangeId>,
    pub error: Option<String>,
}

/// Most operations one block may ask for.
pub const MAX_OPS: usize = 50;

/// Reads the Writ lines of `text`.
pub fn scan(text: &str) -> Scanned {
    let mut scanned = Scanned::default();
    let mut ops = Vec::new();
    let (mut event, mut justification, mut window) = (None, None, None);
    for (number, line) in text.lines().enumerate() {
        let Some((key, value)) = line.trim().split_once(':') else { continue };
        let key = key.trim().to_ascii_lowercase();
        let Some(key) = key.strip_prefix("writ-") else { continue };
        let value = value.trim();
        let fail = |reason: String| Some(format!("line {}: {reason}", number + 1));
        let result = match key {
            "grant" => op(OpAction::Grant, value).map(|o| ops.push(o)),
            "revoke" => op(OpAction::Revoke, value).map(|o| ops.push(o)),
            "rotate" => op(OpAction::Rotate, value).map(|o| ops.push(o)),
            "event" => BusinessEvent::parse(value).map(|e| event = Some(e)).map_err(|e| e.to_string()),
            "justification" => {
                justification = Some(value.to_owned());
                Ok(())
            }
            "window" => window_line(value).map(|w| window = Some(w)),
            "change" => ChangeId::parse(value)
                .map(|id| {
                    if !scanned.changes.contains(&id) {
                        scanned.changes.push(id);
                    }
                })
                .map_err(|e| e.to_string()),
            _ => Err(format!(
                "unknown Writ line Writ-{key}: use Writ-Grant, -Revoke, -Rotate, -Event, -Justification, -Window or -Change"
            )),
        };
        if let Err(reason) = result
            && scanned.error.is_none()
        {
            scanned.error = fail(reason);
        }
    }
    if ops.len() > MAX_OPS && scanned.error.is_none() {
        scanned.error = Some(format!("{} operations: one block asks for at most {MAX_OPS}", ops.len()));
    }
    if !ops.is_empty() && scanned.error.is_none() {
        scanned.block = Some(RequestBlock { ops, event, justification, window });
    }
    scanned
}

/// `START END [ZONE]`.
fn window_line(value: &str) -> Result<(String, String, String), String> {
    match value.split_whitespace().collect::<Vec<_>>().as_slice() {
        [start, end] => Ok(((*start).to_owned(), (*end).to_owned(), "UTC".to_owned())),
        [start, end, zone] if [start, end, zone].iter().all(|w| w.len() <= 64) => {
            Ok(((*start).to_owned(), (*end).to_owned(), (*zone).to_owned()))
        }
        _ => Err(format!(
            "Writ-Window wants START END [ZONE], for example 2026-12-08T22:00 2026-12-09T02:00 Europe/Berlin; got {:?}",
            value.chars().take(80).collect::<String>()
        )),
    }
}

/// `IDENTITY TARGET:ENTITLEMENT [for DURATION]`.
fn op(action: OpAction, value: &str) -> Result<BlockOp, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let (identity, entitlement, duration) = match words.as_slice() {
        [identity, entitlement] => (identity, entitlement, None),
        [identity, entitlement, "for", duration] => (identity, entitlement, Some(duration)),
        _ => {
            return Err(format!(
                "Writ-{action} wants IDENTITY TARGET:ENTITLEMENT [for DURATION], for example alice access:deploy for 8h; got {:?}",
                value.chars().take(80).collect::<String>()
            ));
        }
    };
    Ok(BlockOp {
        action,
        identity: IdentityName::parse(identity).map_err(|e| e.to_string())?,
        entitlement: EntitlementRef::parse(entitlement).map_err(|e| e.to_string())?,
        duration: duration.map(|d| Duration::parse(d)).transpose().map_err(|e| e.to_string())?,
    })
}
