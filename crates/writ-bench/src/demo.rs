//! `writ-bench demo`: real changes through the whole chain on a fresh embedded database and a real git
//! repository, printing the reconstructed trail of each. Nothing is simulated. With `--targets
//! all`, the chain continues on real PostgreSQL, slapd and OpenBao servers (`demo_targets`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::story::{complete, heading, name_of, print_trail, request, run_to_review};

use anyhow::{Context, bail};
use writ_core::change::{BusinessEvent, OpAction};
use writ_core::identity::{Actor, ConnectorKind, IdentityKind, SystemActor};
use writ_core::name::TargetName;
use writ_store_sqlite::{OpenMode, SqliteStore};

const ACCESS_FILE: &str = r#"# Access as code: each entitlement lists its members.
# Writ changes this file only through approved changes; every commit carries Writ-Change.

[entitlements.eng-read]
description = "Read engineering repositories"
members = []

[entitlements.deploy-prod]
description = "Deploy to production"
members = []

[entitlements.finance-read]
description = "Read the finance ledger"
members = []
"#;

pub fn run(keep: Option<&Path>, all_targets: bool) -> anyhow::Result<()> {
    let temporary;
    let dir: PathBuf = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!("{} is not empty; give --keep a new or empty directory", dir.display());
            }
            dir.to_owned()
        }
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path().to_owned()
        }
    };
    let repo = dir.join("access-repo");
    make_repository(&repo)?;
    let hmac = writ_server::keys::create_hmac(&dir.join("writ.db.hmac"))?;
    let engine = writ_server::compose::engine_over(
        Arc::new(SqliteStore::open(&dir.join("writ.db"), OpenMode::Create)?),
        Some(hmac),
    );
    let signer = writ_server::keys::create(&dir.join("writ.db.key"), &writ_server::keys::new_origin()?)?;
    engine.init_ledger(&signer)?;

    heading("Setup: people, a service account, and an access-as-code repository");
    let admin = Actor::System(SystemActor::Admin);
    for (name, role) in [
        ("alice", "engineering manager"),
        ("bob", "security approver"),
        ("carol", "reviewer"),
        ("dave", "new engineer"),
    ] {
        engine.add_identity(admin.clone(), name_of(name)?, IdentityKind::Human, None, None)?;
        println!("  identity  {name:<8} human ({role})");
    }
    engine.add_identity(
        admin.clone(),
        name_of("svc-ci")?,
        IdentityKind::ServiceAccount,
        Some(&name_of("alice")?),
        None,
    )?;
    println!("  identity  svc-ci   service_account, owned by alice");
    let target = TargetName::parse("access")?;
    engine.add_target(
        admin,
        target.clone(),
        ConnectorKind::parse("git")?,
        vec![("repo".into(), repo.display().to_string())],
    )?;
    let entitlements: Vec<String> = engine.entitlements(&target)?.iter().map(ToString::to_string).collect();
    println!("  target    access   git repository with {}", entitlements.join(", "));

    heading("1. Joiner: dave joins engineering and gets read access");
    let joiner = request(
        &engine,
        "dave",
        &[(OpAction::Grant, "access:eng-read")],
        BusinessEvent::Joiner,
        "HR-1001",
        "new engineer on the payments team",
    )?;
    complete(&engine, &signer, &joiner)?;

    heading("2. Mover: dave moves to finance; the old entitlement goes in the same change");
    let mover = request(
        &engine,
        "dave",
        &[(OpAction::Revoke, "access:eng-read"), (OpAction::Grant, "access:finance-read")],
        BusinessEvent::Mover,
        "HR-1002",
        "transfer to finance operations",
    )?;
    complete(&engine, &signer, &mover)?;

    heading(
        "3. Separation of duties: alice asks for deploy rights for the CI service account she owns, then tries to approve it herself",
    );
    let deploy = request(
        &engine,
        "svc-ci",
        &[(OpAction::Grant, "access:deploy-prod")],
        BusinessEvent::Deploy,
        "CHG-PLAT-77",
        "CI needs to deploy the payments service",
    )?;
    let mut unchanged = Vec::new();
    let before = engine.store().event_count()?;
    match engine.approve(&deploy, &name_of("alice")?, None, None) {
        Ok(_) => bail!("self-approval was accepted; this is a bug"),
        Err(refusal) => println!("  refused   [{}] {refusal}", refusal.code()),
    }
    unchanged.push((before, engine.store().event_count()?));
    engine.approve(&deploy, &name_of("bob")?, None, None)?;
    println!("  approved  by bob");
    let before = engine.store().event_count()?;
    match engine.execute(&deploy, Some(&name_of("bob")?)) {
        Ok(_) => bail!("execution by the approver was accepted; this is a bug"),
        Err(refusal) => println!("  refused   [{}] {refusal}", refusal.code()),
    }
    unchanged.push((before, engine.store().event_count()?));
    if unchanged.iter().any(|(before, after)| before != after) {
        bail!("a refusal wrote to the ledger: {unchanged:?}");
    }
    println!("  each refusal left the ledger as it was (event counts {unchanged:?})");
    run_to_review(&engine, &deploy)?;
    print_trail(&engine, &signer, &deploy)?;

    heading("4. Leaver: dave leaves; everything Writ granted him is revoked and verified gone");
    let held: Vec<String> =
        engine.grants_of(&name_of("dave")?)?.iter().map(|g| g.entitlement.to_string()).collect();
    let ops: Vec<(OpAction, &str)> = held.iter().map(|e| (OpAction::Revoke, e.as_str())).collect();
    let leaver = request(&engine, "dave", &ops, BusinessEvent::Leaver, "HR-1003", "last working day")?;
    complete(&engine, &signer, &leaver)?;
    println!("  dave now holds {} grant(s)", engine.grants_of(&name_of("dave")?)?.len());

    heading("5. Reconciliation: someone gives dave deploy rights by editing the access file by hand");
    let edited = std::fs::read_to_string(repo.join("access.toml"))?.replacen(
        "[entitlements.deploy-prod]\ndescription = \"Deploy to production\"\nmembers = [",
        "[entitlements.deploy-prod]\ndescription = \"Deploy to production\"\nmembers = [\"dave\", ",
        1,
    );
    std::fs::write(repo.join("access.toml"), edited)?;
    git(
        &repo,
        &["-c", "user.name=Mallory", "-c", "user.email=m@example.invalid", "commit", "-qam", "quick fix"],
    )?;
    let admin = Actor::System(SystemActor::Admin);
    let report = engine.reconcile_target(admin, &TargetName::parse("access")?)?;
    let shown = writ_api::text::reconcile_run(&writ_api::view::ReconcileView::of(&report));
    println!("{}", shown.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"));
    let Some(found) = report.opened.iter().find(|f| f.kind == "access.unapproved") else {
        bail!("the hand edit was not found by reconciliation; this is a bug");
    };
    let (_, fix) =
        engine.remediate_finding(&name_of("alice")?, &found.id, None, writ_engine::random_bits()?)?;
    println!("  remediate {} opened {} (revoke, through approval)", found.id, fix.change.id);
    complete(&engine, &signer, &fix.change.id)?;
    let resolved = engine.finding(&found.id)?;
    println!("  {} is {}: the fix is verified on the repository", resolved.id, resolved.state);

    if all_targets {
        crate::demo_targets::run(&engine, &signer)?;
    }

    heading("The ledger: every event above is a leaf of a Merkle tree under a signed checkpoint");
    let trusted = [signer.verifier()];
    let report = engine.verify_ledger(&trusted, true)?;
    if !report.ok() {
        bail!("the demo's own ledger does not verify: {:?}", report.problems);
    }
    let newest = engine.store().checkpoints()?.pop();
    println!(
        "  verified {} events against {} signed checkpoints",
        report.events,
        report.verified_checkpoints.len()
    );
    if let Some(newest) = newest {
        println!(
            "{}",
            newest.note.trim_end().lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
        );
    }

    heading("The access repository's history: every commit carries its change ID");
    let log = git(
        &repo,
        &[
            "log",
            "--format=%h %an: %s%n        %(trailers:key=Writ-Change,key=Writ-Approved-By,separator=%x2C )",
        ],
    )?;
    println!("{log}");
    if keep.is_some() {
        println!("\nkept: database {} and repository {}", dir.join("writ.db").display(), repo.display());
        println!("try:  writ --db {} change list", dir.join("writ.db").display());
    }
    Ok(())
}

fn make_repository(repo: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo)?;
    git(repo, &["init", "-q", "-b", "main"])?;
    std::fs::write(repo.join("access.toml"), ACCESS_FILE)?;
    git(repo, &["add", "access.toml"])?;
    git(
        repo,
        &[
            "-c",
            "user.name=Platform Team",
            "-c",
            "user.email=platform@example.invalid",
            "commit",
            "-q",
            "-m",
            "Define entitlements",
        ],
    )?;
    Ok(())
}

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .context("running git (is git installed?)")?;
    if !output.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
}
