//! The parts of the change record the sources name beyond the chain itself, through the real
//! binary on a real git target: maintenance windows (required and bounded by policy, enforced at
//! execution, expiring an approved change once passed, waived by break-glass).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::World;

const CEDAR: &str = include_str!("../../../writ-policy/pack/access.cedar");
const PACK: &str = include_str!("../../../writ-policy/pack/rules.toml");

/// The default pack with alice as incident responder, where production deploy rights need a
/// window on Tuesday to Thursday nights in Berlin, and finance reads (a tier of their own) some
/// window.
const WINDOWS: &str = r#"
[[tier]]
name = "change-window"
approvals = 1
approval_validity = "24h"
require_window = true

[[rule]]
id = "prod.nightly"
when = { entitlement = ["access:deploy-prod"] }
allowed_windows = ["Tue-Thu 22:00-02:00 Europe/Berlin"]

[[rule]]
id = "finance.windowed"
when = { entitlement = ["access:finance-read"] }
tier = "change-window"
"#;

pub fn load_policy(w: &World) {
    let dir = w.dir.path().join("window-policy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("access.cedar"), CEDAR).unwrap();
    let rules = PACK.replace("incident-responders = []", "incident-responders = [\"alice\"]") + WINDOWS;
    std::fs::write(dir.join("rules.toml"), rules).unwrap();
    w.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `secs` seconds since the epoch as RFC 3339 in UTC.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// A window as the options give it: start, end, zone.
type Span<'a> = (&'a str, &'a str, &'a str);

fn request_windowed(w: &World, entitlement: &str, window: Option<Span>) -> crate::harness::Run {
    let mut args = vec![
        "change",
        "request",
        "--as",
        "alice",
        "--identity",
        "dave",
        "--grant",
        entitlement,
        "--justification",
        "quarterly close",
        "--json",
    ];
    if let Some((start, end, zone)) = window {
        args.extend(["--window-start", start, "--window-end", end, "--window-zone", zone]);
    }
    w.writ(&args)
}

/// The error code of a refused run, from its text (`error[CODE]: …`) or its `--json` error.
fn error_code(run: &crate::harness::Run) -> String {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&run.stderr) {
        return json["error"]["code"].as_str().unwrap_or_default().to_owned();
    }
    run.stderr.strip_prefix("error[").and_then(|s| s.split(']').next()).unwrap_or_default().to_owned()
}

#[test]
fn policy_requires_and_bounds_windows_and_refusals_change_nothing() {
    let w = World::new();
    load_policy(&w);
    let before = w.fingerprint();
    let cases: [(&str, Option<Span>, &str); 6] = [
        ("access:finance-read", None, "policy.window_required"),
        ("access:deploy-prod", None, "policy.window_required"),
        // A Monday night is not a Tuesday-to-Thursday night.
        (
            "access:deploy-prod",
            Some(("2031-03-03T22:00", "2031-03-03T23:00", "Europe/Berlin")),
            "policy.window_not_allowed",
        ),
        // Tuesday 22:00-02:00 Berlin, but given so it runs past 02:00.
        (
            "access:deploy-prod",
            Some(("2031-03-04T21:00:00Z", "2031-03-05T01:30:00Z", "UTC")),
            "policy.window_not_allowed",
        ),
        ("access:eng-read", Some(("2031-03-04T22:00", "2031-03-04T21:00", "UTC")), "window.invalid"),
        ("access:eng-read", Some(("2031-03-04T22:00", "2031-03-04T23:00", "Mars/Olympus")), "window.invalid"),
    ];
    for (entitlement, window, code) in cases {
        let run = request_windowed(&w, entitlement, window);
        assert_ne!(run.code, 0, "{entitlement} {window:?} was accepted: {}", run.stdout);
        assert_eq!(error_code(&run), code, "{entitlement} {window:?}: {}", run.stderr);
        assert_eq!(w.fingerprint(), before, "{entitlement} {window:?} changed something");
    }
    // The refusal says which windows are allowed and when the next one is.
    let run = request_windowed(&w, "access:deploy-prod", None);
    assert!(
        run.stderr.contains("Tue-Thu 22:00-02:00 Europe/Berlin")
            && run.stderr.contains("next allowed window"),
        "{}",
        run.stderr
    );
    // Inside an allowed occurrence (Tuesday 2031-03-04, winter time: 21:00Z-01:00Z) it is accepted,
    // and the record keeps the window with its zone and the rules that demanded it.
    let id = request_windowed(
        &w,
        "access:deploy-prod",
        Some(("2031-03-04T23:00", "2031-03-05T01:00", "Europe/Berlin")),
    )
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["window"]["start"], "2031-03-04T22:00:00.000Z");
    assert_eq!(show["window"]["end"], "2031-03-05T00:00:00.000Z");
    assert_eq!(show["window"]["zone"], "Europe/Berlin");
    assert_eq!(show["window"]["applies"], true);
    assert_eq!(show["window"]["demanded_by"], serde_json::json!(["prod.nightly"]));
    let text = w.writ(&["change", "show", &id]).ok();
    assert!(
        text.contains(
            "window     2031-03-04T22:00:00.000Z to 2031-03-05T00:00:00.000Z, given in Europe/Berlin"
        ),
        "{text}"
    );
}

#[test]
fn execution_runs_only_inside_the_window_and_a_passed_window_expires_the_change() {
    let w = World::new();
    let t = now_secs();
    // `early` opens in 12 s; `short` is open now and closes in 8 s.
    let (early_start, early_end) = (rfc3339(t + 12), rfc3339(t + 600));
    let (short_start, short_end) = (rfc3339(t), rfc3339(t + 8));
    let early = request_windowed(&w, "access:eng-read", Some((&early_start, &early_end, "UTC"))).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let short =
        request_windowed(&w, "access:finance-read", Some((&short_start, &short_end, "UTC"))).json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    for id in [&early, &short] {
        w.writ(&["change", "approve", id, "--as", "bob"]).ok();
    }
    let before = w.fingerprint();
    let run = w.writ(&["change", "execute", &early]);
    assert_eq!((run.code, error_code(&run)), (3, "window.outside".to_owned()), "{}", run.stderr);
    assert!(run.stderr.contains(&early_start[..19]), "{}", run.stderr);
    assert_eq!(w.fingerprint(), before, "a refused execution wrote nothing, to the database or the target");
    // Nothing expires while a window is still ahead or open.
    assert_eq!(w.writ(&["run-due", "--json"]).json()["expired"], serde_json::json!([]));

    let wait = (t + 13).saturating_sub(now_secs());
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(w.writ(&["change", "execute", &early, "--json"]).json()["state"], "implemented");
    assert_eq!(w.writ(&["change", "verify", &early, "--json"]).json()["state"], "verified");
    let access = std::fs::read_to_string(w.repo.join("access.toml")).unwrap();
    assert!(access.contains("\"dave\""), "{access}");

    // `short` closed while `early` waited: it can no longer run, and the scheduler expires it.
    let before = w.fingerprint();
    let run = w.writ(&["change", "execute", &short]);
    assert_eq!(error_code(&run), "window.outside", "{}", run.stderr);
    assert_eq!(w.fingerprint(), before);
    assert_eq!(w.writ(&["run-due", "--json"]).json()["expired"], serde_json::json!([short]));
    let show = w.writ(&["change", "show", &short, "--json"]).json();
    assert_eq!(show["state"], "expired");
    assert!(show["closing"]["reason"].as_str().unwrap().contains("maintenance window ended"), "{show}");
    let verify = w.writ(&["ledger", "verify", "--json"]).json();
    assert_eq!(verify["ok"], true, "{verify}");
}

#[test]
fn break_glass_ignores_a_required_window_and_says_so() {
    let w = World::new();
    load_policy(&w);
    let run = crate::breakglass::breakglass(&w, "alice", "access:finance-read");
    let id = run.json()["id"].as_str().unwrap().to_owned();
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["state"], "verified", "{show}");
    assert_eq!(show["window"]["applies"], false);
    assert_eq!(show["window"]["demanded_by"], serde_json::json!(["tier.change-window"]));
    let text = w.writ(&["change", "show", &id]).ok();
    assert!(
        text.contains("waived: break-glass ignores maintenance windows (demanded by tier.change-window)"),
        "{text}"
    );
}

#[test]
fn comments_come_from_whom_the_change_concerns_and_appear_in_show_and_the_verified_bundle() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    // Who may comment: the requester and the subject; bob only once he is its approver; carol
    // with no part in it only with a role that works on changes.
    let cases: [(&str, bool); 4] = [("alice", true), ("dave", true), ("bob", false), ("carol", false)];
    for (who, allowed) in cases {
        let before = w.fingerprint();
        let run = w.writ(&["change", "comment", &id, "--as", who, &format!("note from {who}")]);
        if allowed {
            run.ok();
        } else {
            assert_eq!(
                (run.code, error_code(&run)),
                (3, "authority.not_yours".to_owned()),
                "{who}: {}",
                run.stderr
            );
            assert_eq!(w.fingerprint(), before, "{who}'s refused comment changed something");
        }
    }
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "comment", &id, "--as", "bob", "approved for the Q4 close\nsee OPS-9"]).ok();
    w.writ(&["role", "grant", "carol", "auditor"]).ok();
    w.writ(&["change", "comment", &id, "--as", "carol", "sampled for the audit"]).ok();
    // Bad text is refused and changes nothing.
    for (text, code) in [("   ", "input.invalid_text"), ("bell\u{7}", "input.control_character")] {
        let before = w.fingerprint();
        let run = w.writ(&["change", "comment", &id, "--as", "alice", text]);
        assert_eq!(error_code(&run), code, "{text:?}: {}", run.stderr);
        assert_eq!(w.fingerprint(), before);
    }
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["change", "verify", &id]).ok();
    w.writ(&["change", "review", &id, "--as", "carol", "--notes", "fine"]).ok();
    // A closed change still takes a comment.
    w.writ(&["change", "comment", &id, "--as", "alice", "closed; thanks"]).ok();

    let show = w.writ(&["change", "show", &id, "--json"]).json();
    let comments: Vec<(&str, &str, &str)> = show["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["author"].as_str().unwrap(), c["step"].as_str().unwrap(), c["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        comments,
        [
            ("alice", "approval", "note from alice"),
            ("dave", "approval", "note from dave"),
            ("bob", "implementation", "approved for the Q4 close\nsee OPS-9"),
            ("carol", "implementation", "sampled for the audit"),
            ("alice", "review", "closed; thanks"),
        ]
    );
    let text = w.writ(&["change", "show", &id]).ok();
    assert!(text.contains("comment    bob at ") && text.contains("see OPS-9"), "{text}");

    // The bundle carries them, each opened against its seal offline.
    w.writ(&["ledger", "checkpoint"]).ok();
    let out = w.dir.path().join("bundle");
    w.writ(&["audit", "bundle", "--change", &id, "--out", out.to_str().unwrap()]).ok();
    let verified = w.writ(&["audit", "verify", out.to_str().unwrap()]).ok();
    assert!(verified.contains("sampled for the audit") && verified.contains("closed; thanks"), "{verified}");
    let json = w.writ(&["audit", "verify", out.to_str().unwrap(), "--json"]).json();
    assert_eq!(json["ok"], true, "{json}");
}

fn show(w: &World, id: &str) -> serde_json::Value {
    w.writ(&["change", "show", id, "--json"]).json()
}

#[test]
fn a_verified_grant_is_rolled_back_by_its_owner_through_a_linked_change_the_requester_cannot_approve() {
    let w = World::new();
    // The policy's default owner: the NHI's owner (alice owns svc-ci), else the requester.
    let nhi = w.request("svc-ci", "access:eng-read");
    assert_eq!(show(&w, &nhi)["rollback_owner"], "alice");
    let own = w.request("dave", "access:finance-read");
    assert_eq!(show(&w, &own)["rollback_owner"], "alice");
    // Named on the request: carol answers for undoing dave's deploy rights.
    let id = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "dave",
        "--grant",
        "access:deploy-prod",
        "--justification",
        "release 4.2",
        "--ticket",
        "OPS-42",
        "--rollback-owner",
        "carol",
    ]);
    assert_eq!(show(&w, &id)["rollback_owner"], "carol");
    let rollback = |who: &str| {
        w.writ(&["change", "rollback", &id, "--as", who, "--justification", "release pulled", "--json"])
    };
    // Nothing to undo before it is carried out.
    let before = w.fingerprint();
    let early = rollback("carol");
    assert_eq!(error_code(&early), "rollback.nothing_to_undo", "{}", early.stderr);
    assert_eq!(w.fingerprint(), before);
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["change", "verify", &id]).ok();
    let access = || std::fs::read_to_string(w.repo.join("access.toml")).unwrap();
    assert!(access().contains("deploy-prod]\nmembers = [\"dave\"]"), "{}", access());
    // Who may ask: not the subject, not its approver; the rollback owner may.
    for who in ["dave", "bob"] {
        let before = w.fingerprint();
        let refused = rollback(who);
        assert_eq!(error_code(&refused), "authority.not_yours", "{who}: {}", refused.stderr);
        assert_eq!(w.fingerprint(), before, "{who}'s refused rollback changed something");
    }
    let opened = rollback("carol").json();
    let undo = opened["id"].as_str().unwrap().to_owned();
    let before = w.fingerprint();
    assert_eq!(error_code(&rollback("alice")), "rollback.open", "one rollback at a time");
    assert_eq!(w.fingerprint(), before);
    let view = show(&w, &undo);
    assert_eq!((view["event"].as_str(), view["rollback_of"].as_str()), (Some("rollback"), Some(id.as_str())));
    assert_eq!(
        (view["operations"][0]["action"].as_str(), view["operations"][0]["identity"].as_str()),
        (Some("revoke"), Some("dave"))
    );
    assert_eq!(view["requester"], "carol");
    assert_eq!(view["rollback_owner"], "carol");
    // The requester of the undone change may not approve, execute or review its undoing.
    let before = w.fingerprint();
    let refused = w.writ(&["change", "approve", &undo, "--as", "alice"]);
    assert_eq!(error_code(&refused), "sod.self_approval", "{}", refused.stderr);
    assert!(refused.stderr.contains("requester of the change it rolls back"), "{}", refused.stderr);
    assert_eq!(w.fingerprint(), before);
    w.writ(&["change", "approve", &undo, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &undo]).ok();
    assert_eq!(w.writ(&["change", "verify", &undo, "--json"]).json()["state"], "verified");
    assert!(access().contains("deploy-prod]\nmembers = []"), "{}", access());

    // Both trails show the link.
    let origin = show(&w, &id);
    let steps: Vec<(&str, &str)> = origin["rollbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["change"].as_str().unwrap(), r["step"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            (undo.as_str(), "requested"),
            (undo.as_str(), "approved"),
            (undo.as_str(), "executed"),
            (undo.as_str(), "verified")
        ]
    );
    let types: Vec<&str> =
        origin["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "change.rollback_noted").count(), 4, "{types:?}");
    let text = w.writ(&["change", "show", &id]).ok();
    assert!(
        text.contains(&format!("ROLLED BACK by {undo}: requested, approved, executed, verified")),
        "{text}"
    );
    let text = w.writ(&["change", "show", &undo]).ok();
    assert!(text.contains(&format!("ROLLBACK   of {id}")), "{text}");
    w.writ(&["ledger", "verify"]).ok();
}

/// The default pack with `[retention]` keeping clear text and evidence one second after close.
fn load_retention(w: &World) {
    let dir = w.dir.path().join("retention-policy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("access.cedar"), CEDAR).unwrap();
    let rules =
        format!("{PACK}\n[retention.clear_text]\nkeep = \"1s\"\n\n[retention.evidence]\nkeep = \"1s\"\n");
    std::fs::write(dir.join("rules.toml"), rules).unwrap();
    w.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
}

/// A change requested with `justification`, evidence `file` and a comment, carried through to
/// review; returns its ID and the evidence digest.
fn closed_change(w: &World, justification: &str, file: &str) -> (String, String) {
    let id = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "dave",
        "--grant",
        "access:eng-read",
        "--justification",
        justification,
    ]);
    let path = w.dir.path().join(file);
    std::fs::write(&path, format!("minutes of {file}: dave's home address is 1 Main St")).unwrap();
    let added = w
        .writ(&[
            "evidence",
            "add",
            &id,
            path.to_str().unwrap(),
            "--step",
            "request",
            "--as",
            "alice",
            "--json",
        ])
        .json();
    let digest = added["sha256"].as_str().unwrap().to_owned();
    w.writ(&["change", "comment", &id, "--as", "dave", &format!("personal note on {file}")]).ok();
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["change", "verify", &id]).ok();
    w.writ(&["change", "review", &id, "--as", "carol", "--notes", &format!("reviewed {file}")]).ok();
    (id, digest)
}

#[test]
fn retention_erases_clear_text_and_blobs_past_their_term_recorded_and_verifiable_and_a_legal_hold_keeps_all()
{
    let w = World::new();
    load_retention(&w);
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "erin", "auditor"]).ok();
    let (erased, erased_blob) = closed_change(&w, "quarter close for finance", "a.txt");
    let (held, held_blob) = closed_change(&w, "held for litigation", "b.txt");
    // An open change holding the same justification as `erased` keeps that text alive.
    let open = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "carol",
        "--grant",
        "access:eng-read",
        "--justification",
        "quarter close for finance",
    ]);
    // Only an admin or an auditor places a legal hold.
    let before = w.fingerprint();
    let refused = w.writ(&["change", "hold", &held, "--as", "bob", "--reason", "LH-1"]);
    assert_eq!(error_code(&refused), "authority.not_yours", "{}", refused.stderr);
    assert_eq!(w.fingerprint(), before);
    w.writ(&["change", "hold", &held, "--as", "erin", "--reason", "litigation hold LH-1"]).ok();

    std::thread::sleep(Duration::from_millis(1100));
    let run = w.writ(&["retention", "run", "--json"]).json();
    let erased_here: Vec<(&str, &str)> = run["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["change"].as_str().unwrap(), e["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        erased_here,
        [(erased.as_str(), "retention.clear_text"), (erased.as_str(), "retention.evidence")],
        "{run}"
    );
    assert_eq!(run["held"], serde_json::json!([held]));
    assert!(run["shared_kept"].as_u64().unwrap() >= 1, "the shared justification is kept: {run}");

    // The clear text past its term is gone, the shared justification stays, the blob is gone.
    let view = show(&w, &erased);
    assert_eq!(view["justification"], "quarter close for finance", "still needed by {open}");
    assert_eq!(view["comments"][0]["text"], "[erased]");
    let trail = w.writ(&["change", "show", &erased]).ok();
    assert!(
        trail.contains("ERASED     clear text of")
            && trail.contains("under retention rule retention.clear_text on"),
        "{trail}"
    );
    // Every blob the change's events reference (the attached file and what Writ captured) is
    // erased, but those another change still holds (equal plans are one blob).
    let digests = |id: &str| -> std::collections::BTreeSet<String> {
        show(&w, id)["events"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| {
                e["evidence"].as_array().unwrap().iter().map(|b| b["sha256"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let gone: std::collections::BTreeSet<String> = view["erasures"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["blobs"].as_array().unwrap().iter().map(|b| b.as_str().unwrap().to_owned()))
        .collect();
    let others: std::collections::BTreeSet<String> = digests(&held).union(&digests(&open)).cloned().collect();
    assert!(gone.contains(&erased_blob), "the attached file is erased");
    for digest in digests(&erased) {
        assert_eq!(gone.contains(&digest), !others.contains(&digest), "{digest}");
    }
    assert!(
        trail.contains(&format!(
            "ERASED     {} evidence blob(s) under retention rule retention.evidence",
            gone.len()
        )),
        "{trail}"
    );
    let fetched =
        w.writ(&["evidence", "get", &erased_blob, "--out", w.dir.path().join("a.out").to_str().unwrap()]);
    assert_ne!(fetched.code, 0, "the erased blob is gone");
    let db = rusqlite::Connection::open(&w.db).unwrap();
    let kept: i64 = db
        .query_row("SELECT count(*) FROM sensitive WHERE value LIKE '%personal note on a.txt%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kept, 0, "the comment's clear text is deleted, not hidden");
    // The held change keeps everything.
    let view = show(&w, &held);
    assert_eq!(view["comments"][0]["text"], "personal note on b.txt");
    assert_eq!(view["legal_hold"]["by"], "erin");
    w.writ(&["evidence", "get", &held_blob, "--out", w.dir.path().join("b.out").to_str().unwrap()]).ok();
    // The ledger still verifies, and so does a bundle of the erased change, offline.
    w.writ(&["ledger", "verify"]).ok();
    w.writ(&["ledger", "checkpoint"]).ok();
    let out = w.dir.path().join("erased-bundle");
    w.writ(&["audit", "bundle", "--change", &erased, "--out", out.to_str().unwrap()]).ok();
    let verified = w.writ(&["audit", "verify", out.to_str().unwrap()]).ok();
    assert!(verified.contains("under retention rule retention.evidence"), "{verified}");
    // A second run erases nothing more; lifting the hold lets the next run erase the rest.
    assert_eq!(w.writ(&["retention", "run", "--json"]).json()["erased"], serde_json::json!([]));
    w.writ(&["change", "release", &held, "--as", "erin", "--reason", "case closed"]).ok();
    let run = w.writ(&["retention", "run", "--json"]).json();
    // The held change's clear text and blobs, and the blob it shared with the first one.
    let mut erased_now: Vec<(&str, &str, u64)> = run["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["change"].as_str().unwrap(), e["rule"].as_str().unwrap(), e["blobs"].as_u64().unwrap()))
        .collect();
    erased_now.sort();
    let shared =
        others.iter().filter(|d| digests(&erased).contains(*d) && !digests(&open).contains(*d)).count();
    let mut want = vec![
        (held.as_str(), "retention.clear_text", 0),
        (held.as_str(), "retention.evidence", digests(&held).len() as u64),
    ];
    if shared > 0 {
        want.push((erased.as_str(), "retention.evidence", shared as u64));
    }
    want.sort();
    assert_eq!(erased_now, want, "{run}");
    assert_eq!(show(&w, &held)["comments"][0]["text"], "[erased]");
    w.writ(&["ledger", "verify"]).ok();
    // Each change's own bundle says why its blobs are missing, shared ones included.
    w.writ(&["ledger", "checkpoint"]).ok();
    for id in [&erased, &held] {
        let out = w.dir.path().join(format!("bundle-{id}"));
        w.writ(&["audit", "bundle", "--change", id, "--out", out.to_str().unwrap()]).ok();
        w.writ(&["audit", "verify", out.to_str().unwrap()]).ok();
    }
}

#[test]
fn a_persons_erasure_request_is_approved_by_another_admin_then_their_closed_changes_lose_their_clear_text() {
    let w = World::new();
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "erin", "auditor"]).ok();
    let ask = |who: &str, why: &str| {
        w.request_with(&[
            "--as",
            "alice",
            "--identity",
            who,
            "--grant",
            "access:eng-read",
            "--justification",
            why,
        ])
    };
    let closed = ask("dave", "dave's medical leave cover");
    w.writ(&["change", "reject", &closed, "--as", "bob", "--reason", "dave is on leave until May"]).ok();
    let held = ask("dave", "dave's disciplinary case");
    w.writ(&["change", "reject", &held, "--as", "bob", "--reason", "case file DC-3"]).ok();
    w.writ(&["change", "hold", &held, "--as", "erin", "--reason", "litigation"]).ok();
    let open = ask("dave", "dave's return to work");
    let other = ask("carol", "carol's audit sample");
    w.writ(&["change", "reject", &other, "--as", "bob", "--reason", "not needed"]).ok();

    let asked =
        w.writ(&["erase", "--subject", "dave", "--as", "alice", "--reference", "DSAR-12", "--json"]).json();
    let id = asked["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ERS-"), "{asked}");
    // Nothing is erased before an approval, and only an admin who is neither its requester
    // nor its subject approves it.
    assert_eq!(show(&w, &closed)["justification"], "dave's medical leave cover");
    w.writ(&["role", "grant", "alice", "admin"]).ok();
    w.writ(&["role", "grant", "dave", "admin"]).ok();
    for (who, code) in
        [("bob", "authority.not_yours"), ("alice", "sod.self_approval"), ("dave", "sod.self_approval")]
    {
        let before = w.fingerprint();
        let refused = w.writ(&["erase", "approve", &id, "--as", who]);
        assert_eq!(error_code(&refused), code, "{who}: {}", refused.stderr);
        assert_eq!(w.fingerprint(), before, "{who}'s refused approval changed something");
    }
    w.writ(&["role", "grant", "carol", "admin"]).ok();
    let approved = w.writ(&["erase", "approve", &id, "--as", "carol", "--json"]).json();
    let rule = format!("erasure.{id}");
    let erased: Vec<(&str, &str)> = approved["run"]["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["change"].as_str().unwrap(), e["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(erased, [(closed.as_str(), rule.as_str())], "{approved}");
    assert_eq!(approved["run"]["held"], serde_json::json!([held]));
    assert_eq!(error_code(&w.writ(&["erase", "approve", &id, "--as", "carol"])), "state.invalid_transition");
    // The closed change lost its clear text; the held, the open and carol's keep theirs.
    let view = show(&w, &closed);
    assert_eq!(
        (view["justification"].as_str(), view["closing"]["reason"].as_str()),
        (Some("[erased]"), Some("[erased]"))
    );
    let trail = w.writ(&["change", "show", &closed]).ok();
    assert!(trail.contains(&format!("under retention rule {rule} on")), "{trail}");
    assert_eq!(show(&w, &held)["justification"], "dave's disciplinary case");
    assert_eq!(show(&w, &open)["justification"], "dave's return to work");
    assert_eq!(show(&w, &other)["justification"], "carol's audit sample");
    // The open one is erased once it closes.
    w.writ(&["change", "cancel", &open, "--as", "alice", "--reason", "back already"]).ok();
    let run = w.writ(&["retention", "run", "--json"]).json();
    assert_eq!(run["erased"][0]["change"], open.as_str(), "{run}");
    assert_eq!(show(&w, &open)["justification"], "[erased]");
    let listed = w.writ(&["erase", "list", "--json"]).json();
    assert_eq!(
        (listed["items"][0]["id"].as_str(), listed["items"][0]["approved_by"].as_str()),
        (Some(id.as_str()), Some("carol"))
    );
    w.writ(&["ledger", "verify"]).ok();
}
