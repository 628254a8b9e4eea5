//! `writ intake`: the deliveries Writ received and the queue of those it could not correlate,
//! from the database or from a server.

use writ_core::intake::Outcome;
use writ_core::name::SourceName;
use writ_engine::Engine;

use crate::CliError;
use crate::cli::IntakeCmd;
use crate::http::Client;
use crate::render::print;
use writ_api::text::deliveries_text;
use writ_api::view::delivery_record_json;

fn outcome(text: Option<&str>) -> Result<Option<Outcome>, CliError> {
    Ok(text.map(Outcome::parse).transpose()?)
}

pub fn run_local(engine: &Engine, command: IntakeCmd, json: bool) -> Result<(), CliError> {
    let items = match command {
        IntakeCmd::List { outcome: wanted, limit } => {
            let records = engine.deliveries(outcome(wanted.as_deref())?, limit.clamp(1, 1000))?;
            records.iter().map(delivery_record_json).collect::<Vec<_>>()
        }
        IntakeCmd::Show { source, id } => {
            let record = engine.delivery(&SourceName::parse(&source)?, &id)?;
            let value = delivery_record_json(&record);
            print(json, value.clone(), || deliveries_text(&[value]));
            return Ok(());
        }
    };
    print(json, serde_json::json!({ "items": items }), || deliveries_text(&items));
    Ok(())
}

pub fn run_remote(client: &Client, command: IntakeCmd, json: bool) -> Result<(), CliError> {
    match command {
        IntakeCmd::List { outcome: wanted, limit } => {
            let mut path = format!("/api/v1/intake?limit={}", limit.clamp(1, 1000));
            if let Some(o) = outcome(wanted.as_deref())? {
                path.push_str(&format!("&outcome={o}"));
            }
            let value = client.json("GET", &path, None)?;
            let items = value.get("items").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
            print(json, value, || deliveries_text(&items));
        }
        IntakeCmd::Show { source, id } => {
            SourceName::parse(&source)?;
            writ_core::intake::key(&id, "delivery id")?;
            let value = client.json(
                "GET",
                &format!("/api/v1/intake/{source}/{}", crate::http::percent(&id)),
                None,
            )?;
            print(json, value.clone(), || deliveries_text(&[value]));
        }
    }
    Ok(())
}
