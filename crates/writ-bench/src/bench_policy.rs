//! Policy figures for `writ-bench bench`: decisions per second with the default pack, and the policy
//! work of one lifecycle set against the lifecycle rate measured in the same run.
//!
//! One lifecycle asks policy for three validations (at request, before the approval and before
//! execution, where it is evaluated again) and three Cedar decisions (approve, execute, review).

use std::time::Instant;

use writ_policy::{Act, ChangeFacts, OpFacts, Person, Policy};

use crate::table::Row;

fn facts(i: usize) -> ChangeFacts {
    ChangeFacts {
        kind: "grant".into(),
        event: "joiner".into(),
        requester: Person::human("alice"),
        on_behalf_of: None,
        vendor: None,
        has_ticket: true,
        emergency: false,
        ops: vec![OpFacts {
            action: "grant".into(),
            identity: Person::human(&format!("user{i}")),
            owner: None,
            entitlement: if i.is_multiple_of(2) { "db:analytics_read".into() } else { "db:db_admin".into() },
            duration: None,
        }],
        tier: "low".into(),
        approvers: vec!["bob".into()],
        executors: Vec::new(),
        window: None,
        now: None,
        rollback_owner: None,
    }
}

/// `lifecycle_rate`: sequential lifecycles per second measured in this run.
pub fn run(count: usize, lifecycle_rate: f64) -> anyhow::Result<Vec<Row>> {
    let policy = Policy::default_pack()?;
    let engine = Person { kind: "system".into(), ..Person::human("system:writ-engine") };
    let carol = Person::human("carol");
    let changes: Vec<ChangeFacts> = (0..64).map(facts).collect();
    let start = Instant::now();
    for i in 0..count {
        let facts = changes.get(i % changes.len()).ok_or_else(|| anyhow::anyhow!("no facts"))?;
        policy.validate(facts).map_err(|d| anyhow::anyhow!("{d}"))?;
    }
    let validations = Row::new(
        "policy: validation (Cedar + rules), default pack",
        count,
        start.elapsed().as_secs_f64(),
        String::new(),
    );
    let start = Instant::now();
    for i in 0..count {
        let facts = changes.get(i % changes.len()).ok_or_else(|| anyhow::anyhow!("no facts"))?;
        let (act, who) = match i % 3 {
            0 => (Act::Approve, &carol),
            1 => (Act::Execute, &engine),
            _ => (Act::Review, &carol),
        };
        if act == Act::Review {
            policy.authorize(
                act,
                who,
                &ChangeFacts { executors: vec![engine.name.clone()], ..facts.clone() },
                None,
            )
        } else {
            policy.authorize(act, who, facts, None)
        }
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    }
    let decisions = Row::new(
        "policy: Cedar decision (approve/execute/review)",
        count,
        start.elapsed().as_secs_f64(),
        String::new(),
    );
    let per_lifecycle = 3.0 / validations.rate() + 3.0 / decisions.rate();
    let lifecycle = 1.0 / lifecycle_rate.max(1e-9);
    let share = per_lifecycle / (lifecycle - per_lifecycle).max(1e-9);
    let note = format!(
        "policy work of one lifecycle: {:.0} µs of {:.0} µs, slows it {:.1}% (target <= 20%)",
        per_lifecycle * 1e6,
        lifecycle * 1e6,
        share * 100.0
    );
    let lifecycles = Row::new(
        "policy: one lifecycle's policy work (3 validations + 3 decisions)",
        count / 3,
        per_lifecycle * (count / 3) as f64,
        note,
    );
    Ok(vec![validations, decisions, lifecycles])
}
