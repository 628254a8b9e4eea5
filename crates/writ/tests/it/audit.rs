//! Auditor bundles: written from a real database, verified offline in another directory with no
//! database, and refused when anything in them was altered.

use std::path::{Path, PathBuf};

use crate::harness::{Run, World};

fn writ_offline(args: &[&str]) -> Run {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(args)
        .env_remove("WRIT_DB")
        .output()
        .unwrap();
    Run::from_output(output)
}

/// A completed change with an attached file, checkpointed, bundled, and moved elsewhere.
fn bundled(scope: &[&str]) -> (World, String, PathBuf) {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    let file = w.dir.path().join("ticket.txt");
    std::fs::write(&file, b"JIRA-7: approved by the CAB").unwrap();
    w.writ(&["evidence", "add", &id, file.to_str().unwrap(), "--step", "request", "--as", "alice"]).ok();
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["change", "verify", &id]).ok();
    w.writ(&["change", "review", &id, "--as", "carol"]).ok();
    w.writ(&["ledger", "checkpoint"]).ok();
    let out = w.dir.path().join("bundle");
    let mut args = vec!["audit", "bundle", "--out", out.to_str().unwrap()];
    let scope: Vec<&str> = scope.iter().map(|s| if *s == "ID" { id.as_str() } else { s }).collect();
    args.extend(scope);
    w.writ(&args).ok();
    let elsewhere = tempfile::tempdir().unwrap().keep().join("copy");
    copy_dir(&out, &elsewhere);
    (w, id, elsewhere)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("evidence")).unwrap();
    for entry in walk(from) {
        let relative = entry.strip_prefix(from).unwrap();
        std::fs::copy(&entry, to.join(relative)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

fn public_key(w: &World) -> String {
    let mut name = w.db.as_os_str().to_owned();
    name.push(".key");
    let text = std::fs::read_to_string(PathBuf::from(name)).unwrap();
    writ_ledger::checkpoint::NoteSigner::parse(&text).unwrap().verifier().to_text()
}

#[test]
fn a_copied_bundle_verifies_with_no_database_and_prints_the_trail() {
    let (w, id, bundle) = bundled(&["--change", "ID"]);
    drop(std::fs::remove_file(&w.db));
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap(), "--trusted-key", &public_key(&w)]);
    let text = run.ok();
    assert!(text.starts_with("bundle ok: 8 events"), "{text}");
    for needle in [
        id.as_str(),
        "asked      alice",
        "approved   bob",
        "executed   system:writ-engine",
        "reviewed   carol",
        "ticket.txt",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    let json = writ_offline(&["audit", "verify", bundle.to_str().unwrap(), "--json"]).json();
    assert_eq!(json["changes"][0]["answers"]["who_approved"][0], "bob");
    assert!(json["trusted"].as_str().unwrap().contains("pass --trusted-key"));
    // Six references, five blobs: the plan at request time and the state observed just before
    // execution are byte-identical here, and content addressing stores them once.
    let references = json["changes"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["evidence"].as_array().unwrap().len())
        .sum::<usize>();
    assert_eq!(references, 6);
    assert_eq!(std::fs::read_dir(bundle.join("evidence")).unwrap().count(), 5);
}

#[test]
fn a_whole_log_bundle_verifies() {
    let (w, _, bundle) = bundled(&["--all"]);
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap(), "--trusted-key", &public_key(&w)]);
    assert!(run.ok().starts_with("bundle ok: 14 events"), "{}", run.stdout);
}

#[test]
fn an_altered_evidence_blob_fails() {
    let (_, _, bundle) = bundled(&["--change", "ID"]);
    let blob = walk(&bundle.join("evidence")).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap()]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(run.stderr.contains("was altered"), "{}", run.stderr);
}

#[test]
fn an_edited_event_fails_even_with_a_rewritten_manifest() {
    let (_, _, bundle) = bundled(&["--change", "ID"]);
    let events = std::fs::read_to_string(bundle.join("events.jsonl")).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<serde_json::Value> =
        events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let position = lines
        .iter()
        .position(|l| {
            String::from_utf8(b64.decode(l["record"].as_str().unwrap()).unwrap())
                .unwrap()
                .contains("change.approved")
        })
        .unwrap();
    let record = String::from_utf8(b64.decode(lines[position]["record"].as_str().unwrap()).unwrap()).unwrap();
    let forged = record.replacen("\"bob\"", "\"eve\"", 1);
    assert_ne!(forged, record);
    lines[position]["record"] = serde_json::Value::String(b64.encode(forged.as_bytes()));
    let rewritten: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(bundle.join("events.jsonl"), &rewritten).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    manifest["files"]["events.jsonl"] =
        serde_json::Value::String(hex::encode(writ_ledger::sha256(rewritten.as_bytes())));
    std::fs::write(bundle.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap()]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(run.stderr.contains("is not included in the signed checkpoint"), "{}", run.stderr);
}

#[test]
fn a_bundle_re_signed_with_another_key_fails_against_the_pinned_key() {
    let (w, _, bundle) = bundled(&["--change", "ID"]);
    let note = std::fs::read_to_string(bundle.join("checkpoint.note")).unwrap();
    let origin = note.lines().next().unwrap();
    let attacker = writ_ledger::checkpoint::NoteSigner::from_seed(origin, [7; 32]).unwrap();
    let body = note.split("\n\n").next().unwrap();
    let mut lines = body.lines();
    let checkpoint = writ_ledger::checkpoint::Checkpoint {
        origin: lines.next().unwrap().to_owned(),
        size: lines.next().unwrap().parse().unwrap(),
        root: [1; 32],
    };
    std::fs::write(bundle.join("checkpoint.note"), attacker.sign(&checkpoint)).unwrap();
    std::fs::write(bundle.join("public.key"), format!("{}\n", attacker.verifier().to_text())).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    for name in ["checkpoint.note", "public.key"] {
        manifest["files"][name] = serde_json::Value::String(hex::encode(writ_ledger::sha256(
            &std::fs::read(bundle.join(name)).unwrap(),
        )));
    }
    std::fs::write(bundle.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap(), "--trusted-key", &public_key(&w)]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(run.stderr.contains("not signed by any trusted key"), "{}", run.stderr);
}

/// Rewrites one bundle file and its manifest entry, as an attacker who knows the format would.
fn rewrite(bundle: &Path, name: &str, content: &str) {
    std::fs::write(bundle.join(name), content).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    manifest["files"][name] = serde_json::Value::String(hex::encode(writ_ledger::sha256(content.as_bytes())));
    std::fs::write(bundle.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
}

#[test]
fn a_whole_log_bundle_with_a_deleted_event_fails() {
    let (w, _, bundle) = bundled(&["--all"]);
    let events = std::fs::read_to_string(bundle.join("events.jsonl")).unwrap();
    let kept: String =
        events.lines().enumerate().filter(|(i, _)| *i != 9).map(|(_, l)| format!("{l}\n")).collect();
    rewrite(&bundle, "events.jsonl", &kept);
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap(), "--trusted-key", &public_key(&w)]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(run.stderr.contains("event 9 is missing"), "{}", run.stderr);
}

#[test]
fn swapped_or_duplicated_events_in_a_bundle_fail() {
    let (w, _, bundle) = bundled(&["--all"]);
    let events = std::fs::read_to_string(bundle.join("events.jsonl")).unwrap();
    let mut lines: Vec<serde_json::Value> =
        events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (a, b) = (lines[7]["record"].clone(), lines[8]["record"].clone());
    lines[7]["record"] = b;
    lines[8]["record"] = a;
    rewrite(&bundle, "events.jsonl", &lines.iter().map(|l| format!("{l}\n")).collect::<String>());
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap(), "--trusted-key", &public_key(&w)]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(run.stderr.contains("event 7 is not included"), "{}", run.stderr);
    let mut doubled: Vec<String> = events.lines().map(String::from).collect();
    doubled.push(doubled[3].clone());
    rewrite(&bundle, "events.jsonl", &doubled.iter().map(|l| format!("{l}\n")).collect::<String>());
    let run = writ_offline(&["audit", "verify", bundle.to_str().unwrap(), "--trusted-key", &public_key(&w)]);
    assert!(run.stderr.contains("appears twice"), "{}", run.stderr);
}
