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
use writ_api::view::{DeliveryRecordView, List};

fn outcome(text: Option<&str>) -> Result<Option<Outcome>, CliError> {
    Ok(text.map(Outcome::parse).transpose()?)
}

pub fn run_local(engine: &Engine, command: IntakeCmd, json: bool) -> Result<(), CliError> {
    let items = match command {
        IntakeCmd::List { outcome: wanted, limit } => {
            let records = engine.deliveries(outcome(wanted.as_deref())?, limit.clamp(1, 1000))?;
            records.iter().map(DeliveryRecordView::of).collect::<Vec<_>>()
        }
        IntakeCmd::Show { source, id } => {
            let view = DeliveryRecordView::of(&engine.delivery(&SourceName::parse(&source)?, &id)?);
            print(json, &view, || deliveries_text(std::slice::from_ref(&view)));
            return Ok(());
        }
    };
    let page = List { items };
    print(json, &page, || deliveries_text(&page.items));
    Ok(())
}

pub fn run_remote(client: &Client, command: IntakeCmd, json: bool) -> Result<(), CliError> {
    match command {
        IntakeCmd::List { outcome: wanted, limit } => {
            let mut path = format!("/api/v1/intake?limit={}", limit.clamp(1, 1000));
            if let Some(o) = outcome(wanted.as_deref())? {
                path.push_str(&format!("&outcome={o}"));
            }
            let page: List<DeliveryRecordView> = client.view("GET", &path, None)?;
            print(json, &page, || deliveries_text(&page.items));
        }
        IntakeCmd::Show { source, id } => {
            SourceName::parse(&source)?;
            writ_core::intake::key(&id, "delivery id")?;
            let path = format!("/api/v1/intake/{source}/{}", crate::http::percent(&id));
            let view: DeliveryRecordView = client.view("GET", &path, None)?;
            print(json, &view, || deliveries_text(std::slice::from_ref(&view)));
        }
    }
    Ok(())
}
