//! The full read of an OpenBao target for reconciliation: not only the credentials Writ
//! delivered (its KV paths) but every token that carries a managed policy, every lease of the
//! database mount, every static role and every certificate the PKI mount still vouches for,
//! each with when it was issued and when it ends.
//!
//! A token is attributed to the identity its metadata names (`writ_identity`, set on the
//! tokens Writ creates) or to its display name (`bao token create -display-name=alice` gives
//! `token-alice`; OpenBao lowers display names and turns `_` into `-`, so an identity with an
//! underscore is only found through the metadata); one that names nobody is held by `token <accessor>`, a lease no Writ path
//! records by `lease <id>`: accounts no identity can be, so reconciliation reports them
//! unmatched. Listing tokens needs `sudo` on `auth/token/accessors`; without it the read is
//! partial, and says so.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;
use writ_connector::{Connector, Credential, Holdings, Result};
use writ_core::name::{EntitlementName, IdentityName};
use writ_core::time::Timestamp;

use super::{Kind, OpenBaoConnector};

/// How many times the per-request timeout a whole read may take.
const READ_TIMEOUTS: u32 = 10;

/// A token OpenBao reports, with the managed policies it carries.
pub(super) struct TokenSeen {
    pub accessor: String,
    pub policies: Vec<String>,
    /// The identity it is attributed to, or `token <accessor>`.
    pub account: String,
    pub issued_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    /// When its holder last used it as OpenBao can tell: its creation or last renewal.
    pub used_at: Option<Timestamp>,
}

/// The members of `policy/<policy>` by token: the identities tokens with it are attributed to.
pub(super) fn token_members(tokens: &[TokenSeen], policy: &str) -> Vec<IdentityName> {
    tokens
        .iter()
        .filter(|t| t.policies.iter().any(|p| p == policy))
        .filter_map(|t| IdentityName::parse(&t.account).ok())
        .collect()
}

fn unix_seconds(value: Option<&Value>) -> Option<Timestamp> {
    value.and_then(Value::as_i64).filter(|s| *s > 0).map(|s| Timestamp::from_millis(s.saturating_mul(1000)))
}

fn rfc3339(value: Option<&Value>) -> Option<Timestamp> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty()).and_then(Timestamp::parse_rfc3339)
}

impl OpenBaoConnector {
    /// Every live token carrying one of the managed policies, except the one Writ uses. `Err`
    /// (as text, for the partial reasons) if the accessors cannot be listed.
    pub(super) fn managed_tokens(
        &self,
        deadline: Option<Instant>,
    ) -> std::result::Result<Vec<TokenSeen>, String> {
        if self.settings.policies.is_empty() {
            return Ok(Vec::new());
        }
        let own = self
            .call("GET", "auth/token/lookup-self", None)
            .and_then(|r| r.expect(self, 200, "token lookup"))
            .map_err(|e| e.to_string())?;
        let own = own.pointer("/data/accessor").and_then(Value::as_str).unwrap_or_default().to_owned();
        let accessors = self.list("auth/token/accessors", "list token accessors").map_err(|e| {
            format!("tokens: {e} (Writ's token needs sudo on auth/token/accessors to see tokens made outside Writ)")
        })?;
        let mut tokens = Vec::new();
        for accessor in accessors.into_iter().filter(|a| *a != own) {
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err("tokens: the read passed its deadline; the rest was not read".into());
            }
            let reply = self
                .call("POST", "auth/token/lookup-accessor", Some(serde_json::json!({ "accessor": accessor })))
                .map_err(|e| format!("tokens: {e}"))?;
            // Gone between the listing and the lookup.
            if matches!(reply.status, 400 | 403) {
                continue;
            }
            let data = reply.expect(self, 200, "token lookup").map_err(|e| format!("tokens: {e}"))?;
            let data = data.get("data").cloned().unwrap_or_default();
            let policies: Vec<String> = data
                .get("policies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|p| self.settings.policies.iter().any(|m| m == p))
                .map(str::to_owned)
                .collect();
            if policies.is_empty() {
                continue;
            }
            let named =
                data.pointer("/meta/writ_identity").and_then(Value::as_str).map(str::to_owned).or_else(
                    || {
                        data.get("display_name")
                            .and_then(Value::as_str)
                            .and_then(|d| d.strip_prefix("token-"))
                            .filter(|d| IdentityName::parse(d).is_ok())
                            .map(str::to_owned)
                    },
                );
            tokens.push(TokenSeen {
                account: named.unwrap_or_else(|| format!("token {accessor}")),
                accessor,
                policies,
                issued_at: unix_seconds(data.get("creation_time")),
                expires_at: rfc3339(data.get("expire_time")),
                used_at: unix_seconds(data.get("creation_time"))
                    .max(unix_seconds(data.get("last_renewal_time"))),
            });
        }
        Ok(tokens)
    }

    /// Revokes every token outside Writ's paths that carries `policy` for `member`: what a
    /// revoke of `policy/<policy>` must also end. Tokens that cannot be listed are left (see
    /// [`Self::managed_tokens`]).
    pub(super) fn revoke_other_tokens(&self, member: &str, policy: &str) -> Result<()> {
        let Ok(tokens) = self.managed_tokens(None) else { return Ok(()) };
        for token in tokens.iter().filter(|t| t.account == member && t.policies.iter().any(|p| p == policy)) {
            self.call(
                "POST",
                "auth/token/revoke-accessor",
                Some(serde_json::json!({ "accessor": token.accessor })),
            )?
            .expect(self, 204, "revoke the token")?;
        }
        Ok(())
    }

    /// Everything this target manages, for reconciliation (see the module documentation).
    pub(super) fn inventory(&self) -> Result<Holdings> {
        let deadline = Instant::now() + self.settings.timeout * READ_TIMEOUTS;
        let entitlements = self.entitlements()?;
        let mut holdings = Holdings::default();
        // What Writ delivered: members by path, and which handle each path names.
        let (observed, handles) = self.holders_with_handles(&entitlements)?;
        for (entitlement, members) in &observed.members {
            for member in members {
                holdings.held.push((member.to_string(), entitlement.clone()));
            }
        }
        let known = |handle: &str| handles.get(handle).cloned();
        // The usage signal: tokens and leases issued or renewed, by the account they belong to.
        let mut used: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut use_at = |account: &str, at: Option<Timestamp>| {
            if let Some(at) = at {
                let last = used.entry(account.to_owned()).or_insert(at);
                *last = (*last).max(at);
            }
        };
        let tokens_read = match self.managed_tokens(Some(deadline)) {
            Ok(tokens) => {
                for token in tokens {
                    for policy in &token.policies {
                        if let Ok(entitlement) = EntitlementName::parse(&format!("policy/{policy}")) {
                            holdings.held.push((token.account.clone(), entitlement));
                        }
                    }
                    let (account, entitlement) = match known(&token.accessor) {
                        Some((identity, entitlement)) => (Some(identity.to_string()), Some(entitlement)),
                        None => (Some(token.account.clone()), None),
                    };
                    use_at(account.as_deref().unwrap_or_default(), token.used_at);
                    holdings.credentials.push(Credential {
                        class: "token",
                        handle: token.accessor,
                        account,
                        entitlement,
                        issued_at: token.issued_at,
                        expires_at: token.expires_at,
                    });
                }
                true
            }
            Err(reason) => {
                holdings.partial.push(reason);
                false
            }
        };
        let mount = self.settings.database_mount.clone();
        for entitlement in &entitlements {
            if Instant::now() > deadline {
                holdings
                    .partial
                    .push("the read passed its deadline; leases and static roles were not all read".into());
                break;
            }
            match Kind::of(entitlement) {
                Kind::Dynamic(role) => {
                    let path = format!("sys/leases/lookup/{mount}/creds/{role}");
                    let leases = match self.list(&path, "list leases") {
                        Ok(leases) => leases,
                        Err(error) => {
                            holdings.partial.push(format!("leases of {role}: {error}"));
                            continue;
                        }
                    };
                    for suffix in leases {
                        let lease = format!("{mount}/creds/{role}/{suffix}");
                        let reply = self.call(
                            "POST",
                            "sys/leases/lookup",
                            Some(serde_json::json!({ "lease_id": lease })),
                        )?;
                        if reply.status != 200 {
                            continue;
                        }
                        let account = match known(&lease) {
                            Some((identity, _)) => identity.to_string(),
                            None => {
                                // Credentials issued outside Writ: held by the lease itself.
                                let holder = format!("lease {lease}");
                                holdings.held.push((holder.clone(), entitlement.clone()));
                                holder
                            }
                        };
                        let renewed = rfc3339(reply.body.pointer("/data/last_renewal"));
                        use_at(&account, rfc3339(reply.body.pointer("/data/issue_time")).max(renewed));
                        holdings.credentials.push(Credential {
                            class: "lease",
                            handle: lease,
                            account: Some(account),
                            entitlement: Some(entitlement.clone()),
                            issued_at: rfc3339(reply.body.pointer("/data/issue_time")),
                            expires_at: rfc3339(reply.body.pointer("/data/expire_time")),
                        });
                    }
                }
                Kind::Static(role) => {
                    let reply = self.call("GET", &format!("{mount}/static-roles/{role}"), None)?;
                    if reply.status != 200 {
                        holdings
                            .partial
                            .push(format!("static role {role}: OpenBao answered {}", reply.status));
                        continue;
                    }
                    let holder =
                        handles.iter().find(|(h, _)| h.as_str() == role).map(|(_, (i, _))| i.to_string());
                    holdings.credentials.push(Credential {
                        class: "static",
                        handle: role.to_owned(),
                        account: holder,
                        entitlement: Some(entitlement.clone()),
                        issued_at: rfc3339(reply.body.pointer("/data/last_vault_rotation")),
                        expires_at: None,
                    });
                }
                Kind::Policy(_) | Kind::Cert(_) => {}
            }
        }
        // Certificates Writ delivered: when each was issued and ends.
        for (handle, (identity, entitlement)) in &handles {
            if !matches!(Kind::of(entitlement), Kind::Cert(_)) {
                continue;
            }
            let reply = self.call("GET", &format!("{}/cert/{handle}", self.settings.pki_mount), None)?;
            if reply.status != 200 {
                continue;
            }
            let pem = reply.body.pointer("/data/certificate").and_then(Value::as_str).unwrap_or_default();
            let Ok((not_before, not_after)) = super::pki::validity(pem) else { continue };
            let millis = |d: std::time::Duration| {
                Timestamp::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            };
            holdings.credentials.push(Credential {
                class: "certificate",
                handle: handle.clone(),
                account: Some(identity.to_string()),
                entitlement: Some(entitlement.clone()),
                issued_at: Some(millis(not_before)),
                expires_at: Some(millis(not_after)),
            });
        }
        // Without the token listing there is no signal worth the name: nothing is called stale.
        if tokens_read {
            holdings.usage = Some(used.into_iter().collect());
        }
        holdings.normalize();
        Ok(holdings)
    }
}

/// Handles recorded on Writ's paths: handle → (identity, entitlement).
pub(super) type Handles = BTreeMap<String, (IdentityName, EntitlementName)>;
