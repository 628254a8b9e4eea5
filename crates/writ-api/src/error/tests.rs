//! The table is complete: every code the workspace's sources can raise has exactly one row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{CODES, KINDS, Kind, kind_of, markdown_table};

/// The first segment of every error code; a literal `family.name` with one of these is a code.
const FAMILIES: &[&str] = &[
    "input",
    "request",
    "idempotency",
    "policy",
    "hook",
    "scim",
    "auth",
    "sod",
    "breakglass",
    "exception",
    "automation",
    "identity",
    "approval",
    "state",
    "finding",
    "intake",
    "store",
    "ledger",
    "target",
    "change",
    "deadline",
    "expiry",
    "audit",
    "client",
    "engine",
    "internal",
];

/// Ledger event kinds share the families of codes; they are names of facts, not errors. So are
/// a few other names.
const EVENT_KINDS: &[&str] = &[
    // The web interface's templates (writ-server/templates), named by file.
    "audit.html",
    "breakglass.html",
    "change.html",
    "request.html",
    "change.expiry_warned",
    "change.commented",
    "change.rollback_noted",
    "change.legal_hold",
    "change.erased",
    "erasure.requested",
    "erasure.approved",
    "exception.expiry_warned",
    "exception.expiring",
    // Notification kinds (writ_core::notify::kind), named by policy routes.
    "access.expiring",
    "approval.requested",
    "breakglass.opened",
    "breakglass.overdue",
    "change.alert",
    "identity.transfer_",
    "finding.changed",
    "identity.transfer_requested",
    "identity.transfer_accepted",
    "identity.transfer_declined",
    "identity.transfer_cancelled",
    "identity.transfer_superseded",
    "change.requested",
    "change.validated",
    "change.revalidated",
    "change.escalated",
    "change.breakglass",
    "change.approved",
    "change.rejected",
    "change.cancelled",
    "change.expired",
    "change.execution_started",
    "change.implemented",
    "change.execution_failed",
    "change.attempt_recovered",
    "change.verified",
    "change.reviewed",
    "change.evidence_attached",
    "change.expiry_opened",
    "change.alert_raised",
    "change.linked",
    "policy.loaded",
    "finding.opened",
    "finding.reopened",
    "finding.excepted",
    "finding.resolved",
    "finding.remediation_opened",
    "automation.paused",
    "exception.requested",
    "exception.approved",
    "exception.rejected",
    "exception.renewal_requested",
    "exception.expired",
    "exception.revoked",
    "intake.received",
    "intake.duplicate",
    "intake.correlated",
    "intake.refused",
    "intake.refusals_counted",
    "ledger.projections_repaired",
    "ledger.key_added",
    "ledger.key_retired",
    // Names that are not errors: a rule's id, a meta key, finding kinds.
    "exception.default",
    "identity.unmatched_account",
    "change.unmatched_telemetry",
    "ledger.origin",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if name != "tests" && name != "target" {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// Every string literal of the form `family.name` in `text`.
fn code_literals(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| {
            let Some((family, name)) = literal.split_once('.') else { return false };
            FAMILIES.contains(&family)
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_code_in_the_sources_has_a_row() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    sources(&crates, &mut files);
    assert!(files.len() > 50, "the workspace's sources were not found under {}", crates.display());
    let mut missing = BTreeSet::new();
    for file in &files {
        // The tests module of this table lists the families itself.
        if file.ends_with("writ-api/src/error/tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for code in code_literals(&text) {
            if !EVENT_KINDS.contains(&code.as_str()) && !CODES.iter().any(|(known, _)| *known == code) {
                missing.insert(format!("{code} ({})", file.display()));
            }
        }
    }
    assert!(missing.is_empty(), "codes without a row in writ_api::error::CODES: {missing:#?}");
}

#[test]
fn every_code_has_exactly_one_row() {
    let mut seen = BTreeSet::new();
    for (code, _) in CODES {
        assert!(seen.insert(*code), "{code} has more than one row");
    }
}

#[test]
fn statuses_and_exits_follow_the_kind() {
    assert_eq!((kind_of("sod.self_approval").status(), kind_of("sod.self_approval").exit()), (403, 3));
    assert_eq!((kind_of("input.invalid_name").status(), kind_of("input.invalid_name").exit()), (400, 2));
    assert_eq!((kind_of("not_found").status(), kind_of("not_found").exit()), (404, 4));
    assert_eq!((kind_of("store.conflict").status(), kind_of("store.conflict").exit()), (409, 5));
    assert_eq!((kind_of("target.unavailable").status(), kind_of("target.unavailable").exit()), (502, 6));
    assert_eq!((kind_of("change.failed").status(), kind_of("change.failed").exit()), (500, 7));
    assert_eq!((kind_of("ledger.edited_event").status(), kind_of("ledger.edited_event").exit()), (500, 8));
    assert_eq!(kind_of("a.code.nobody.knows"), Kind::Internal);
}

#[test]
fn every_kind_is_listed_once() {
    for (kind, _) in KINDS {
        assert_eq!(KINDS.iter().filter(|(k, _)| k == kind).count(), 1, "{kind:?}");
    }
    for (code, kind) in CODES {
        assert!(KINDS.iter().any(|(k, _)| k == kind), "{code}: {kind:?} is not in KINDS");
    }
}

/// `docs/api.md` shows the table as it is (`UPDATE_DOCS=1` rewrites it).
#[test]
fn the_docs_show_the_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- error-table:begin -->\n", "<!-- error-table:end -->");
    let start = text.find(begin).expect("docs/api.md has no error-table:begin marker") + begin.len();
    let stop = text.find(end).expect("docs/api.md has no error-table:end marker");
    let table = markdown_table();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &text[..start], &text[stop..])).unwrap();
        return;
    }
    assert_eq!(&text[start..stop], table, "docs/api.md's error table is stale: run with UPDATE_DOCS=1");
}
