//! Output: JSON for scripts (`--json`) or the text people read (`writ_api::text`).

use std::path::Path;

use writ_api::view::{IssuedTokenView, TokenView};

use crate::CliError;

/// Prints `value` as JSON, or the text `text()` builds.
pub fn print(json: bool, value: impl serde::Serialize, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(&value).unwrap_or_default());
    } else {
        let text = text();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}

/// Prints a change's new state; a change that ended `failed` or `verification_failed` is an
/// error (exit 7) even though the step itself was recorded.
pub fn report_state(id: &str, state: &str, error: Option<&str>, json: bool) -> Result<(), CliError> {
    print(json, serde_json::json!({ "id": id, "state": state }), || format!("{id} {state}"));
    match state {
        "failed" => Err(CliError::new(
            "change.failed",
            format!(
                "{id} failed on a target: {}; run execute again to retry what is missing",
                error.unwrap_or_default()
            ),
        )),
        "verification_failed" => Err(CliError::new(
            "change.verification_failed",
            format!("{id}: observed state differs from the approved state (see `writ change show {id}`)"),
        )),
        _ => Ok(()),
    }
}

/// Prints reconciliation runs; exit 6 (`target.partial_observation`) if any was partial.
pub fn reconcile_runs(view: &writ_api::view::ReconcileRunsView, json: bool) -> Result<(), CliError> {
    print(json, view, || view.runs.iter().map(writ_api::text::reconcile_run).collect::<Vec<_>>().join("\n"));
    let partial: Vec<&str> = view.runs.iter().filter(|r| !r.complete).map(|r| r.scope.as_str()).collect();
    if partial.is_empty() {
        return Ok(());
    }
    Err(CliError::new(
        "target.partial_observation",
        format!(
            "{} could not be read in full: the run is recorded, but nothing missing was raised and nothing \
             resolved from it; fix access to the target and reconcile again",
            partial.join(", ")
        ),
    ))
}

/// Prints the paused scopes.
pub fn automation_status(paused: &[writ_api::view::FindingView], json: bool) {
    print(json, paused, || {
        if paused.is_empty() {
            return "no automation is paused".to_owned();
        }
        paused
            .iter()
            .map(|f| format!("{}  paused since {}  {}\n  {}", f.subject, f.opened_at, f.id, f.detail))
            .collect::<Vec<_>>()
            .join("\n")
    });
}

/// Prints a resumption.
pub fn resumed(view: &writ_api::view::ResumedView, json: bool) {
    print(json, view, || {
        format!("automation of {} resumed; {} held lifecycle step(s) proceeded", view.scope, view.settled)
    });
}

/// Prints a remediation: the finding and the change opened to fix it.
pub fn remediation(view: &writ_api::view::RemediationView, json: bool) {
    print(json, view, || {
        format!(
            "{} is being fixed by {} ({}): resolved once that change is verified",
            view.finding.id, view.change.id, view.change.state
        )
    });
}

/// Writes bytes to `out`, or to stdout.
/// One notification (`writ notify show`), or one made due again (`writ notify retry`).
pub fn notification(view: &writ_api::view::NotificationView, retried: bool, json: bool) {
    print(json, view, || {
        let line = writ_api::text::notifications(std::slice::from_ref(view));
        if retried { format!("{} is due again: {line}", view.id) } else { line }
    });
}

pub fn write_out(out: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    match out {
        Some(path) => std::fs::write(path, bytes)
            .map_err(|e| CliError::new("input.invalid_path", format!("{}: {e}", path.display()))),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(bytes).map_err(|e| CliError::new("internal", e.to_string()))
        }
    }
}

/// The text `writ token create` prints, with the token's one-time secret.
pub fn token_text(issued: &IssuedTokenView) -> String {
    let t = &issued.record;
    format!(
        "token {} for {} expires {}\n{}\n(shown once: store it in a secret manager)",
        t.id, t.identity, t.expires_at, issued.token
    )
}

/// The lines `writ token list` prints.
pub fn token_lines(tokens: &[TokenView]) -> String {
    tokens
        .iter()
        .map(|t| {
            let state = match &t.revoked_at {
                Some(at) => format!("revoked {at}"),
                None => format!("expires {}", t.expires_at),
            };
            format!("{}  {:<20} {:<24} {state}", t.id, t.identity, t.label)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
