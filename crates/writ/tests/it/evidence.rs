//! Evidence captured at each step, files attached by people, and blobs fetched by digest.

use crate::harness::World;

#[test]
fn every_step_captures_its_evidence_and_the_event_carries_the_digest() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["change", "verify", &id]).ok();
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    let labels: Vec<(String, String)> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            let kind = e["type"].as_str().unwrap().to_owned();
            e["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |x| (kind.clone(), x["label"].as_str().unwrap().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let expected = [
        ("change.requested", "connector-plan"),
        ("change.approved", "approval-context"),
        ("change.execution_started", "observed-before"),
        ("change.implemented", "apply-result"),
        ("change.verified", "observed-after"),
    ];
    assert_eq!(labels, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let implemented =
        show["events"].as_array().unwrap().iter().find(|e| e["type"] == "change.implemented").unwrap();
    let digest = implemented["evidence"][0]["sha256"].as_str().unwrap();
    let blob: serde_json::Value = serde_json::from_str(&w.writ(&["evidence", "get", digest]).ok()).unwrap();
    let commit = show["operations"][0]["target_reference"].as_str().unwrap();
    assert_eq!(blob["targets"]["access"]["reference"], commit);
    assert_eq!(blob["targets"]["access"]["applied"][0]["after"], true);
    let before =
        show["events"].as_array().unwrap().iter().find(|e| e["type"] == "change.execution_started").unwrap();
    let before: serde_json::Value = serde_json::from_str(
        &w.writ(&["evidence", "get", before["evidence"][0]["sha256"].as_str().unwrap()]).ok(),
    )
    .unwrap();
    assert_eq!(before["targets"]["access"][0]["present_now"], false);
}

#[test]
fn a_person_attaches_a_file_and_gets_the_same_bytes_back() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    // Approval evidence comes from an approver (or who asked, an auditor, an admin).
    w.writ(&["role", "grant", "carol", "approver"]).ok();
    let file = w.dir.path().join("cab-minutes.txt");
    std::fs::write(&file, b"CAB approved on 2026-11-20\n").unwrap();
    let attached = w
        .writ(&[
            "evidence",
            "add",
            &id,
            file.to_str().unwrap(),
            "--step",
            "approval",
            "--as",
            "carol",
            "--media-type",
            "text/plain",
            "--json",
        ])
        .json();
    let digest = attached["sha256"].as_str().unwrap().to_owned();
    assert_eq!(digest, hex::encode(writ_ledger::sha256(b"CAB approved on 2026-11-20\n")));
    let listed = w.writ(&["evidence", "list", &id, "--json"]).json();
    let entry = listed.as_array().unwrap().iter().find(|e| e["sha256"] == digest.as_str()).unwrap();
    assert_eq!(entry["step"], "approval");
    assert_eq!(entry["label"], "cab-minutes.txt");
    let out = w.dir.path().join("back.txt");
    w.writ(&["evidence", "get", &digest, "--out", out.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&out).unwrap(), b"CAB approved on 2026-11-20\n");
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["state"], "pending_approval", "attaching evidence changes no state");
    let event = show["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(event["type"], "change.evidence_attached");
    assert_eq!(event["actor"], "carol");
    assert_eq!(event["evidence"][0]["sha256"], digest.as_str());
}

#[test]
fn bad_evidence_input_changes_nothing() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    let big = w.dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 16 * 1024 * 1024 + 1]).unwrap();
    let small = w.dir.path().join("small.txt");
    std::fs::write(&small, b"x").unwrap();
    let before = w.fingerprint();
    let cases: [(Vec<&str>, &str, i32); 5] = [
        (
            vec!["evidence", "add", &id, big.to_str().unwrap(), "--step", "approval", "--as", "carol"],
            "input.too_large",
            2,
        ),
        (
            vec!["evidence", "add", &id, small.to_str().unwrap(), "--step", "lunch", "--as", "carol"],
            "input.invalid_value",
            2,
        ),
        (
            vec!["evidence", "add", &id, small.to_str().unwrap(), "--step", "review", "--as", "mallory"],
            "not_found",
            4,
        ),
        (
            vec![
                "evidence",
                "add",
                "CHG-01M83SGPQACCJKTYMJ51ZX94Q4",
                small.to_str().unwrap(),
                "--step",
                "review",
                "--as",
                "carol",
            ],
            "not_found",
            4,
        ),
        (
            vec!["evidence", "add", &id, "/no/such/file", "--step", "review", "--as", "carol"],
            "input.invalid_path",
            2,
        ),
    ];
    for (args, code, exit) in cases {
        let run = w.writ(&args);
        assert_eq!(run.code, exit, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with(&format!("error[{code}]")), "{args:?}: {}", run.stderr);
    }
    assert_eq!(w.fingerprint(), before);
    let missing = w.writ(&["evidence", "get", &"ab".repeat(32)]);
    assert_eq!(missing.code, 4, "{}", missing.stderr);
}
