//! The request bodies of the HTTP API and their conversion into the engine's inputs.
//!
//! Invariants:
//! - every body refuses unknown fields, so a misspelt field is an error, not a silent default;
//! - a body never names the actor: the requester is the authenticated caller, passed in by the
//!   server (or the `--as` of a local command), so the CLI and the API build the same input from
//!   the same fields and refuse the same input with the same code;
//! - a missing required field is `request.missing_field` naming the field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use writ_core::change::{BusinessEvent, ExternalRef, Justification, OpAction, RefKind};
use writ_core::name::{EntitlementRef, IdentityName};
use writ_core::time::{Duration, Timestamp};
use writ_engine::breakglass::BreakGlassInput;
use writ_engine::exceptions::{ExceptionInput, Term};
use writ_engine::{Engine, RequestInput, RequestedOp};

use crate::Error;

/// What the server accepts as a name (identities, targets): the core's rule, as a pattern the
/// OpenAPI document states.
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$";
/// `TARGET:ENTITLEMENT` (entitlement names may also hold `/`).
pub const ENTITLEMENT_PATTERN: &str =
    r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}:[A-Za-z0-9][A-Za-z0-9._@+/-]{0,127}$";
/// A duration: a number and a unit (s, m, h, d, w), positive and at most 366 days.
/// The schema states one component from 1 up to the 366-day bound (the server also takes sums
/// such as `1d2h`, each within the bound).
pub const DURATION_PATTERN: &str = concat!(
    r"^((36[0-6]|3[0-5][0-9]|[12][0-9]{2}|[1-9][0-9]?)d",
    r"|(5[0-2]|[1-4][0-9]|[1-9])w",
    r"|(878[0-4]|87[0-7][0-9]|8[0-6][0-9]{2}|[1-7][0-9]{3}|[1-9][0-9]{0,2})h",
    r"|[1-9][0-9]{0,4}m",
    r"|[1-9][0-9]{0,6}s)$"
);
/// The characters Rust's `char::is_whitespace` (and so `str::trim`) counts as blanks, as a regular
/// expression class body. Spelt out because `\s` differs between engines (ECMA-262's includes
/// U+FEFF and leaves out U+0085).
macro_rules! blank {
    () => {
        r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}
/// Control characters (Unicode category Cc, `char::is_control`).
macro_rules! control {
    () => {
        r"\u0000-\u001F\u007F-\u009F"
    };
}
/// A ticket, commit or pull-request reference: no control characters, not only blanks, at most
/// 200 characters.
pub const REF_PATTERN: &str =
    concat!("^[^", control!(), "]*[^", blank!(), control!(), "][^", control!(), "]*$");
/// The control characters a multi-line text may not hold (all but tab, line feed and carriage
/// return).
macro_rules! text_control {
    () => {
        r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F"
    };
}
/// A reason, note or justification: some text that is not only blanks, with no control
/// characters but line breaks and tabs, at most 2000 characters.
pub const TEXT_PATTERN: &str =
    concat!("^[^", text_control!(), "]*[^", blank!(), text_control!(), "][^", text_control!(), "]*$");
/// A token label: no control characters (1 to 100 characters).
pub const LABEL_PATTERN: &str = concat!("^[^", control!(), "]+$");
/// A control an exception is asked for: a finding kind (`secret.long_lived`).
pub const CONTROL_PATTERN: &str = r"^[a-z0-9._-]{1,100}$";
/// What an exception covers: an identity, a change ID or `TARGET:ENTITLEMENT` (no blanks or
/// control characters, 1 to 200 characters).
pub const SUBJECT_PATTERN: &str = concat!("^[^", blank!(), control!(), "]+$");
/// A finding's ID.
pub const FINDING_PATTERN: &str = r"^FND-[0-9a-f]{16}$";
/// A change ID.
pub const CHANGE_ID_PATTERN: &str = r"^CHG-[0-7][0-9A-HJKMNP-TV-Z]{25}$";
/// A notification id (`writ_core::notify::Notification::id_of`).
pub const NOTIFICATION_PATTERN: &str = r"^NTF-[0-9]{1,20}-[0-9]{1,6}$";

/// The body of `POST /api/v1/notifications/{id}/retry`: nothing yet (an object, so that it can
/// grow).
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct RetryNotification {}

/// A schema rule no single field states: at least one of `fields` is a non-empty list.
fn some_of(fields: &[&str]) -> serde_json::Value {
    let branches: Vec<serde_json::Value> = fields
        .iter()
        .map(|field| serde_json::json!({ "required": [field], "properties": { *field: { "minItems": 1 } } }))
        .collect();
    serde_json::json!({ "anyOf": branches })
}

/// A schema rule: exactly one of `for` and `until` is given (a null counts as not given).
fn one_term() -> serde_json::Value {
    serde_json::json!({ "oneOf": [
        { "required": ["for"], "properties": { "for": { "type": "string" }, "until": { "type": "null" } } },
        { "required": ["until"], "properties": { "until": { "type": "string" }, "for": { "type": "null" } } },
    ] })
}

/// Adds rules across fields to a body's schema (under `allOf`).
fn add_rules(schema: &mut schemars::Schema, rules: Vec<serde_json::Value>) {
    schema.insert("allOf".to_owned(), serde_json::Value::Array(rules));
}

/// A change asks for at least one operation, and `for` bounds grants only.
fn change_rules(schema: &mut schemars::Schema) {
    let grants = serde_json::json!({ "anyOf": [
        { "properties": { "for": { "type": "null" } } },
        { "required": ["grant"], "properties": { "grant": { "minItems": 1 } } },
    ] });
    // The business event fits the operations (`input.event_mismatch` otherwise).
    let removal = serde_json::json!({ "anyOf": [
        { "properties": { "event": { "not": { "enum": ["leaver", "decommission"] } } } },
        { "properties": { "grant": { "maxItems": 0 } } },
    ] });
    let joiner = serde_json::json!({ "anyOf": [
        { "properties": { "event": { "not": { "const": "joiner" } } } },
        { "properties": { "revoke": { "maxItems": 0 } } },
    ] });
    add_rules(schema, vec![some_of(&["grant", "revoke", "rotate"]), grants, removal, joiner]);
}

/// A person has no owner; every other kind of identity needs one.
fn identity_rules(schema: &mut schemars::Schema) {
    let owned = serde_json::json!({ "oneOf": [
        { "properties": { "kind": { "const": "human" }, "owner": { "type": "null" } } },
        { "required": ["owner"], "properties": { "kind": { "not": { "const": "human" } }, "owner": { "type": "string" } } },
    ] });
    add_rules(schema, vec![owned]);
}

/// Break-glass needs at least one grant.
fn break_glass_rules(schema: &mut schemars::Schema) {
    if let Some(required) = schema.get_mut("required").and_then(serde_json::Value::as_array_mut) {
        required.push("grant".into());
    }
}

/// An exception names a finding, or a control and a subject; and a term.
fn exception_rules(schema: &mut schemars::Schema) {
    let about = serde_json::json!({ "oneOf": [
        { "required": ["finding"], "properties": { "finding": { "type": "string" }, "control": { "type": "null" }, "subject": { "type": "null" } } },
        { "required": ["control", "subject"], "properties": { "finding": { "type": "null" }, "control": { "type": "string" }, "subject": { "type": "string" } } },
    ] });
    add_rules(schema, vec![about, one_term()]);
}

/// A renewal gives a new term.
fn renewal_rules(schema: &mut schemars::Schema) {
    add_rules(schema, vec![one_term()]);
}

/// A field the body must have.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, Error> {
    value.ok_or_else(|| {
        Error::new("request.missing_field", format!("`{field}` is required")).with_field(field)
    })
}

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
#[schemars(transform = identity_rules)]
pub struct NewIdentity {
    #[schemars(regex(pattern = NAME_PATTERN))]
    #[schemars(with = "String")]
    pub name: Option<String>,
    #[schemars(extend("enum" = ["human", "service_account", "api_key", "secret", "certificate", "workload", "ai_agent"]))]
    #[schemars(with = "String")]
    pub kind: Option<String>,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: Option<String>,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub vendor: Option<String>,
    /// Where notifications reach the identity by email.
    #[schemars(regex(pattern = EMAIL_PATTERN), length(max = 254))]
    pub email: Option<String>,
}

/// An email address as Writ accepts it (`writ_core::notify::parse_email`).
pub const EMAIL_PATTERN: &str =
    r#"^[^@\s<>,;"\\()\[\]\x00-\x1f\x7f-\x9f]+@[^@\s<>,;"\\()\[\]\x00-\x1f\x7f-\x9f]+$"#;

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    #[schemars(regex(pattern = NAME_PATTERN))]
    #[schemars(with = "String")]
    pub name: Option<String>,
    #[schemars(with = "String")]
    pub connector: Option<String>,
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
#[schemars(transform = change_rules)]
pub struct NewChange {
    #[schemars(regex(pattern = NAME_PATTERN))]
    #[schemars(with = "String")]
    pub identity: Option<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = ENTITLEMENT_PATTERN)))]
    pub grant: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = ENTITLEMENT_PATTERN)))]
    pub revoke: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = ENTITLEMENT_PATTERN)))]
    pub rotate: Vec<String>,
    #[serde(rename = "for")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub justification: Option<String>,
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 200), regex(pattern = REF_PATTERN)))]
    pub ticket: Vec<String>,
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 200), regex(pattern = REF_PATTERN)))]
    pub commit: Vec<String>,
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 200), regex(pattern = REF_PATTERN)))]
    pub pr: Vec<String>,
    #[schemars(extend("enum" = ["joiner", "mover", "leaver", "deploy", "decommission", "incident", "vendor", "adhoc"]))]
    pub event: Option<String>,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub on_behalf_of: Option<String>,
    /// The maintenance window the change must be carried out in.
    pub window: Option<WindowBody>,
    /// The person who answers for undoing the change (a human); by default the policy's
    /// `[rollback] owners` decide.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub rollback_owner: Option<String>,
}

/// A maintenance window: `start` and `end` as RFC 3339 instants (`2026-12-08T21:00:00Z`) or
/// local date-times in `zone` (`2026-12-08T22:00`), and the IANA time zone it is given in.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct WindowBody {
    #[schemars(length(min = 16, max = 40), regex(pattern = WINDOW_TIME_PATTERN))]
    pub start: String,
    #[schemars(length(min = 16, max = 40), regex(pattern = WINDOW_TIME_PATTERN))]
    pub end: String,
    #[schemars(length(min = 1, max = 64), regex(pattern = ZONE_PATTERN))]
    pub zone: String,
}

/// A window's start or end: a date and a time, seconds and an offset optional.
const WINDOW_TIME_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:[0-9]{2})?$";
/// An IANA time zone name's shape (whether it exists is the time zone database's answer).
const ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";

impl WindowBody {
    pub fn window(&self) -> Result<writ_core::change::Window, Error> {
        Ok(writ_engine::window(&self.start, &self.end, &self.zone)?)
    }
}

impl NewChange {
    /// The engine's request, asked by `requester`.
    pub fn into_input(self, requester: &str) -> Result<RequestInput, Error> {
        let identity = IdentityName::parse(&required(self.identity, "identity")?)?;
        let justification = required(self.justification, "justification")?;
        let duration = self.duration.as_deref().map(Duration::parse).transpose()?;
        if duration.is_some() && self.grant.is_empty() {
            return Err(writ_core::Refusal::DurationOnRevoke.into());
        }
        let mut ops = Vec::new();
        let actions = [
            (OpAction::Revoke, &self.revoke),
            (OpAction::Grant, &self.grant),
            (OpAction::Rotate, &self.rotate),
        ];
        for (action, entitlements) in actions {
            for entitlement in entitlements {
                ops.push(RequestedOp {
                    action,
                    identity: identity.clone(),
                    entitlement: EntitlementRef::parse(entitlement)?,
                    duration: if action == OpAction::Grant { duration } else { None },
                });
            }
        }
        let mut refs = Vec::new();
        for (kind, values) in [
            (RefKind::Ticket, &self.ticket),
            (RefKind::Commit, &self.commit),
            (RefKind::PullRequest, &self.pr),
        ] {
            for value in values {
                refs.push(ExternalRef::new(kind, value)?);
            }
        }
        Ok(RequestInput {
            requester: IdentityName::parse(requester)?,
            on_behalf_of: self.on_behalf_of.as_deref().map(IdentityName::parse).transpose()?,
            ops,
            justification: Justification::parse(&justification)?,
            refs,
            event: BusinessEvent::parse(self.event.as_deref().unwrap_or("adhoc"))?,
            window: self.window.as_ref().map(WindowBody::window).transpose()?,
            rollback_owner: self.rollback_owner.as_deref().map(IdentityName::parse).transpose()?,
        })
    }
}

/// `approve`: the approval may be given for someone (`on_behalf_of`) and may shorten its validity.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub valid_for: Option<String>,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub on_behalf_of: Option<String>,
}

/// `reject` and `cancel`: why.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[schemars(with = "String", length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub reason: Option<String>,
}

/// `offboard`: why (for example the HR record of the departure), and tickets.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Offboard {
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub justification: Option<String>,
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 200), regex(pattern = REF_PATTERN)))]
    pub ticket: Vec<String>,
}

impl Offboard {
    /// The justification and ticket references, checked.
    pub fn into_parts(self) -> Result<(Justification, Vec<ExternalRef>), Error> {
        let justification = Justification::parse(&required(self.justification, "justification")?)?;
        let refs =
            self.ticket.iter().map(|t| ExternalRef::new(RefKind::Ticket, t)).collect::<Result<_, _>>()?;
        Ok((justification, refs))
    }
}

/// `review`: what the reviewer found.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Review {
    #[schemars(with = "String", length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub notes: Option<String>,
}

/// `rollback`: why the change is undone.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    #[schemars(with = "String", length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub justification: Option<String>,
}

impl Rollback {
    pub fn justification(&self) -> Result<Justification, Error> {
        let text = required(self.justification.clone(), "justification")?;
        Ok(Justification::parse(&text)?)
    }
}

/// `comment`: the comment's text (sealed in the ledger like a justification).
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    #[schemars(with = "String", length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub text: Option<String>,
}

/// `execute` and `verify` take nothing but the change: an empty object.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
#[schemars(transform = break_glass_rules)]
pub struct BreakGlass {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub identity: Option<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = ENTITLEMENT_PATTERN)))]
    #[schemars(length(min = 1))]
    pub grant: Vec<String>,
    #[serde(rename = "for")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub reason: Option<String>,
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 200), regex(pattern = REF_PATTERN)))]
    pub ticket: Vec<String>,
}

impl BreakGlass {
    /// The engine's break-glass request by `actor` (who gets the access unless `identity` names
    /// someone else).
    pub fn into_input(self, actor: &str) -> Result<BreakGlassInput, Error> {
        if self.grant.is_empty() {
            return Err(Error::new("request.missing_field", "`grant` needs at least one entitlement")
                .with_field("grant"));
        }
        let reason = required(self.reason, "reason")?;
        let actor = IdentityName::parse(actor)?;
        let identity =
            self.identity.as_deref().map(IdentityName::parse).transpose()?.unwrap_or_else(|| actor.clone());
        let duration = self.duration.as_deref().map(Duration::parse).transpose()?;
        let ops = self
            .grant
            .iter()
            .map(|entitlement| {
                Ok(RequestedOp {
                    action: OpAction::Grant,
                    identity: identity.clone(),
                    entitlement: EntitlementRef::parse(entitlement)?,
                    duration,
                })
            })
            .collect::<Result<Vec<_>, writ_core::Refusal>>()?;
        let refs = self
            .ticket
            .iter()
            .map(|t| ExternalRef::new(RefKind::Ticket, t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BreakGlassInput { actor, ops, reason: Justification::parse(&reason)?, refs })
    }
}

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ResolveFinding {
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub note: Option<String>,
}

/// `POST /api/v1/findings/{id}/remediate`: why, beyond the finding itself (optional).
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct RemediateFinding {
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub justification: Option<String>,
}

/// `POST /api/v1/identities/{name}/transfers`: who should own the NHI, and why.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The person who is to own it (they, or whoever the rules name, accept).
    #[schemars(regex(pattern = NAME_PATTERN))]
    #[schemars(with = "String")]
    pub to: Option<String>,
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub justification: Option<String>,
}

/// `POST /api/v1/transfers/{id}/accept` (and `decline`, `cancel`): what the decider says.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct TransferDecision {
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub note: Option<String>,
}

/// `POST /api/v1/automation/{scope}/resume`: why the person resumes it.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ResumeAutomation {
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub justification: Option<String>,
}

/// `POST /api/v1/usage`: when accounts on a target were last used, from a source Writ does
/// not read itself (a SIEM, an access log).
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    #[schemars(regex(pattern = NAME_PATTERN))]
    #[schemars(with = "String")]
    pub target: Option<String>,
    /// What observed the use (for the record).
    #[schemars(length(min = 1, max = 200), regex(pattern = LABEL_PATTERN))]
    #[schemars(with = "String")]
    pub source: Option<String>,
    #[schemars(length(min = 1, max = 40))]
    #[schemars(with = "Vec<UsageEntry>")]
    pub entries: Option<Vec<UsageEntry>>,
}

/// The most entries one `POST /api/v1/usage` carries (a report of the most entries, each at
/// its longest, stays within the default body limit).
pub const MAX_USAGE_REPORT: usize = 40;

/// The longest account name a usage report names.
pub const MAX_USAGE_ACCOUNT: usize = 100;

/// A usage report's target, source and (account, last use) entries.
pub type UsageParts = (writ_core::name::TargetName, String, Vec<(String, writ_core::time::Timestamp)>);

/// One account's last use.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct UsageEntry {
    #[schemars(length(min = 1, max = 100), regex(pattern = LABEL_PATTERN))]
    #[schemars(with = "String")]
    pub account: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    #[schemars(with = "String")]
    pub last_used: Option<String>,
}

impl UsageReport {
    /// The target, source and entries, each checked.
    pub fn into_parts(self) -> Result<UsageParts, crate::Error> {
        let missing =
            |field: &str| crate::Error::new("request.missing_field", format!("{field} is required"));
        let target = writ_core::name::TargetName::parse(&self.target.ok_or_else(|| missing("target"))?)?;
        let source = self.source.ok_or_else(|| missing("source"))?;
        let entries = self.entries.ok_or_else(|| missing("entries"))?;
        if entries.is_empty() || entries.len() > MAX_USAGE_REPORT {
            return Err(crate::Error::new(
                "input.invalid_value",
                format!("entries: {} given, 1 to {MAX_USAGE_REPORT} per report", entries.len()),
            ));
        }
        let entries = entries
            .into_iter()
            .map(|e| {
                let account = e.account.ok_or_else(|| missing("entries[].account"))?;
                if account.chars().count() > MAX_USAGE_ACCOUNT {
                    return Err(crate::Error::new(
                        "input.invalid_value",
                        format!("entries[].account: at most {MAX_USAGE_ACCOUNT} characters"),
                    ));
                }
                let text = e.last_used.ok_or_else(|| missing("entries[].last_used"))?;
                let at = writ_core::time::Timestamp::parse_rfc3339(&text).ok_or_else(|| {
                    crate::Error::new(
                        "input.invalid_value",
                        format!("last_used {text:?} is not an RFC 3339 time"),
                    )
                })?;
                Ok((account, at))
            })
            .collect::<Result<Vec<_>, crate::Error>>()?;
        Ok((target, source, entries))
    }
}

/// `POST /api/v1/reconcile`: one target, or every target and the registry when absent.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Reconcile {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub target: Option<String>,
}

/// `PUT /api/v1/identities/{name}/scim-link`: the identity provider's id for the person.
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ScimLink {
    #[schemars(length(min = 1, max = 200), regex(pattern = REF_PATTERN))]
    #[schemars(with = "String")]
    pub external_id: Option<String>,
}

/// `PUT /api/v1/delegations/{principal}/{delegate}`: for how long (at most 366 days).
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewDelegation {
    #[serde(rename = "for")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[schemars(with = "String")]
    pub duration: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[schemars(regex(pattern = NAME_PATTERN))]
    #[schemars(with = "String")]
    pub identity: Option<String>,
    #[schemars(length(min = 1, max = 100), regex(pattern = LABEL_PATTERN))]
    #[schemars(with = "String")]
    pub label: Option<String>,
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub expires_in: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
#[schemars(transform = exception_rules)]
pub struct NewException {
    #[schemars(regex(pattern = FINDING_PATTERN))]
    pub finding: Option<String>,
    #[schemars(regex(pattern = CONTROL_PATTERN))]
    pub control: Option<String>,
    #[schemars(length(max = 200), regex(pattern = SUBJECT_PATTERN))]
    pub subject: Option<String>,
    #[schemars(regex(pattern = NAME_PATTERN))]
    #[schemars(with = "String")]
    pub owner: Option<String>,
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub justification: Option<String>,
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    #[schemars(with = "String")]
    pub compensating_control: Option<String>,
    #[serde(rename = "for")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,
}

/// The JSON schema of a request body, as the OpenAPI document embeds it.
pub fn schema<T: JsonSchema>() -> serde_json::Value {
    // Nested bodies (a window) are inlined: a `$ref` into the body's own `$defs` would not
    // resolve once the schema sits in the OpenAPI document.
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut schema = settings.into_generator().into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

/// An exception request checked without the store: its required fields and its term.
pub struct CheckedException {
    body: NewException,
    owner: String,
    justification: String,
    compensating_control: String,
    term: Term,
}

impl NewException {
    /// Checks what needs no store (required fields, the term), before any write is attempted.
    pub fn check(self) -> Result<CheckedException, Error> {
        let owner = required(self.owner.clone(), "owner")?;
        let justification = required(self.justification.clone(), "justification")?;
        let compensating_control = required(self.compensating_control.clone(), "compensating_control")?;
        let term = term(self.duration.as_deref(), self.until.as_deref())?;
        Ok(CheckedException { body: self, owner, justification, compensating_control, term })
    }
}

impl CheckedException {
    /// The engine's exception request by `actor`; `finding` gives the control and subject.
    pub fn into_input(self, engine: &Engine, actor: &str) -> Result<ExceptionInput, Error> {
        let (control, subject) = match (self.body.finding, self.body.control, self.body.subject) {
            (Some(id), None, None) => {
                let finding = engine.finding(&id)?;
                (finding.kind, finding.subject)
            }
            (None, Some(control), Some(subject)) => (control, subject),
            _ => {
                return Err(Error::new(
                    "input.missing_field",
                    "name the finding (--finding) or the control and subject (--control, --subject)",
                ));
            }
        };
        Ok(ExceptionInput {
            actor: IdentityName::parse(actor)?,
            control,
            subject,
            owner: IdentityName::parse(&self.owner)?,
            justification: self.justification,
            compensating_control: self.compensating_control,
            term: self.term,
        })
    }
}

#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExceptionStep {
    #[schemars(length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub reason: Option<String>,
    #[serde(rename = "for")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,
}

/// An exception's renewal: why, and the new term (`for` or `until`).
#[derive(Deserialize, Serialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields)]
#[schemars(transform = renewal_rules)]
pub struct Renewal {
    #[schemars(with = "String", length(min = 1, max = 2000), regex(pattern = TEXT_PATTERN))]
    pub reason: Option<String>,
    #[serde(rename = "for")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,
}

impl From<NoFields> for ExceptionStep {
    fn from(_: NoFields) -> ExceptionStep {
        ExceptionStep::default()
    }
}

impl From<Decision> for ExceptionStep {
    fn from(decision: Decision) -> ExceptionStep {
        ExceptionStep { reason: decision.reason, ..ExceptionStep::default() }
    }
}

impl From<Renewal> for ExceptionStep {
    fn from(renewal: Renewal) -> ExceptionStep {
        ExceptionStep { reason: renewal.reason, duration: renewal.duration, until: renewal.until }
    }
}

/// An exception's term from `for` or `until` (exactly one).
pub fn term(duration: Option<&str>, until: Option<&str>) -> Result<Term, Error> {
    match (duration, until) {
        (Some(d), None) => Ok(Term::For(Duration::parse(d)?)),
        (None, Some(u)) => Timestamp::parse_rfc3339(u).map(Term::Until).ok_or_else(|| {
            Error::new("input.invalid_value", format!("--until {u:?} is not an RFC 3339 time"))
        }),
        _ => Err(Error::new("input.missing_field", "give either --for DURATION or --until TIME")),
    }
}

#[cfg(test)]
mod tests;
