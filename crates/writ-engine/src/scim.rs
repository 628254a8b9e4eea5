//! SCIM: Users and Groups an identity provider pushes, and the lifecycle they drive.
//!
//! - **Every write is recorded.** A create, replace, PATCH or delete is stored with its version
//!   and, in the same transaction, a delivery (source `scim`, id `Users/ID/vN`, the SHA-256 of
//!   the request body) and its ledger event, with the SCIM client as actor. Nothing is written
//!   for a refused request.
//! - **No side door.** A write changes nobody's access by itself. After it, each person it
//!   touches is *settled*: the birthright rules (`rules.toml`) give the entitlements their
//!   record (department, title, user type, roles, groups) calls for, and if that, or whether
//!   they are active, differs from what was last settled, a change is opened with the SCIM
//!   client as requester, approved and executed like any other:
//!   - a **joiner** (a new or re-activated person) is granted their birthright;
//!   - a **mover** is granted what the new record calls for and loses, in the same change,
//!     what the old one gave and the new one does not;
//!   - a **leaver** (`active: false`, or deleted) loses everything they hold, on every
//!     target, and the non-human identities they own are flagged for ownership transfer.
//!
//!   Each step has its own change, linked to the delivery that caused it. A step whose change
//!   is still waiting for approval when the next step comes is cancelled (superseded), so an
//!   old role's grant can never land after the move.
//! - **Crash safe.** Each step's change ID is reserved for (`scim`, `Users/ID#step`) before the
//!   change is opened, and the settled state is moved only from the state read: a retry or the
//!   start-up sweep ([`Engine::scim_settle_all`]) finds the same change instead of opening a
//!   second one.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use writ_core::change::{
    BusinessEvent, ChangeId, ChangeState, ExternalRef, Justification, OpAction, RefKind,
};
use writ_core::event::RegistryEvent;
use writ_core::identity::{Actor, IdentityKind, IdentityState};
use writ_core::intake::{Delivery, DeliveryEventKind, DeliveryRecord, Outcome};
use writ_core::name::{EntitlementRef, IdentityName, SourceName};
use writ_core::time::Timestamp;
use writ_scim::schema::{self, Kind};
use writ_scim::{ScimError, ScimType};
use writ_store::{ScimRow, StoreError};

use crate::{Engine, EngineError, RequestInput, RequestedOp, Result, registry_event};

/// The source name of SCIM deliveries.
pub const SOURCE: &str = "scim";

/// The finding raised for each non-human identity whose owner left (the same one the
/// registry's reconciliation raises for an NHI whose owner is gone or no person).
pub const OWNER_LEFT: &str = "nhi.orphaned";

/// A stored SCIM resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ScimResource {
    pub kind: Kind,
    pub id: String,
    /// The attributes (no `id`, `meta` or `schemas`).
    pub doc: Map<String, Value>,
    pub version: i64,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// For a User: the Writ identity the person is.
    pub identity: Option<IdentityName>,
}

impl ScimResource {
    /// The weak ETag of this version (`meta.version`, the `ETag` header).
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// What a SCIM write asks for.
pub enum ScimWrite<'a> {
    Create(&'a Value),
    Replace(&'a Value),
    Patch(&'a Value),
    Delete,
}

impl ScimWrite<'_> {
    fn verb(&self) -> &'static str {
        match self {
            ScimWrite::Create(_) => "created",
            ScimWrite::Replace(_) => "replaced",
            ScimWrite::Patch(_) => "patched",
            ScimWrite::Delete => "deleted",
        }
    }
}

/// What Writ last settled for a person: the lifecycle step, whether they were active, the
/// birthright entitlements, and the change opened for the step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Settled {
    step: u64,
    active: bool,
    entitlements: BTreeSet<String>,
    change: Option<String>,
    /// When this person's leaver step was settled without a person's decision (what the
    /// `[automation]` limits count), and how many grants it removed.
    left_at: Option<i64>,
    removed: u64,
    /// When a step of this person's was first held by paused automation (until it settles):
    /// a person who resumes the scope after that has decided for it.
    held_at: Option<i64>,
}

impl Settled {
    fn read(text: &str) -> Settled {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        Settled {
            step: value.get("step").and_then(Value::as_u64).unwrap_or(0),
            active: value.get("active").and_then(Value::as_bool).unwrap_or(false),
            entitlements: value
                .get("entitlements")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            change: value.get("change").and_then(Value::as_str).map(str::to_owned),
            left_at: value.get("left_at").and_then(Value::as_i64),
            removed: value.get("removed").and_then(Value::as_u64).unwrap_or(0),
            held_at: value.get("held_at").and_then(Value::as_i64),
        }
    }

    fn write(&self) -> String {
        let mut value = json!({"step": self.step, "active": self.active, "entitlements": self.entitlements, "change": self.change});
        if let (Some(at), Some(map)) = (self.left_at, value.as_object_mut()) {
            map.insert("left_at".into(), json!(at));
            map.insert("removed".into(), json!(self.removed));
        }
        if let (Some(at), Some(map)) = (self.held_at, value.as_object_mut()) {
            map.insert("held_at".into(), json!(at));
        }
        value.to_string()
    }
}

/// What settling one person came to.
enum Settlement {
    Unchanged,
    Opened(ChangeId, String),
    Settled(String),
    Refused(String),
    /// Held while automation is paused: nothing settled, settled when it resumes.
    Held(String),
}

fn scim_error(error: ScimError) -> EngineError {
    EngineError::Scim(error)
}

fn not_found(kind: Kind, id: &str) -> EngineError {
    scim_error(ScimError::status(404, format!("no {} with id {id:?}", kind.name())))
}

fn source() -> Result<SourceName> {
    Ok(SourceName::parse(SOURCE)?)
}

/// A random resource id in the UUID v4 layout.
fn new_id() -> Result<String> {
    let bits =
        (crate::random_bits()? & !(0xf000u128 << 64) | (0x4000u128 << 64)) & !(0xc << 60) | (0x8 << 60);
    let hex = format!("{bits:032x}");
    let part = |a: usize, b: usize| hex.get(a..b).unwrap_or_default().to_owned();
    Ok(format!("{}-{}-{}-{}-{}", part(0, 8), part(8, 12), part(12, 16), part(16, 20), part(20, 32)))
}

/// The Writ identity name a userName maps to: the userName in lower case where it is a valid
/// identity name, else with each character an identity name cannot hold replaced by `-`.
/// The Writ identity a SCIM `userName` names: the name in lower case, if it is a valid Writ name.
/// One that is not is refused, never mapped to a look-alike (`аlice` with a Cyrillic `а` is not
/// `lice`, and `alice\u{200b}` is not `alice-`).
fn identity_for(user_name: &str) -> Result<IdentityName> {
    IdentityName::parse(&user_name.to_lowercase()).map_err(|refusal| {
        scim_error(ScimError {
            status: 400,
            scim_type: Some(ScimType::InvalidValue),
            detail: format!(
                "userName {:?} is not a Writ identity name ({refusal}); use letters, digits and . _ @ + -",
                user_name.chars().take(64).collect::<String>()
            ),
        })
    })
}

fn parse_doc(row: &ScimRow) -> Result<Map<String, Value>> {
    serde_json::from_str(&row.doc)
        .map_err(|e| EngineError::Store(StoreError::Corrupt(format!("SCIM {} {}: {e}", row.kind, row.id))))
}

fn kind_of(row: &ScimRow) -> Kind {
    if row.kind == Kind::Group.name() { Kind::Group } else { Kind::User }
}

fn resource(row: &ScimRow) -> Result<ScimResource> {
    Ok(ScimResource {
        kind: kind_of(row),
        id: row.id.clone(),
        doc: parse_doc(row)?,
        version: row.version,
        created: row.created,
        updated: row.updated,
        identity: row.identity.clone(),
    })
}

/// The ids in a Group's `members`.
fn members(doc: &Map<String, Value>) -> Vec<String> {
    values(doc, "members")
}

/// The `value` of each item of a multi-valued attribute (`members`, `roles`).
fn values(doc: &Map<String, Value>, attr: &str) -> Vec<String> {
    doc.get(attr)
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(|v| v.get("value").and_then(Value::as_str)).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether the `If-Match` header (if any) names the current version (`*` names any).
fn check_match(row: &ScimRow, if_match: Option<&str>) -> Result<()> {
    let Some(wanted) = if_match else { return Ok(()) };
    let current = format!("W/\"{}\"", row.version);
    let strong = format!("\"{}\"", row.version);
    let ok = wanted.split(',').map(str::trim).any(|tag| tag == "*" || tag == current || tag == strong);
    if ok {
        Ok(())
    } else {
        Err(scim_error(ScimError::status(
            412,
            format!(
                "If-Match {wanted} does not match the current version {current}; read the resource again"
            ),
        )))
    }
}

impl Engine {
    /// A live resource.
    pub fn scim_get(&self, kind: Kind, id: &str) -> Result<ScimResource> {
        match self.store.scim_resource(kind.name(), id)? {
            Some(row) if !row.deleted => resource(&row),
            _ => Err(not_found(kind, id)),
        }
    }

    /// Every live resource of `kind`, oldest first.
    pub fn scim_list(&self, kind: Kind) -> Result<Vec<ScimResource>> {
        self.store.scim_resources(kind.name(), false)?.iter().map(resource).collect()
    }

    /// The groups (id, displayName) `user` is a direct member of.
    pub fn scim_groups_of(&self, user: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for group in self.scim_list(Kind::Group)? {
            if members(&group.doc).iter().any(|m| m == user) {
                let name = schema::text(&group.doc, "displayName").unwrap_or_default().to_owned();
                out.push((group.id, name));
            }
        }
        Ok(out)
    }

    /// Applies one SCIM write by `client` (the SCIM token's identity), records it, and settles
    /// the lifecycle of everyone it touches. `id` is `None` for a create; `sha256` is the
    /// digest of the request body. Returns the resource as written (`None` after a delete).
    pub fn scim_write(
        &self,
        client: &IdentityName,
        kind: Kind,
        id: Option<&str>,
        write: ScimWrite<'_>,
        if_match: Option<&str>,
        sha256: [u8; 32],
    ) -> Result<Option<ScimResource>> {
        // Everything that can be checked without the store first.
        let (input, patch) = match &write {
            ScimWrite::Create(body) | ScimWrite::Replace(body) => {
                (Some(schema::normalize(kind, body)?), None)
            }
            ScimWrite::Patch(body) => (None, Some(writ_scim::patch::parse(body)?)),
            ScimWrite::Delete => (None, None),
        };
        let _serial = self.scim_serial.lock().map_err(|_| StoreError::Other("SCIM lock poisoned".into()))?;
        // A feed that was silent too long: this write is recorded, but what it removes waits.
        self.check_feed()?;
        let current = match id {
            None => None,
            Some(id) => match self.store.scim_resource(kind.name(), id)? {
                Some(row) if !row.deleted => Some(row),
                _ => return Err(not_found(kind, id)),
            },
        };
        if let Some(row) = &current {
            check_match(row, if_match)?;
        }
        let deleted = matches!(write, ScimWrite::Delete);
        let doc = match (input, patch, &current) {
            (Some(doc), _, _) => doc,
            (None, Some(ops), Some(row)) => writ_scim::patch::apply(kind, &parse_doc(row)?, &ops)?,
            (None, _, Some(row)) => parse_doc(row)?,
            (None, _, None) => return Err(scim_error(ScimError::status(400, "nothing to write"))),
        };
        let id = match id {
            Some(id) => id.to_owned(),
            None => new_id()?,
        };
        let name = schema::text(&doc, kind.name_attr()).unwrap_or_default().to_owned();
        let name_key = name.to_lowercase();
        let live = self.store.scim_resources(kind.name(), false)?;
        if !deleted && live.iter().any(|r| r.name_key == name_key && r.id != id) {
            return Err(scim_error(ScimError {
                status: 409,
                scim_type: Some(ScimType::Uniqueness),
                detail: format!("a {} with {} {name:?} exists already", kind.name(), kind.name_attr()),
            }));
        }
        let old_members =
            current.as_ref().map(parse_doc).transpose()?.map(|d| members(&d)).unwrap_or_default();
        // Members are not checked against existing Users (RFC 7644 does not ask it, and an IdP may
        // add a member before creating them): a member id no User has yet gives nobody access;
        // when the User is created, settling them finds the group.
        let identity = match (kind, &current) {
            (Kind::User, Some(row)) => row.identity.clone(),
            (Kind::User, None) => {
                Some(self.scim_identity(client, &name, schema::text(&doc, "externalId"))?)
            }
            (Kind::Group, _) => None,
        };
        let now = self.now();
        let version = current.as_ref().map_or(1, |r| r.version + 1);
        let row = ScimRow {
            kind: kind.name().to_owned(),
            id: id.clone(),
            name_key,
            identity,
            doc: Value::Object(doc.clone()).to_string(),
            version,
            created: current.as_ref().map_or(now, |r| r.created),
            updated: now,
            deleted,
            settled: current.as_ref().map_or_else(|| Settled::default().write(), |r| r.settled.clone()),
        };
        let object = format!("{}/{id}", kind.endpoint());
        let record = DeliveryRecord {
            delivery: Delivery {
                source: source()?,
                id: format!("{object}/v{version}"),
                event: format!("scim.{}.{}", kind.name().to_lowercase(), write.verb()),
                object: Some(object.clone()),
                version: None,
                sha256,
                received_at: now,
                refs: vec![ExternalRef::new(RefKind::Record, &format!("scim:{object}"))?],
            },
            outcome: Outcome::Ignored,
            changes: Vec::new(),
            detail: "recorded; lifecycle not settled yet".into(),
            attempts: 1,
            updated_at: now,
        };
        let event = RegistryEvent::Delivery {
            actor: Actor::Identity(client.clone()),
            record: Box::new(record.clone()),
            kind: DeliveryEventKind::Received,
        };
        match self.store.scim_write(
            &row,
            current.as_ref().map(|r| r.version),
            &record,
            &registry_event(&event, self.hmac()?),
        ) {
            Ok(_) => {}
            Err(StoreError::Conflict(message)) => {
                return Err(scim_error(ScimError {
                    status: 409,
                    scim_type: Some(ScimType::Uniqueness),
                    detail: message,
                }));
            }
            Err(error) => return Err(error.into()),
        }
        tracing::info!(target: "writ::scim", kind = kind.name(), %id, version, verb = write.verb(), "SCIM write recorded");
        // Settle everyone the write touches.
        let touched: Vec<String> = match kind {
            Kind::User => vec![id.clone()],
            Kind::Group => {
                let mut all: BTreeSet<String> = old_members.into_iter().collect();
                if !deleted {
                    all.extend(members(&doc));
                }
                all.into_iter().collect()
            }
        };
        self.settle_delivery(client, &touched, record)?;
        if deleted {
            return Ok(None);
        }
        self.store.scim_resource(kind.name(), &id)?.as_ref().map(resource).transpose()
    }

    /// Links an existing person to the identity provider's record of them: a SCIM User with
    /// this `externalId` (and the person's name) then adopts them instead of being refused.
    /// Admins only (the route checks the role; locally, the operator).
    pub fn link_scim(&self, actor: Actor, identity: &IdentityName, external_id: &str) -> Result<()> {
        self.acting(&actor)?;
        let person = self.identity(identity)?;
        if person.kind != IdentityKind::Human {
            return Err(writ_core::Refusal::NotHuman {
                actor: person.name,
                kind: person.kind,
                action: "be linked to a SCIM User",
            }
            .into());
        }
        let external_id = writ_core::machine::line(external_id.to_owned(), "externalId")?;
        if external_id.chars().count() > 200 {
            return Err(writ_core::Refusal::InvalidText { field: "externalId", max: 200 }.into());
        }
        let event = RegistryEvent::ScimLinked {
            actor,
            identity: identity.clone(),
            external_id: external_id.clone(),
            at: self.now(),
        };
        self.store.link_scim(identity, &external_id, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::scim", %identity, "identity linked to a SCIM externalId");
        Ok(())
    }

    /// The identity a new SCIM User is: a new human registered by the SCIM client, or an
    /// existing human an admin linked to this User's `externalId` (and no live SCIM User is
    /// yet). Any other existing identity of that name is refused: the identity provider must
    /// not take over a person (an admin, say) by naming them.
    fn scim_identity(
        &self,
        client: &IdentityName,
        user_name: &str,
        external_id: Option<&str>,
    ) -> Result<IdentityName> {
        let name = identity_for(user_name)?;
        let taken = |why: String| {
            scim_error(ScimError {
                status: 409,
                scim_type: Some(ScimType::Uniqueness),
                detail: format!("userName {user_name:?} maps to the Writ identity {name}, which {why}"),
            })
        };
        match self.store.identity(&name)? {
            Some(existing) if existing.kind != IdentityKind::Human => {
                Err(taken(format!("is a {}", existing.kind)))
            }
            Some(_) => {
                let adopted = self
                    .store
                    .scim_resources(Kind::User.name(), false)?
                    .into_iter()
                    .any(|r| r.identity.as_ref() == Some(&name));
                if adopted {
                    return Err(taken("is another SCIM User already".into()));
                }
                match (self.store.scim_link(&name)?, external_id) {
                    (Some(link), Some(given)) if link == given => Ok(name),
                    _ => Err(taken(format!(
                        "exists already and is not linked to this User's externalId: an admin links them first (`writ identity link-scim {name} --external-id ID`)"
                    ))),
                }
            }
            None => Ok(self
                .add_identity(Actor::Identity(client.clone()), name, IdentityKind::Human, None, None)?
                .name),
        }
    }

    /// Settles each of `users` and records what became of the write's delivery.
    fn settle_delivery(
        &self,
        client: &IdentityName,
        users: &[String],
        record: DeliveryRecord,
    ) -> Result<DeliveryRecord> {
        let mut notes = Vec::new();
        let mut changes = Vec::new();
        let mut refused = false;
        let mut failed = false;
        let mut held = false;
        for user in users {
            match self.settle_user(client, user, &record.delivery, false) {
                Ok(Settlement::Unchanged) => {}
                Ok(Settlement::Held(note)) => {
                    held = true;
                    notes.push(note);
                }
                Ok(Settlement::Settled(note)) => notes.push(note),
                Ok(Settlement::Opened(change, note)) => {
                    changes.push(change);
                    notes.push(note);
                }
                Ok(Settlement::Refused(note)) => {
                    refused = true;
                    notes.push(note);
                }
                Err(error) => {
                    tracing::warn!(target: "writ::scim", %user, %error, "lifecycle not settled; retried by the next write or start");
                    failed = true;
                    notes.push(format!("Users/{user}: lifecycle not settled yet ({})", error.code()));
                }
            }
        }
        if notes.is_empty() {
            notes.push("no access change: the birthright and the active state are as settled".into());
        }
        let outcome = match (changes.is_empty(), refused, failed || held) {
            (false, _, _) => Outcome::Correlated,
            (true, true, _) => Outcome::Refused,
            // Held or not settled yet: in the visible queue until it is.
            (true, false, true) => Outcome::Uncorrelated,
            (true, false, false) => Outcome::Ignored,
        };
        let detail = writ_core::machine::text(
            writ_core::machine::clean_text(&notes.join("; ")).chars().take(1000).collect(),
            "detail",
        )
        .unwrap_or_else(|_| outcome.as_str().to_owned());
        let settled = DeliveryRecord { outcome, changes, detail, updated_at: self.now(), ..record.clone() };
        let event = RegistryEvent::Delivery {
            actor: Actor::Identity(client.clone()),
            record: Box::new(settled.clone()),
            kind: DeliveryEventKind::Correlated,
        };
        self.store.update_delivery(
            &settled,
            (record.outcome, record.attempts),
            &registry_event(&event, self.hmac()?),
        )?;
        Ok(settled)
    }

    /// Settles every person whose lifecycle is behind their record (after a crash, or after
    /// the birthright rules changed): each gets the change its record now calls for, linked to
    /// the newest delivery about them. Returns how many were settled.
    pub fn scim_settle_all(&self, client: &IdentityName) -> Result<usize> {
        self.settle_all(client, false)
    }

    /// [`Engine::scim_settle_all`] under a person's resumption of paused automation: the
    /// held steps proceed without counting against the `[automation]` limits again.
    pub(crate) fn scim_settle_all_approved(&self, client: &IdentityName) -> Result<usize> {
        self.settle_all(client, true)
    }

    fn settle_all(&self, client: &IdentityName, approved: bool) -> Result<usize> {
        let _serial = self.scim_serial.lock().map_err(|_| StoreError::Other("SCIM lock poisoned".into()))?;
        let mut settled = 0;
        for row in self.store.scim_resources(Kind::User.name(), true)? {
            let object = format!("{}/{}", Kind::User.endpoint(), row.id);
            let Some(latest) = self.store.deliveries_about(&source()?, &object)?.pop() else { continue };
            match self.settle_user(client, &row.id, &latest.delivery, approved)? {
                Settlement::Unchanged | Settlement::Held(_) => {}
                _ => settled += 1,
            }
        }
        Ok(settled)
    }

    /// The identity provider's removals since the `[automation]` window began (or it was last
    /// resumed), and how many people it has.
    fn recent_removals(&self) -> Result<crate::automation::RecentRemovals> {
        let now = self.now();
        let window = self.policy()?.rules().automation.window;
        let since = now.as_millis() - window.as_millis();
        let since = self.scim_resumed_at()?.map_or(since, |at| since.max(at.as_millis()));
        let mut recent = crate::automation::RecentRemovals::default();
        for row in self.store.scim_resources(Kind::User.name(), true)? {
            if row.identity.is_none() {
                continue;
            }
            let settled = Settled::read(&row.settled);
            let left = settled.left_at.is_some_and(|at| at >= since);
            if settled.active || left {
                recent.holders += 1;
            }
            if left {
                recent.people += 1;
                recent.grants += settled.removed;
            }
        }
        Ok(recent)
    }

    /// Brings one person's access in line with their record (see the module documentation).
    fn settle_user(
        &self,
        client: &IdentityName,
        id: &str,
        delivery: &Delivery,
        approved: bool,
    ) -> Result<Settlement> {
        let Some(row) = self.store.scim_resource(Kind::User.name(), id)? else {
            return Ok(Settlement::Unchanged);
        };
        let Some(identity) = row.identity.clone() else { return Ok(Settlement::Unchanged) };
        let old = Settled::read(&row.settled);
        // A step held before a person last resumed its automation was decided by that
        // resumption, even if settling it waited (a crash between the two, a client gone).
        let resumed = self.scim_resumed_at()?;
        let approved =
            approved || old.held_at.zip(resumed).is_some_and(|(held, resumed)| held <= resumed.as_millis());
        let doc = parse_doc(&row)?;
        let active = !row.deleted && doc.get("active") != Some(&Value::Bool(false));
        let person = writ_policy::Record {
            department: schema::enterprise(&doc, "department").map(str::to_owned),
            title: schema::text(&doc, "title").map(str::to_owned),
            user_type: schema::text(&doc, "userType").map(str::to_owned),
            roles: values(&doc, "roles"),
            groups: if row.deleted {
                Vec::new()
            } else {
                self.scim_groups_of(id)?.into_iter().map(|(_, name)| name).collect()
            },
        };
        let desired: BTreeSet<EntitlementRef> = if active {
            self.policy()?.rules().birthright_of(&person).into_keys().collect()
        } else {
            BTreeSet::new()
        };
        let desired_names: BTreeSet<String> = desired.iter().map(ToString::to_string).collect();
        // A step that removes access waits while its automation is paused, and a leaver beyond
        // the policy's limits pauses it: nothing of the step happens, and it is settled later.
        let leaving = !active && old.active;
        let revoking = leaving || (active && old.entitlements.iter().any(|e| !desired_names.contains(e)));
        if revoking {
            let recent = if leaving && !approved { self.recent_removals()? } else { Default::default() };
            if let Some(reason) = self.lifecycle_hold(&identity, leaving, approved, &recent)? {
                tracing::warn!(target: "writ::scim", user = %id, %identity, "lifecycle step held: {reason}");
                if old.held_at.is_none() {
                    let marked = Settled { held_at: Some(self.now().as_millis()), ..old.clone() };
                    self.store.scim_settle(Kind::User.name(), id, &marked.write(), &row.settled)?;
                }
                return Ok(Settlement::Held(format!("Users/{id} ({identity}): held: {reason}")));
            }
        }
        // The identity provider is the authority on whether a person is active: a leaver stops
        // acting in Writ at once (tokens revoked, approvals withdrawn, owned NHIs flagged); a
        // returning person it disabled acts again. An offboarded person comes back only
        // through an admin (`writ identity enable`).
        let standing = self.identity(&identity)?.state;
        let why =
            |what: &str| format!("identity provider: SCIM User {id} is {what} (delivery {})", delivery.id);
        if !active {
            let what = if row.deleted { "deleted" } else { "inactive" };
            if standing == IdentityState::Active {
                self.move_identity(
                    Actor::Identity(client.clone()),
                    &identity,
                    IdentityState::Disabled,
                    why(what),
                )?;
            }
        } else if standing == IdentityState::Disabled && !old.active {
            // Only a person the identity provider itself had inactive comes back through it: an
            // admin's disable (while the provider had them active) is not undone by a routine
            // write that says active again.
            self.move_identity(
                Actor::Identity(client.clone()),
                &identity,
                IdentityState::Active,
                why("active"),
            )?;
        }
        if active == old.active && desired_names == old.entitlements {
            // Nothing to do any more (the record went back): a hold no longer stands.
            if old.held_at.is_some() {
                let cleared = Settled { held_at: None, ..old.clone() };
                self.store.scim_settle(Kind::User.name(), id, &cleared.write(), &row.settled)?;
            }
            return Ok(Settlement::Unchanged);
        }
        let event = match (old.active, active) {
            (false, true) => BusinessEvent::Joiner,
            (true, false) => BusinessEvent::Leaver,
            _ => BusinessEvent::Mover,
        };
        // A step still waiting for approval is superseded: its grants must never land later.
        if let Some(previous) = old.change.as_deref().and_then(|c| ChangeId::parse(c).ok()) {
            self.supersede(&previous, client, &delivery.id)?;
        }
        let held: BTreeSet<EntitlementRef> = if event == BusinessEvent::Leaver {
            self.holdings(&identity)?
        } else {
            self.store.grants_of(&identity)?.into_iter().map(|g| g.entitlement).collect()
        };
        let mut ops = Vec::new();
        let op = |action, entitlement: &EntitlementRef| RequestedOp {
            action,
            identity: identity.clone(),
            entitlement: entitlement.clone(),
            duration: None,
        };
        for entitlement in desired.iter().filter(|e| !held.contains(e)) {
            ops.push(op(OpAction::Grant, entitlement));
        }
        for entitlement in held.iter().filter(|e| !desired.contains(e)) {
            // A leaver loses everything; a mover loses what their old record gave them.
            if event == BusinessEvent::Leaver || old.entitlements.contains(&entitlement.to_string()) {
                ops.push(op(OpAction::Revoke, entitlement));
            }
        }
        let step = old.step + 1;
        let removed = ops.iter().filter(|op| op.action == OpAction::Revoke).count() as u64;
        let (left_at, removed) = match (event, approved) {
            (BusinessEvent::Leaver, false) => (Some(self.now().as_millis()), removed),
            // Still inactive: what the leaver step counted stays counted in its window.
            _ if !active => (old.left_at, old.removed),
            _ => (None, 0),
        };
        let mut next = Settled {
            step,
            active,
            entitlements: desired_names,
            change: None,
            left_at,
            removed,
            held_at: None,
        };
        let label = format!("{event} {identity} (SCIM Users/{id}, step {step})");
        let settlement = if ops.is_empty() {
            Settlement::Settled(format!("{label}: nothing to grant or revoke"))
        } else {
            match self.open_step(client, &row, step, ops, event, &label)? {
                Ok(change) => {
                    self.link(&change, delivery.clone(), false)?;
                    next.change = Some(change.to_string());
                    Settlement::Opened(change.clone(), format!("{label}: opened {change}"))
                }
                Err(reason) => Settlement::Refused(format!("{label}: refused: {reason}")),
            }
        };
        self.store.scim_settle(Kind::User.name(), id, &next.write(), &row.settled)?;
        if event == BusinessEvent::Leaver {
            let leaver = self.identity(&identity)?;
            self.flag_owned(&leaver, next.change.as_deref().and_then(|c| ChangeId::parse(c).ok()))?;
        }
        Ok(settlement)
    }

    /// Opens (or finds, after a crash) the change of one lifecycle step. The inner error is a
    /// refusal by the rules or policy, kept with the delivery.
    fn open_step(
        &self,
        client: &IdentityName,
        row: &ScimRow,
        step: u64,
        ops: Vec<RequestedOp>,
        event: BusinessEvent,
        label: &str,
    ) -> Result<std::result::Result<ChangeId, String>> {
        let now = self.now();
        let object = format!("{}/{}#{step}", Kind::User.endpoint(), row.id);
        let reserved = self.store.bind_object(
            &source()?,
            &object,
            &ChangeId::generate(now, crate::random_bits()?),
            now,
        )?;
        let input = RequestInput {
            window: None,
            rollback_owner: None,
            requester: client.clone(),
            on_behalf_of: None,
            ops,
            justification: Justification::parse(&format!("Identity provider lifecycle: {label}"))?,
            refs: vec![ExternalRef::new(
                RefKind::Record,
                &format!("scim:{}/{}", Kind::User.endpoint(), row.id),
            )?],
            event,
        };
        self.open_reserved(reserved, input)
    }

    /// Cancels a previous lifecycle step's change if it is still waiting (not yet executing).
    fn supersede(&self, previous: &ChangeId, client: &IdentityName, delivery: &str) -> Result<()> {
        let state = self.load(previous)?.change.state;
        if matches!(state, ChangeState::Requested | ChangeState::PendingApproval | ChangeState::Approved) {
            self.cancel(
                previous,
                client,
                format!("superseded by a newer identity provider record (scim/{delivery})"),
            )?;
        }
        Ok(())
    }
}
