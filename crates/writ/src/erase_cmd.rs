//! `writ erase` and `writ retention run`: a person's request to erase what Writ keeps about
//! them (recorded, approved by someone else, then carried out), and what a run erased.

use serde_json::{Value, json};
use writ_core::name::IdentityName;
use writ_engine::Engine;
use writ_engine::retention::{ErasureRequest, RetentionReport};

use crate::CliError;
use crate::cli::{EraseArgs, EraseCmd};
use crate::render::print;

pub fn run_local(engine: &Engine, args: EraseArgs, json: bool) -> Result<(), CliError> {
    match (args.command, args.subject, args.actor, args.reference) {
        (Some(EraseCmd::List), ..) => {
            let requests = engine.erasure_requests()?;
            let items: Vec<Value> = requests.iter().map(request_json).collect();
            print(json, json!({ "items": items }), || {
                if requests.is_empty() {
                    return "no erasure requests".to_owned();
                }
                requests.iter().map(request_text).collect::<Vec<_>>().join("\n")
            });
            Ok(())
        }
        (Some(EraseCmd::Approve { id, actor }), ..) => {
            let (request, report) = engine.approve_erasure(&id, &IdentityName::parse(&actor)?)?;
            if json {
                print(
                    true,
                    json!({ "request": request_json(&request), "run": report_json(&report) }),
                    String::new,
                );
            } else {
                println!("{}", request_text(&request));
                print_report(&report, false);
            }
            Ok(())
        }
        (None, Some(subject), Some(actor), Some(reference)) => {
            let request = engine.request_erasure(
                &IdentityName::parse(&subject)?,
                &IdentityName::parse(&actor)?,
                &reference,
                writ_engine::random_bits()?,
            )?;
            print(json, request_json(&request), || {
                format!(
                    "{} asked: erase what is kept about {} (approve with `writ erase approve {} --as ADMIN`)",
                    request.id, request.subject, request.id
                )
            });
            Ok(())
        }
        _ => Err(CliError::new(
            "input.missing_option",
            "give --subject NAME --as PERSON --reference REF to ask, or `approve ERS-… --as ADMIN`, or `list`",
        )),
    }
}

fn request_json(request: &ErasureRequest) -> Value {
    json!({
        "id": request.id,
        "subject": request.subject.as_str(),
        "requester": request.requester.as_str(),
        "reference": request.reference,
        "requested_at": request.requested_at.to_rfc3339(),
        "approved_by": request.approved.as_ref().map(|(who, _)| who.as_str()),
        "approved_at": request.approved.as_ref().map(|(_, at)| at.to_rfc3339()),
    })
}

fn request_text(request: &ErasureRequest) -> String {
    let state = match &request.approved {
        Some((who, at)) => format!("approved by {who} at {at}"),
        None => "waiting for approval".to_owned(),
    };
    format!(
        "{}  subject {}  asked by {} at {} ({})  {state}",
        request.id, request.subject, request.requester, request.requested_at, request.reference
    )
}

fn report_json(report: &RetentionReport) -> Value {
    json!({
        "erased": report.erased.iter().map(|(id, rule, values, blobs)| json!({
            "change": id.as_str(), "rule": rule, "values": values, "blobs": blobs,
        })).collect::<Vec<_>>(),
        "held": report.held.iter().map(writ_core::change::ChangeId::as_str).collect::<Vec<_>>(),
        "shared_kept": report.shared_kept,
    })
}

/// What a run erased, and what a legal hold kept.
pub fn print_report(report: &RetentionReport, json: bool) {
    print(json, report_json(report), || {
        let mut lines: Vec<String> = report
            .erased
            .iter()
            .map(|(id, rule, values, blobs)| {
                format!("erased {id} under {rule}: {values} sealed value(s), {blobs} evidence blob(s)")
            })
            .collect();
        lines.extend(report.held.iter().map(|id| format!("kept {id}: under legal hold")));
        if lines.is_empty() {
            lines.push("nothing is past its term".to_owned());
        }
        lines.join("\n")
    });
}
