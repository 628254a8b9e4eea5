//! `[[notify]]`: who is told of what, over which channel. A route names notification kinds
//! (`writ_core::notify::kind`), optionally the tiers it applies to, its recipients and its
//! channels, and whether sealed text may travel in clear on it.
//!
//! Without a route nobody is notified of anything.

use writ_core::notify::{Channel, kind};

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifySpec {
    id: String,
    on: Vec<String>,
    to: Vec<String>,
    channels: Vec<String>,
    #[serde(default)]
    tiers: Vec<String>,
    #[serde(default)]
    clear_text: bool,
}

/// Who a route tells, relative to what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The change's requester and the person it is on behalf of.
    Requester,
    /// Whoever holds the access a warning is about.
    Holder,
    /// Every person who could give one of the approvals the change still needs.
    Approvers,
    /// The people an escalation names.
    Escalation,
    /// The owners of the NHIs the change or finding is about, and the entitlements' owners.
    Owner,
    /// The change's rollback owner (told, for example, when its verification fails).
    RollbackOwner,
    /// A group of `[groups]`: its members by email, its webhook by webhook.
    Group(String),
    /// One person by name.
    Person(String),
}

/// A compiled `[[notify]]` route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub id: String,
    pub on: Vec<String>,
    pub to: Vec<Audience>,
    pub channels: Vec<Channel>,
    /// Empty: every tier.
    pub tiers: Vec<String>,
    /// Whether sealed justifications may be sent in clear on this route.
    pub clear_text: bool,
}

impl Route {
    /// Whether the route tells of `kind` for a change (or finding) at `tier`.
    pub fn applies(&self, kind: &str, tier: Option<&str>) -> bool {
        self.on.iter().any(|k| k == kind)
            && (self.tiers.is_empty() || tier.is_some_and(|t| self.tiers.iter().any(|x| x == t)))
    }
}

pub(super) fn routes(
    file: &RulesFile,
    text: &str,
    tiers: &[Tier],
    groups: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<Route>, PolicyError> {
    let mut routes: Vec<Route> = Vec::new();
    for spec in &file.notify {
        let line = line_of(text, spec.span().start);
        let s = spec.get_ref();
        let err =
            |reason: String| PolicyError::invalid(FILE, line, &format!("[[notify]] {}: {reason}", s.id));
        if s.id.is_empty() || routes.iter().any(|r| r.id == s.id) {
            return Err(err("needs an id of its own".into()));
        }
        if s.on.is_empty() || s.to.is_empty() || s.channels.is_empty() {
            return Err(err("needs at least one of each of on, to and channels".into()));
        }
        if let Some(unknown) = s.on.iter().find(|k| !kind::ALL.contains(&k.as_str())) {
            return Err(err(format!(
                "unknown notification kind {unknown:?} (one of {})",
                kind::ALL.join(", ")
            )));
        }
        if let Some(unknown) = s.tiers.iter().find(|t| !tiers.iter().any(|x| &x.name == *t)) {
            return Err(err(format!("unknown tier {unknown:?}")));
        }
        let channels = s
            .channels
            .iter()
            .map(|c| Channel::parse(c).map_err(|e| err(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut to = Vec::new();
        for recipient in &s.to {
            to.push(match (recipient.as_str(), recipient.split_once(':')) {
                ("requester", _) => Audience::Requester,
                ("holder", _) => Audience::Holder,
                ("approvers", _) => Audience::Approvers,
                ("escalation", _) => Audience::Escalation,
                ("owner", _) => Audience::Owner,
                ("rollback_owner", _) => Audience::RollbackOwner,
                (_, Some(("group", g))) if groups.contains_key(g) => Audience::Group(g.to_owned()),
                (_, Some(("group", g))) => return Err(err(format!("group {g:?} is not in [groups]"))),
                (_, Some(("person", p))) if writ_core::name::IdentityName::parse(p).is_ok() => {
                    Audience::Person(p.to_owned())
                }
                _ => {
                    return Err(err(format!(
                        "unknown recipient {recipient:?} (requester, holder, approvers, escalation, owner, rollback_owner, group:NAME or person:NAME)"
                    )));
                }
            });
        }
        if channels.contains(&Channel::Webhook) && !to.iter().any(|a| matches!(a, Audience::Group(_))) {
            return Err(err("a webhook goes to a group's webhook: name a group:NAME in to".into()));
        }
        routes.push(Route {
            id: s.id.clone(),
            on: s.on.clone(),
            to,
            channels,
            tiers: s.tiers.clone(),
            clear_text: s.clear_text,
        });
    }
    Ok(routes)
}
