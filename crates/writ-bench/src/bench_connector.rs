//! The PostgreSQL connector's cost over the bare statements it runs: `n` grant + revoke pairs
//! through `Connector::apply` (one transaction each: advisory lock, catalog read, GRANT/REVOKE,
//! the change-ID row in `writ_audit.changes`) beside the same `n` pairs of bare autocommit
//! `GRANT`/`REVOKE` on the same server, in the same run.

use std::time::Instant;

use writ_connector::{ApplyContext, Connector, TargetOp};
use writ_connector_postgres::{PostgresConnector, PostgresSettings};
use writ_core::change::{ChangeId, OpAction};
use writ_core::name::{EntitlementName, IdentityName};
use writ_core::time::Timestamp;

use crate::table::Row;

pub fn run(config: &str, pairs: usize) -> anyhow::Result<Vec<Row>> {
    let mut admin = crate::bench_api::recreate_database(config, "writ_bench_target")?;
    admin.batch_execute(
        "DROP ROLE IF EXISTS wbt_read; DROP ROLE IF EXISTS wbt_user;
         CREATE ROLE wbt_read NOLOGIN; CREATE ROLE wbt_user LOGIN;",
    )?;
    let dsn = format!("{config} dbname=writ_bench_target");
    let mut bare = postgres::Client::connect(&dsn, postgres::NoTls)?;
    let start = Instant::now();
    for _ in 0..pairs {
        bare.batch_execute("GRANT wbt_read TO wbt_user")?;
        bare.batch_execute("REVOKE wbt_read FROM wbt_user")?;
    }
    let baseline = start.elapsed().as_secs_f64();
    let connector = PostgresConnector::connect(
        "bench",
        &PostgresSettings {
            dsn: dsn.clone(),
            roles: Some("wbt_read".into()),
            schemas: None,
            timeout: writ_connector::DEFAULT_TIMEOUT,
        },
        None,
    )?;
    let context = ApplyContext {
        change: ChangeId::generate(Timestamp::from_millis(0), 1),
        summary: "benchmark".into(),
        requester: "alice".into(),
        approvers: vec!["bob".into()],
        executor: "system:writ-engine".into(),
        at: Timestamp::from_millis(0),
    };
    let (entitlement, member) = (EntitlementName::parse("wbt_read")?, IdentityName::parse("wbt_user")?);
    let op =
        |action| TargetOp { action, entitlement: entitlement.clone(), member: member.clone(), ttl: None };
    let (grant, revoke) = (op(OpAction::Grant), op(OpAction::Revoke));
    let start = Instant::now();
    for _ in 0..pairs {
        connector.apply(&context, std::slice::from_ref(&grant))?;
        connector.apply(&context, std::slice::from_ref(&revoke))?;
    }
    let through = start.elapsed().as_secs_f64();
    drop(connector);
    drop(bare);
    admin.batch_execute("DROP DATABASE IF EXISTS writ_bench_target WITH (FORCE)")?;
    admin.batch_execute("DROP ROLE IF EXISTS wbt_read; DROP ROLE IF EXISTS wbt_user;")?;
    Ok(vec![
        Row::new(
            "postgres bare GRANT + REVOKE (baseline)",
            pairs,
            baseline,
            "autocommit, same server".into(),
        ),
        Row::new(
            "postgres connector grant + revoke",
            pairs,
            through,
            format!("{:.2}x the bare statements' time; target <= 1.3x", through / baseline.max(1e-9)),
        ),
    ])
}
