//! The steps of the demo's story, shared by its git part and its real-targets part: a heading,
//! a request, the chain run to review, and the trail printed with its proof.

use anyhow::bail;
use writ_core::change::{BusinessEvent, ChangeId, ExternalRef, Justification, OpAction, RefKind};
use writ_core::name::{EntitlementRef, IdentityName};
use writ_engine::{Engine, RequestInput, RequestedOp};
use writ_ledger::checkpoint::NoteSigner;

pub fn heading(text: &str) {
    println!("\n== {text}");
}

pub fn name_of(name: &str) -> anyhow::Result<IdentityName> {
    Ok(IdentityName::parse(name)?)
}

pub fn request(
    engine: &Engine,
    who: &str,
    ops: &[(OpAction, &str)],
    event: BusinessEvent,
    ticket: &str,
    why: &str,
) -> anyhow::Result<ChangeId> {
    let ops = ops
        .iter()
        .map(|(action, entitlement)| {
            Ok(RequestedOp {
                action: *action,
                identity: name_of(who)?,
                entitlement: EntitlementRef::parse(entitlement)?,
                duration: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let input = RequestInput {
        requester: name_of("alice")?,
        on_behalf_of: None,
        ops,
        justification: Justification::parse(why)?,
        refs: vec![ExternalRef::new(RefKind::Ticket, ticket)?],
        event,
        window: None,
        rollback_owner: None,
    };
    let record = engine.request(input, writ_engine::random_bits()?)?;
    println!("  requested {} by alice ({event}, ticket {ticket})", record.change.id);
    Ok(record.change.id)
}

pub fn complete(engine: &Engine, signer: &NoteSigner, id: &ChangeId) -> anyhow::Result<()> {
    engine.approve(id, &name_of("bob")?, None, None)?;
    run_to_review(engine, id)?;
    print_trail(engine, signer, id)
}

pub fn run_to_review(engine: &Engine, id: &ChangeId) -> anyhow::Result<()> {
    let executed = engine.execute(id, None)?;
    if let Some(error) = executed.change.last_execution().and_then(|e| e.error.clone()) {
        bail!("{id} failed: {error}");
    }
    engine.verify(id)?;
    engine.review(
        id,
        &name_of("carol")?,
        "matches the ticket; observed state equals approved state".into(),
    )?;
    Ok(())
}

pub fn print_trail(engine: &Engine, signer: &NoteSigner, id: &ChangeId) -> anyhow::Result<()> {
    engine.checkpoint(signer)?;
    let sizes: Vec<u64> = engine.store().checkpoints()?.iter().map(|c| c.size).collect();
    println!(
        "{}",
        writ_api::text::trail(&writ_api::view::ChangeView::of(&engine.load(id)?, &sizes))
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
