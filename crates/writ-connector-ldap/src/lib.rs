//! The LDAP target connector (OpenLDAP and other directories): an entitlement is a group
//! (`groupOfNames` or `groupOfUniqueNames`) directly under the target's groups base, named by
//! its `cn`; a member is the entry `uid=<identity>,<users base>`; a grant is a `member` (or
//! `uniqueMember`) value.
//!
//! Each apply reads the groups it touches, then sends one modify per group that changes: the
//! member values to add and delete, and the group's `description` replaced with the Writ change
//! ID, requester, approvers and executor — one atomic operation per entry, so the change ID is on
//! the target beside the membership it explains (and in the directory's own access log, where one
//! is kept). Only the differences are sent, so a retry applies only what is missing. Both group
//! classes require at least one member: removing the last one leaves the placeholder value
//! (setting `empty_member`, default `cn=empty-membership`), which is never an identity and is
//! taken out again when a member is added. `observe` searches the directory, never Writ's
//! records.
//!
//! Target settings: `url` (`ldap://host:port` or `ldapi://…`), `bind_dn`, `password_file`
//! (read when connecting), `groups` (the base DN of the managed groups), `users` (the base DN of
//! member entries) and optionally `empty_member`. This build has no TLS: a password is only sent
//! over `ldapi://` or to a loopback address, anything else is refused before connecting.

mod registration;

pub use registration::REGISTRATION;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConn, LdapConnSettings, Mod, Scope, SearchEntry};
use writ_connector::{
    AppliedOp, ApplyContext, ApplyReport, Connector, ConnectorError, Holdings, Observed, PlanStep, Result,
    TargetOp, no_rotation, plan_against,
};
use writ_core::time::Timestamp;

/// Entries per page of a full read (RFC 2696 simple paged results).
const PAGE_SIZE: i32 = 500;

/// How many times the per-operation timeout a whole paged read may take.
const READ_TIMEOUTS: u32 = 10;
use writ_core::change::ChangeId;
use writ_core::name::{EntitlementName, IdentityName};

/// How to reach and map one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapSettings {
    pub url: String,
    pub bind_dn: Option<String>,
    pub groups: String,
    pub users: String,
    pub empty_member: String,
    /// Longest an LDAP operation (or connecting) may take before the target counts as
    /// unavailable.
    pub timeout: Duration,
}

/// One paged search: what it reads (for the partial reasons), where, which entries, which
/// attributes.
struct Search<'a> {
    what: &'a str,
    base: &'a str,
    filter: &'a str,
    attrs: Vec<&'a str>,
}

/// One managed group as read from the directory.
struct Group {
    dn: String,
    /// `member` or `uniqueMember`.
    attribute: &'static str,
    /// Every value of the member attribute, as stored.
    values: Vec<String>,
    /// The values that are Writ identities (entries under the users base).
    members: BTreeSet<IdentityName>,
}

/// A connection to one directory.
pub struct LdapConnector {
    name: String,
    settings: LdapSettings,
    conn: Mutex<LdapConn>,
}

impl LdapConnector {
    /// Connects and binds (anonymously without `bind_dn`). `password` comes from a file.
    pub fn connect(name: &str, settings: LdapSettings, password: Option<&str>) -> Result<LdapConnector> {
        let invalid = |detail: String| ConnectorError::Invalid { target: name.to_owned(), detail };
        if !(settings.url.starts_with("ldap://") || settings.url.starts_with("ldapi://")) {
            return Err(invalid(format!("url must start with ldap:// or ldapi://, not {:?}", settings.url)));
        }
        if password.is_some() && !local_url(&settings.url) {
            return Err(invalid(
                "a bind password is only sent over ldapi:// or to a loopback address (this build has no TLS)"
                    .into(),
            ));
        }
        let conn_settings = LdapConnSettings::new().set_conn_timeout(settings.timeout);
        let mut conn =
            LdapConn::with_settings(conn_settings, &settings.url).map_err(|e| unavailable(name, &e))?;
        if let Some(dn) = &settings.bind_dn {
            let password = password.map(|p| p.trim_end_matches(['\n', '\r'])).unwrap_or_default();
            conn.with_timeout(settings.timeout)
                .simple_bind(dn, password)
                .and_then(ldap3::LdapResult::success)
                .map_err(|e| unavailable(name, &e))?;
        }
        Ok(LdapConnector { name: name.to_owned(), settings, conn: Mutex::new(conn) })
    }

    /// True once the connection is gone (the factory then connects again).
    pub fn is_closed(&self) -> bool {
        self.conn.lock().map_or(true, |mut c| c.is_closed())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, LdapConn>> {
        self.conn.lock().map_err(|_| ConnectorError::Unavailable {
            target: self.name.clone(),
            detail: "connection lock poisoned".into(),
        })
    }

    /// Every managed group (or only `only`), by entitlement name.
    fn groups(
        &self,
        conn: &mut LdapConn,
        only: Option<&BTreeSet<&EntitlementName>>,
    ) -> Result<BTreeMap<EntitlementName, Group>> {
        let filter = match only {
            Some(names) => {
                let names: String =
                    names.iter().map(|n| format!("(cn={})", ldap3::ldap_escape(n.as_str()))).collect();
                format!("(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(|{names}))")
            }
            None => "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))".to_owned(),
        };
        let (entries, _) = conn
            .with_timeout(self.settings.timeout)
            .search(
                &self.settings.groups,
                Scope::OneLevel,
                &filter,
                vec!["cn", "objectClass", "member", "uniqueMember"],
            )
            .and_then(ldap3::SearchResult::success)
            .map_err(|e| unavailable(&self.name, &e))?;
        let mut groups = BTreeMap::new();
        for entry in entries {
            let entry = SearchEntry::construct(entry);
            let Some(name) = attr(&entry, "cn").first().and_then(|cn| EntitlementName::parse(cn).ok()) else {
                continue;
            };
            let unique =
                attr(&entry, "objectClass").iter().any(|c| c.eq_ignore_ascii_case("groupOfUniqueNames"));
            let attribute = if unique { "uniqueMember" } else { "member" };
            let values = attr(&entry, attribute).to_vec();
            let members = values.iter().filter_map(|dn| identity_of(dn, &self.settings.users)).collect();
            groups.insert(name, Group { dn: entry.dn, attribute, values, members });
        }
        Ok(groups)
    }

    /// Reads every entry under `base` matching `filter` in pages, calling `each` per entry.
    /// A page that fails, an error result or the whole read passing `deadline` ends the read
    /// and is said in `partial`; failing to start it at all is an error.
    fn paged(
        &self,
        conn: &mut LdapConn,
        search: Search<'_>,
        deadline: std::time::Instant,
        partial: &mut Vec<String>,
        mut each: impl FnMut(SearchEntry),
    ) -> Result<()> {
        let Search { what, base, filter, attrs } = search;
        let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE_SIZE))];
        let reasons = partial.len();
        let mut stream = conn
            .with_timeout(self.settings.timeout)
            .streaming_search_with(adapters, base, Scope::OneLevel, filter, attrs)
            .map_err(|e| unavailable(&self.name, &e))?;
        loop {
            if std::time::Instant::now() > deadline {
                partial.push(format!("{what}: the read passed its deadline; the rest was not read"));
                break;
            }
            match stream.next() {
                Ok(Some(entry)) => each(SearchEntry::construct(entry)),
                Ok(None) => break,
                Err(error) => {
                    partial
                        .push(format!("{what}: a page could not be read ({error}); the rest was not read"));
                    break;
                }
            }
        }
        let result = stream.result();
        if result.rc != 0 && partial.len() == reasons {
            partial.push(format!("{what}: the directory answered {} ({})", result.rc, result.text));
        }
        Ok(())
    }

    fn member_dn(&self, identity: &IdentityName) -> String {
        format!("uid={},{}", ldap3::dn_escape(identity.as_str()), self.settings.users)
    }
}

impl Connector for LdapConnector {
    fn is_closed(&self) -> bool {
        LdapConnector::is_closed(self)
    }

    fn entitlements(&self) -> Result<Vec<EntitlementName>> {
        Ok(self.groups(&mut *self.lock()?, None)?.into_keys().collect())
    }

    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>> {
        no_rotation(&self.name, "LDAP", ops)?;
        let wanted: BTreeSet<&EntitlementName> = ops.iter().map(|op| &op.entitlement).collect();
        let groups = self.groups(&mut *self.lock()?, Some(&wanted))?;
        plan_against(&self.name, &members_of(&groups), ops)
    }

    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport> {
        no_rotation(&self.name, "LDAP", ops)?;
        let mut conn = self.lock()?;
        let wanted: BTreeSet<&EntitlementName> = ops.iter().map(|op| &op.entitlement).collect();
        let groups = self.groups(&mut conn, Some(&wanted))?;
        let members = members_of(&groups);
        let plan = plan_against(&self.name, &members, ops)?;
        let mut applied = Vec::with_capacity(ops.len());
        for (entitlement, group) in &groups {
            let steps: Vec<&PlanStep> = plan.iter().filter(|s| &s.op.entitlement == entitlement).collect();
            let mut add: HashSet<String> = HashSet::new();
            let mut delete: HashSet<String> = HashSet::new();
            for step in steps.iter().filter(|s| s.will_change) {
                let dn = self.member_dn(&step.op.member);
                if step.op.action.leaves_present() {
                    add.insert(dn);
                } else {
                    // Delete the value as stored (its spelling may differ from ours).
                    delete.extend(
                        group
                            .values
                            .iter()
                            .filter(|v| {
                                identity_of(v, &self.settings.users).as_ref() == Some(&step.op.member)
                            })
                            .cloned(),
                    );
                }
            }
            if !add.is_empty() || !delete.is_empty() {
                let placeholder = &self.settings.empty_member;
                let remaining = group.values.iter().filter(|v| !delete.contains(*v)).count() + add.len();
                let has_placeholder = group.values.iter().any(|v| v.eq_ignore_ascii_case(placeholder));
                if remaining == 0 {
                    add.insert(placeholder.clone());
                } else if has_placeholder && !add.is_empty() {
                    delete
                        .extend(group.values.iter().filter(|v| v.eq_ignore_ascii_case(placeholder)).cloned());
                }
                let mut mods = Vec::new();
                if !add.is_empty() {
                    mods.push(Mod::Add(group.attribute.to_owned(), add));
                }
                if !delete.is_empty() {
                    mods.push(Mod::Delete(group.attribute.to_owned(), delete));
                }
                mods.push(Mod::Replace("description".to_owned(), HashSet::from([trail(context)])));
                let result = conn
                    .with_timeout(self.settings.timeout)
                    .modify(&group.dn, mods)
                    .map_err(|e| unavailable(&self.name, &e))?;
                match result.rc {
                    0 => {}
                    // Someone changed the group between our read and our write.
                    16 | 20 => {
                        return Err(ConnectorError::Conflict {
                            target: self.name.clone(),
                            detail: format!("{} changed concurrently: {}", group.dn, result.text),
                        });
                    }
                    rc => {
                        return Err(ConnectorError::Unavailable {
                            target: self.name.clone(),
                            detail: format!("modify {} refused (rc {rc}): {}", group.dn, result.text),
                        });
                    }
                }
            }
            for step in steps {
                let after = step.op.action.leaves_present();
                applied.push(AppliedOp { op: step.op.clone(), before: step.present_now, after });
            }
        }
        // Report in the order asked.
        let ordered =
            ops.iter().filter_map(|op| applied.iter().find(|a| &a.op == op).cloned()).collect::<Vec<_>>();
        Ok(ApplyReport { applied: ordered, reference: None })
    }

    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        let wanted: BTreeSet<&EntitlementName> = entitlements.iter().collect();
        let groups = self.groups(&mut *self.lock()?, Some(&wanted))?;
        Ok(Observed { members: members_of(&groups), ..Observed::default() })
    }

    /// Every member of every managed group and every entry under the users base, in pages;
    /// `authTimestamp` (the `lastbind` overlay) is the usage signal where the directory keeps it.
    /// A member outside the users base is held by its DN (no identity can be named so).
    fn holdings(&self) -> Result<Holdings> {
        let mut conn = self.lock()?;
        let deadline = std::time::Instant::now() + self.settings.timeout * READ_TIMEOUTS;
        let mut holdings = Holdings::default();
        let mut partial = Vec::new();
        let placeholder = normalise(&self.settings.empty_member);
        let users = self.settings.users.clone();
        let account = |dn: &str| identity_of(dn, &users).map_or_else(|| dn.to_owned(), |i| i.to_string());
        let groups = Search {
            what: "groups",
            base: &self.settings.groups,
            filter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
            attrs: vec!["cn", "member", "uniqueMember"],
        };
        self.paged(&mut conn, groups, deadline, &mut partial, |entry| {
            let Some(group) = attr(&entry, "cn").first().and_then(|cn| EntitlementName::parse(cn).ok())
            else {
                return;
            };
            for dn in attr(&entry, "member").iter().chain(attr(&entry, "uniqueMember")) {
                if normalise(dn) != placeholder {
                    holdings.held.push((account(dn), group.clone()));
                }
            }
        })?;
        let mut usage = Vec::new();
        let users = Search {
            what: "users",
            base: &self.settings.users,
            filter: "(objectClass=*)",
            attrs: vec!["uid", "authTimestamp"],
        };
        let users_read = self.paged(&mut conn, users, deadline, &mut partial, |entry| {
            let name = account(&entry.dn);
            if let Some(at) = attr(&entry, "authTimestamp").first().and_then(|t| generalized_time(t)) {
                usage.push((name.clone(), at));
            }
            holdings.accounts.push(name);
        });
        if let Err(error) = users_read {
            partial.push(format!("users: {error}"));
        }
        holdings.usage = (!usage.is_empty()).then_some(usage);
        holdings.partial = partial;
        holdings.normalize();
        Ok(holdings)
    }

    fn stamped(&self, change: &ChangeId, ops: &[TargetOp]) -> Result<Option<String>> {
        let names: String =
            ops.iter().map(|op| format!("(cn={})", ldap3::ldap_escape(op.entitlement.as_str()))).collect();
        let filter = format!("(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(|{names}))");
        let (entries, _) = self
            .lock()?
            .with_timeout(self.settings.timeout)
            .search(&self.settings.groups, Scope::OneLevel, &filter, vec!["description"])
            .and_then(ldap3::SearchResult::success)
            .map_err(|e| unavailable(&self.name, &e))?;
        // The description a write leaves starts with the change and the write's time.
        let prefix = format!("writ change {change} at ");
        let found: Vec<String> = entries
            .into_iter()
            .map(SearchEntry::construct)
            .filter_map(|entry| {
                let stamp = attr(&entry, "description").iter().find(|d| d.starts_with(&prefix))?.clone();
                let head = stamp.split(": ").next().unwrap_or(&stamp).to_owned();
                Some(format!("{} ({head})", entry.dn))
            })
            .collect();
        Ok((!found.is_empty()).then(|| found.join(", ")))
    }
}

fn members_of(
    groups: &BTreeMap<EntitlementName, Group>,
) -> BTreeMap<EntitlementName, BTreeSet<IdentityName>> {
    groups.iter().map(|(name, group)| (name.clone(), group.members.clone())).collect()
}

fn attr<'a>(entry: &'a SearchEntry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map_or(&[], |(_, values)| values.as_slice())
}

/// What the group's description says after a Writ write.
fn trail(context: &ApplyContext) -> String {
    let approvers = if context.approvers.is_empty() { "-".to_owned() } else { context.approvers.join(",") };
    format!(
        "writ change {} at {}: {} (requested by {}, approved by {}, executed by {})",
        context.change, context.at, context.summary, context.requester, approvers, context.executor
    )
}

/// The identity a member DN names: `uid=<name>` directly under `users` (compared without case
/// or spaces around separators), or `None` for any other entry.
pub fn identity_of(dn: &str, users: &str) -> Option<IdentityName> {
    let (first, rest) = split_rdn(dn)?;
    if normalise(rest) != normalise(users) {
        return None;
    }
    let (attribute, value) = first.split_once('=')?;
    if !attribute.trim().eq_ignore_ascii_case("uid") {
        return None;
    }
    IdentityName::parse(&unescape(value.trim())?).ok()
}

/// An LDAP GeneralizedTime in UTC (`20261204013000Z`, fractions ignored) as a timestamp.
fn generalized_time(text: &str) -> Option<Timestamp> {
    let digits = text.get(..14)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !text.ends_with('Z') {
        return None;
    }
    let part = |range: std::ops::Range<usize>| digits.get(range);
    Timestamp::parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        part(0..4)?,
        part(4..6)?,
        part(6..8)?,
        part(8..10)?,
        part(10..12)?,
        part(12..14)?
    ))
}

/// Splits a DN at its first unescaped comma.
fn split_rdn(dn: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => return Some((dn.get(..i)?, dn.get(i + 1..)?)),
            _ => escaped = false,
        }
    }
    None
}

fn normalise(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase()
}

/// Undoes RFC 4514 escaping (`\,` and `\2c` forms).
fn unescape(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let bytes = value.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let next = *bytes.get(i + 1)?;
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(next);
                i += 2;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// True for `ldapi://` and for `ldap://` to a loopback address.
fn local_url(url: &str) -> bool {
    if url.starts_with("ldapi://") {
        return true;
    }
    writ_connector::loopback_authority(
        url.trim_start_matches("ldap://").split('/').next().unwrap_or_default(),
    )
}

fn unavailable(target: &str, error: &ldap3::LdapError) -> ConnectorError {
    ConnectorError::Unavailable { target: target.to_owned(), detail: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_dns_map_to_identities_only_under_the_users_base() {
        let users = "ou=people,dc=writ,dc=test";
        let dave = IdentityName::parse("dave").ok();
        assert_eq!(identity_of("uid=dave,ou=people,dc=writ,dc=test", users), dave);
        assert_eq!(identity_of("UID=dave, OU=People, dc=writ,dc=test", users), dave);
        assert_eq!(identity_of("uid=dave,ou=other,dc=writ,dc=test", users), None);
        assert_eq!(identity_of("cn=dave,ou=people,dc=writ,dc=test", users), None);
        assert_eq!(identity_of("cn=empty-membership", users), None);
        assert_eq!(
            identity_of("uid=a\\+b,ou=people,dc=writ,dc=test", users),
            IdentityName::parse("a+b").ok()
        );
        assert_eq!(
            identity_of("uid=a\\2bb,ou=people,dc=writ,dc=test", users),
            IdentityName::parse("a+b").ok()
        );
        // A comma inside the value cannot smuggle in another base.
        assert_eq!(identity_of("uid=x\\,ou=people,ou=evil,dc=writ,dc=test", users), None);
    }

    #[test]
    fn generalized_times_are_read_in_utc_and_others_refused() {
        let at = generalized_time("20261204013000Z").unwrap();
        assert_eq!(at.to_rfc3339(), Timestamp::parse_rfc3339("2026-12-04T01:30:00Z").unwrap().to_rfc3339());
        assert!(generalized_time("20261204013000.5Z").is_some(), "fractions are ignored");
        for bad in ["", "2026120401Z", "20261204013000+0100", "2026x204013000Z", "20261304013000Z"] {
            assert_eq!(generalized_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn passwords_are_only_sent_to_local_endpoints() {
        assert!(local_url("ldap://127.0.0.1:389"));
        assert!(local_url("ldap://localhost"));
        assert!(local_url("ldap://[::1]:389/"));
        assert!(local_url("ldapi://%2Frun%2Fslapd%2Fldapi"));
        assert!(!local_url("ldap://ldap.example.com:389"));
        assert!(!local_url("ldap://10.0.0.1"));
    }
}
