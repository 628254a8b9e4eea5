//! The OpenBao connector: Writ issues credentials through OpenBao and delivers each to the
//! identity's KV v2 path `<kv>/data/<prefix>/<identity>/<entitlement>`, where the workload
//! reads it with its own token. Three kinds of entitlement:
//!
//! - **`<role>`**, a role of the database secrets engine (`LIST <mount>/roles`): a grant issues
//!   dynamic credentials (`GET <mount>/creds/<role>`, a new database login with its own lease,
//!   renewed to the grant's duration so the database refuses the login at the end even if
//!   Writ's own expiry were late); the handle is the lease, retired by revoking it.
//! - **`static/<role>`**, a static role of the same engine: one existing database login whose
//!   password OpenBao owns. A grant delivers the current password; a rotation has OpenBao set
//!   a new one on the database (`POST <mount>/rotate-role/<role>`), so the old one stops
//!   working there; a revoke rotates too, so the delivered copy dies, then deletes the path.
//! - **`policy/<name>`**, an ACL policy listed in the target's `policies` setting (none by
//!   default: the operator names what Writ may hand out): a grant creates an orphan token
//!   (for a workload or an AI agent), with the grant's duration as its TTL and maximum; the
//!   handle is the token's accessor, retired by `revoke-accessor`.
//! - **`pki/<role>`**, a role of the PKI engine (`LIST <pki mount>/roles`): a grant issues a
//!   certificate and its key (`POST <pki mount>/issue/<role>`, common name `<identity>` or
//!   `<identity>.<pki_domain>`, the grant's duration as TTL); the handle is the serial number,
//!   retired by revoking it. A certificate counts as valid until it expires or appears on the
//!   CRL OpenBao publishes (`<pki mount>/cert/crl`): relying parties check the CRL, not
//!   OpenBao's records, so a revocation OpenBao recorded but did not publish (CRL disabled, or
//!   waiting for an auto-rebuild) leaves the certificate valid, and Writ says so.
//!
//! A **rotation** issues a new credential, writes it as a new KV version, records the change
//! and version in the path's `custom_metadata`, retires the previous credential and destroys
//! every earlier version. A member is an identity whose path names a handle OpenBao still
//! reports live (for a static role: whose delivered password is OpenBao's current one) —
//! observed on OpenBao, never in Writ; for rotations the observation also says which change
//! issued the current version and whether every earlier credential is retired.
//!
//! **Secrets never reach Writ's records:** passwords and tokens pass through memory from
//! OpenBao's answer to the KV write; reports, evidence and errors carry only lease IDs,
//! accessors, versions and paths. OpenBao's answers are never quoted in errors, only its
//! `errors` list on a refusal.
//!
//! Target settings: `addr` (`http://127.0.0.1:8200`), `token_file` (Writ's OpenBao token, read
//! when connecting), optionally `database_mount` (`database`), `kv_mount` (`secret`) and
//! `kv_prefix` (`writ`), `policies` (comma-separated), `pki_mount` (`pki`) and `pki_domain`. This build has no TLS: the token is only sent to a loopback address.

mod inventory;
mod registration;

pub use registration::REGISTRATION;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use writ_connector::{
    AppliedOp, ApplyContext, ApplyReport, Connector, ConnectorError, Issued, Observed, PlanStep, Result,
    TargetOp, loopback_http, plan_against,
};
use writ_core::change::{ChangeId, OpAction};
use writ_core::name::{EntitlementName, IdentityName};

/// What an entitlement is on OpenBao, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'a> {
    Dynamic(&'a str),
    Static(&'a str),
    Policy(&'a str),
    Cert(&'a str),
}

impl Kind<'_> {
    fn of(entitlement: &EntitlementName) -> Kind<'_> {
        let name = entitlement.as_str();
        if let Some(role) = name.strip_prefix("static/") {
            Kind::Static(role)
        } else if let Some(policy) = name.strip_prefix("policy/") {
            Kind::Policy(policy)
        } else if let Some(role) = name.strip_prefix("pki/") {
            Kind::Cert(role)
        } else {
            Kind::Dynamic(name)
        }
    }

    /// The `custom_metadata` key naming the credential's handle.
    fn handle_key(self) -> &'static str {
        match self {
            Kind::Dynamic(_) => "lease_id",
            Kind::Static(_) => "static_role",
            Kind::Policy(_) => "accessor",
            Kind::Cert(_) => "serial",
        }
    }
}

/// A path's metadata as OpenBao reports it.
struct PathState {
    custom: serde_json::Map<String, Value>,
    current_version: u64,
    /// Versions older than the current one that are neither destroyed nor deleted.
    older_live: Vec<u64>,
}

impl PathState {
    fn get(&self, key: &str) -> Option<&str> {
        self.custom.get(key).and_then(Value::as_str).filter(|v| !v.is_empty())
    }
}

/// Where and how to reach one OpenBao.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenBaoSettings {
    pub addr: String,
    pub database_mount: String,
    pub kv_mount: String,
    pub kv_prefix: String,
    /// The ACL policies Writ may issue tokens for (none unless listed).
    pub policies: Vec<String>,
    /// The PKI engine's mount.
    pub pki_mount: String,
    /// Certificates are issued for `<identity>.<pki_domain>` (for `<identity>` without it).
    pub pki_domain: Option<String>,
    /// Longest one HTTP exchange may take.
    pub timeout: Duration,
}

/// A client for one OpenBao server.
pub struct OpenBaoConnector {
    name: String,
    settings: OpenBaoSettings,
    token: String,
    agent: ureq::Agent,
}

/// One answer: status and JSON body (empty object for 204).
struct Reply {
    status: u16,
    body: Value,
}

impl OpenBaoConnector {
    /// Checks the settings and that the token is accepted (`auth/token/lookup-self`).
    pub fn connect(name: &str, settings: OpenBaoSettings, token: &str) -> Result<OpenBaoConnector> {
        let invalid = |detail: String| ConnectorError::Invalid { target: name.to_owned(), detail };
        if !loopback_http(&settings.addr) {
            return Err(invalid(format!(
                "addr must be http:// to a loopback address in this build (no TLS), not {:?}",
                settings.addr
            )));
        }
        for (key, value) in [
            ("database_mount", &settings.database_mount),
            ("kv_mount", &settings.kv_mount),
            ("kv_prefix", &settings.kv_prefix),
            ("pki_mount", &settings.pki_mount),
        ] {
            if !path_segment_ok(value) {
                return Err(invalid(format!("{key} must be a plain path segment, not {value:?}")));
            }
        }
        if let Some(domain) = &settings.pki_domain
            && (!domain.split('.').all(path_segment_ok) || domain.contains('_'))
        {
            return Err(invalid(format!("pki_domain must be a DNS name, not {domain:?}")));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let connector = OpenBaoConnector {
            name: name.to_owned(),
            settings,
            token: token.trim_end_matches(['\n', '\r']).to_owned(),
            agent,
        };
        connector.call("GET", "auth/token/lookup-self", None)?.expect(&connector, 200, "token lookup")?;
        Ok(connector)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply> {
        let url = format!("{}/v1/{path}", self.settings.addr.trim_end_matches('/'));
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("X-Vault-Token", &self.token).call(),
            ("DELETE", _) => self.agent.delete(&url).header("X-Vault-Token", &self.token).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("X-Vault-Token", &self.token)
                .send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut response = result.map_err(|e| self.unavailable(format!("{method} {path}: {e}")))?;
        let status = response.status().as_u16();
        let body = if status == 204 {
            json!({})
        } else {
            response.body_mut().read_json::<Value>().unwrap_or_else(|_| json!({}))
        };
        Ok(Reply { status, body })
    }

    fn unavailable(&self, detail: String) -> ConnectorError {
        ConnectorError::Unavailable { target: self.name.clone(), detail }
    }

    fn kv_path(&self, kind: &str, identity: &str, role: &str) -> String {
        format!("{}/{kind}/{}/{identity}/{role}", self.settings.kv_mount, self.settings.kv_prefix)
    }

    /// The path's metadata, or `None` if it does not exist.
    fn path_state(&self, identity: &str, entitlement: &str) -> Result<Option<PathState>> {
        let reply = self.call("GET", &self.kv_path("metadata", identity, entitlement), None)?;
        if reply.status == 404 {
            return Ok(None);
        }
        let body = reply.expect(self, 200, "read KV metadata")?;
        let custom =
            body.pointer("/data/custom_metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        let current_version = body.pointer("/data/current_version").and_then(Value::as_u64).unwrap_or(0);
        let older_live = body
            .pointer("/data/versions")
            .and_then(Value::as_object)
            .map(|versions| {
                versions
                    .iter()
                    .filter_map(|(number, state)| {
                        let number: u64 = number.parse().ok()?;
                        let destroyed = state.get("destroyed").and_then(Value::as_bool).unwrap_or(false);
                        let deleted =
                            state.get("deletion_time").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
                        (number < current_version && !destroyed && !deleted).then_some(number)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(PathState { custom, current_version, older_live }))
    }

    /// Whether OpenBao reports the lease live.
    fn lease_live(&self, lease: &str) -> Result<bool> {
        let reply = self.call("POST", "sys/leases/lookup", Some(json!({ "lease_id": lease })))?;
        match reply.status {
            200 => Ok(reply.body.pointer("/data/ttl").and_then(Value::as_i64).unwrap_or(0) > 0),
            // OpenBao answers 400 "invalid lease" for a revoked or unknown lease.
            400 => Ok(false),
            _ => Err(reply.refused(self, "lease lookup")),
        }
    }

    /// Whether OpenBao reports the token behind the accessor live.
    fn accessor_live(&self, accessor: &str) -> Result<bool> {
        let reply = self.call("POST", "auth/token/lookup-accessor", Some(json!({ "accessor": accessor })))?;
        match reply.status {
            200 => Ok(true),
            // 400 "invalid accessor" (or 403 on some versions) for a revoked or unknown token.
            400 | 403 => Ok(false),
            _ => Err(reply.refused(self, "accessor lookup")),
        }
    }

    /// Reads a database login from `<database mount>/<path>`: the whole answer, the username
    /// and the password (kept in memory only).
    fn database_login(&self, path: &str, what: &str) -> Result<(Value, String, String)> {
        let body = self
            .call("GET", &format!("{}/{path}", self.settings.database_mount), None)?
            .expect(self, 200, what)?;
        let field =
            |name: &str| body.pointer(&format!("/data/{name}")).and_then(Value::as_str).map(str::to_owned);
        match (field("username"), field("password")) {
            (Some(username), Some(password)) => Ok((body, username, password)),
            _ => Err(self.unavailable(format!("{what}: the answer has no username/password"))),
        }
    }

    /// OpenBao's current password of a static role (kept in memory only).
    fn static_password(&self, role: &str) -> Result<String> {
        Ok(self.database_login(&format!("static-creds/{role}"), "read static credentials")?.2)
    }

    /// Whether the credential `handle` of kind `kind`, delivered to `identity`, still works.
    fn live(&self, kind: Kind<'_>, identity: &str, entitlement: &str, handle: &str) -> Result<bool> {
        match kind {
            Kind::Dynamic(_) => self.lease_live(handle),
            Kind::Policy(_) => self.accessor_live(handle),
            Kind::Cert(_) => self.certificate_valid(handle),
            Kind::Static(role) => {
                let reply = self.call("GET", &self.kv_path("data", identity, entitlement), None)?;
                if reply.status == 404 {
                    return Ok(false);
                }
                let data = reply.expect(self, 200, "read the delivered credentials")?;
                let delivered = data.pointer("/data/data/password").and_then(Value::as_str);
                let current = self.static_password(role)?;
                Ok(delivered == Some(current.as_str()))
            }
        }
    }

    /// Ends the credential `handle` and checks OpenBao no longer reports it live.
    fn retire(&self, kind: Kind<'_>, handle: &str) -> Result<()> {
        match kind {
            Kind::Dynamic(_) => {
                self.call("POST", "sys/leases/revoke", Some(json!({ "lease_id": handle })))?.expect(
                    self,
                    204,
                    "revoke the lease",
                )?;
                if self.lease_live(handle)? {
                    return Err(self.unavailable(format!("lease {handle} is still live after revocation")));
                }
            }
            Kind::Policy(_) => {
                self.call("POST", "auth/token/revoke-accessor", Some(json!({ "accessor": handle })))?
                    .expect(self, 204, "revoke the token")?;
                if self.accessor_live(handle)? {
                    return Err(self.unavailable(format!("token {handle} is still live after revocation")));
                }
            }
            Kind::Static(role) => {
                self.call("POST", &format!("{}/rotate-role/{role}", self.settings.database_mount), None)?
                    .expect(self, 204, "rotate the static role")?;
            }
            // Whether relying parties learn of the revocation (the CRL) is observed, not
            // assumed: see `certificate_valid`.
            Kind::Cert(_) => {
                let pki = &self.settings.pki_mount;
                let revoked = self
                    .call("POST", &format!("{pki}/revoke"), Some(json!({ "serial_number": handle })))?
                    .expect(self, 200, "revoke the certificate")?;
                if revoked.pointer("/data/revocation_time").and_then(Value::as_i64).unwrap_or(0) <= 0 {
                    return Err(self.unavailable(format!("certificate {handle} has no revocation time")));
                }
            }
        }
        Ok(())
    }

    /// Whether a relying party would accept the certificate with this serial: OpenBao issued
    /// it, it has not expired, and the CRL OpenBao publishes does not list it.
    fn certificate_valid(&self, serial: &str) -> Result<bool> {
        let pki = &self.settings.pki_mount;
        let reply = self.call("GET", &format!("{pki}/cert/{serial}"), None)?;
        if reply.status == 404 {
            return Ok(false);
        }
        let body = reply.expect(self, 200, "read the certificate")?;
        let pem = body.pointer("/data/certificate").and_then(Value::as_str).unwrap_or_default();
        let not_after =
            pki::not_after(pem).map_err(|e| self.unavailable(format!("certificate {serial}: {e}")))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if now >= not_after {
            return Ok(false);
        }
        let crl = self.call("GET", &format!("{pki}/cert/crl"), None)?.expect(self, 200, "read the CRL")?;
        let crl = crl.pointer("/data/certificate").and_then(Value::as_str).unwrap_or_default();
        let listed = pki::crl_lists(crl, serial).map_err(|e| self.unavailable(format!("CRL: {e}")))?;
        Ok(!listed)
    }

    /// Issues a new credential: its secret data (memory only) and its handle. `fresh` asks a
    /// static role for a new password instead of the current one.
    fn issue(&self, kind: Kind<'_>, op: &TargetOp, fresh: bool) -> Result<(Value, String)> {
        match kind {
            Kind::Dynamic(role) => {
                let (issued, username, password) =
                    self.database_login(&format!("creds/{role}"), "issue credentials")?;
                let lease = issued.get("lease_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                if lease.is_empty() {
                    return Err(self.unavailable("issue credentials: the answer has no lease".into()));
                }
                if let Some(ttl) = op.ttl {
                    let seconds = (ttl.as_millis() / 1000).max(1);
                    let renewed = self.call(
                        "POST",
                        "sys/leases/renew",
                        Some(json!({ "lease_id": lease, "increment": seconds })),
                    );
                    if let Err(error) =
                        renewed.and_then(|r| r.expect(self, 200, "set the lease to the grant's duration"))
                    {
                        let _ = self.retire(kind, &lease);
                        return Err(error);
                    }
                }
                Ok((json!({ "username": username, "password": password, "lease_id": lease }), lease))
            }
            Kind::Static(role) => {
                if fresh {
                    self.retire(kind, role)?;
                }
                let (_, username, password) =
                    self.database_login(&format!("static-creds/{role}"), "read static credentials")?;
                Ok((json!({ "username": username, "password": password }), role.to_owned()))
            }
            Kind::Policy(policy) => {
                let bound = op.ttl.map(|ttl| format!("{}s", (ttl.as_millis() / 1000).max(1)));
                let request = json!({
                    "policies": [policy],
                    "display_name": format!("writ-{}", op.member),
                    "meta": { "writ_identity": op.member.as_str() },
                    "ttl": bound,
                    "explicit_max_ttl": bound,
                });
                let created = self.call("POST", "auth/token/create-orphan", Some(request))?.expect(
                    self,
                    200,
                    "create the token",
                )?;
                let (Some(token), Some(accessor)) = (
                    created.pointer("/auth/client_token").and_then(Value::as_str),
                    created.pointer("/auth/accessor").and_then(Value::as_str),
                ) else {
                    return Err(self.unavailable("create the token: the answer has no token/accessor".into()));
                };
                Ok((json!({ "token": token, "accessor": accessor }), accessor.to_owned()))
            }
            Kind::Cert(role) => {
                let common_name = match &self.settings.pki_domain {
                    Some(domain) => format!("{}.{domain}", op.member),
                    None => op.member.to_string(),
                };
                let ttl = op.ttl.map(|ttl| format!("{}s", (ttl.as_millis() / 1000).max(1)));
                let request = json!({ "common_name": common_name, "ttl": ttl });
                let pki = &self.settings.pki_mount;
                let issued = self.call("POST", &format!("{pki}/issue/{role}"), Some(request))?.expect(
                    self,
                    200,
                    "issue the certificate",
                )?;
                let field = |name: &str| issued.pointer(&format!("/data/{name}")).cloned();
                let (Some(serial), Some(certificate), Some(key)) =
                    (field("serial_number"), field("certificate"), field("private_key"))
                else {
                    return Err(self.unavailable(
                        "issue the certificate: the answer has no serial/certificate/key".into(),
                    ));
                };
                let serial = serial.as_str().unwrap_or_default().to_owned();
                let data = json!({
                    "certificate": certificate,
                    "private_key": key,
                    "issuing_ca": field("issuing_ca"),
                    "ca_chain": field("ca_chain"),
                    "serial_number": serial,
                    "expiration": field("expiration"),
                });
                Ok((data, serial))
            }
        }
    }

    /// Issues a credential for `op` and delivers it as a new version of the identity's path,
    /// recording the change, the handle and the version. With `rotate`, the previous credential
    /// is then retired and every earlier version destroyed.
    fn deliver(&self, context: &ApplyContext, op: &TargetOp, rotate: bool) -> Result<()> {
        let kind = Kind::of(&op.entitlement);
        let (identity, entitlement) = (op.member.as_str(), op.entitlement.as_str());
        let previous = self.path_state(identity, entitlement)?;
        let previous_handle = previous.as_ref().and_then(|p| p.get(kind.handle_key())).map(str::to_owned);
        if !rotate && previous.is_some() {
            // Credentials that died are replaced; their path is removed first.
            self.remove(kind, identity, entitlement)?;
        }
        let (data, handle) = self.issue(kind, op, rotate && previous.is_some())?;
        let written = self
            .call("POST", &self.kv_path("data", identity, entitlement), Some(json!({ "data": data })))
            .and_then(|reply| reply.expect(self, 200, "deliver credentials"));
        let written = match written {
            Ok(written) => written,
            Err(error) => {
                // Undelivered credentials must not stay valid (a static role's password is
                // OpenBao's current one and stays).
                if !matches!(kind, Kind::Static(_)) {
                    let _ = self.retire(kind, &handle);
                }
                return Err(error);
            }
        };
        let version = written.pointer("/data/version").and_then(Value::as_u64).unwrap_or(0);
        let mut custom = serde_json::Map::new();
        for (key, value) in [
            ("writ_change", context.change.to_string()),
            ("writ_version", version.to_string()),
            ("requester", context.requester.clone()),
            ("approvers", context.approvers.join(",")),
            ("executor", context.executor.clone()),
            (kind.handle_key(), handle.clone()),
        ] {
            custom.insert(key.to_owned(), Value::String(value));
        }
        if rotate && let Some(old) = previous_handle.as_deref().filter(|old| *old != handle) {
            custom.insert("previous_handle".to_owned(), Value::String(old.to_owned()));
        }
        let recorded = self
            .call(
                "POST",
                &self.kv_path("metadata", identity, entitlement),
                Some(json!({ "custom_metadata": custom })),
            )
            .and_then(|reply| reply.expect(self, 204, "record the change on the path"));
        if let Err(error) = recorded {
            // Without its handle on the path the credential could not be found again to end
            // it: retire it now (the retry issues another). If OpenBao is unreachable this
            // fails too, and the credential ends with its TTL (the grant's duration).
            if !matches!(kind, Kind::Static(_)) {
                let _ = self.retire(kind, &handle);
            }
            return Err(error);
        }
        if rotate {
            if let Some(old) =
                previous_handle.as_deref().filter(|old| *old != handle && !matches!(kind, Kind::Static(_)))
            {
                self.retire(kind, old)?;
            }
            let older: Vec<u64> = (1..version).collect();
            if !older.is_empty() {
                self.call(
                    "POST",
                    &self.kv_path("destroy", identity, entitlement),
                    Some(json!({ "versions": older })),
                )?
                .expect(self, 204, "destroy the earlier versions")?;
            }
        }
        Ok(())
    }

    /// Retires the recorded credential (if it still works) and deletes the path with all its
    /// versions.
    fn remove(&self, kind: Kind<'_>, identity: &str, entitlement: &str) -> Result<()> {
        let state = self.path_state(identity, entitlement)?;
        if let Some(handle) = state.as_ref().and_then(|s| s.get(kind.handle_key()))
            && self.live(kind, identity, entitlement, handle)?
        {
            self.retire(kind, handle)?;
            // The path stays (the identity still holds what it names) until retirement shows.
            if self.live(kind, identity, entitlement, handle)? {
                return Err(self.unavailable(format!(
                    "{entitlement} of {identity}: {handle} is still valid after retirement{}",
                    if matches!(kind, Kind::Cert(_)) {
                        " (revoked on OpenBao but absent from its CRL: is the CRL disabled or waiting for a rebuild?)"
                    } else {
                        ""
                    }
                )));
            }
        }
        let deleted = self.call("DELETE", &self.kv_path("metadata", identity, entitlement), None)?;
        if deleted.status != 204 && deleted.status != 404 {
            return Err(deleted.refused(self, "delete the credentials path"));
        }
        Ok(())
    }

    /// Every identity that has a path under the prefix.
    fn identities(&self) -> Result<Vec<IdentityName>> {
        let path = format!("{}/metadata/{}", self.settings.kv_mount, self.settings.kv_prefix);
        Ok(self
            .list(&path, "list KV paths")?
            .iter()
            .filter_map(|k| k.strip_suffix('/'))
            .filter_map(|k| IdentityName::parse(k).ok())
            .collect())
    }

    /// Current holders of `entitlements`: identities whose path names a live credential and,
    /// for each, who issued the current version; for a policy, also identities a live token
    /// with that policy is attributed to, made outside Writ (`inventory`), so that a revoke is
    /// verified only once those are gone too.
    fn holders(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        let (mut observed, _) = self.holders_with_handles(entitlements)?;
        if observed.members.keys().any(|e| matches!(Kind::of(e), Kind::Policy(_))) {
            let tokens = self.managed_tokens(None).unwrap_or_default();
            for (entitlement, members) in &mut observed.members {
                if let Kind::Policy(policy) = Kind::of(entitlement) {
                    members.extend(inventory::token_members(&tokens, policy));
                }
            }
        }
        Ok(observed)
    }

    /// [`Self::holders`] from Writ's paths only, with the handle each live path names.
    fn holders_with_handles(
        &self,
        entitlements: &[EntitlementName],
    ) -> Result<(Observed, inventory::Handles)> {
        let known: BTreeSet<EntitlementName> = self.entitlements()?.into_iter().collect();
        let identities = self.identities()?;
        let mut handles = inventory::Handles::new();
        let mut observed = Observed::default();
        for entitlement in entitlements.iter().filter(|e| known.contains(*e)) {
            let kind = Kind::of(entitlement);
            let mut holders = BTreeSet::new();
            for identity in &identities {
                let Some(state) = self.path_state(identity.as_str(), entitlement.as_str())? else { continue };
                let Some(handle) = state.get(kind.handle_key()) else { continue };
                if !self.live(kind, identity.as_str(), entitlement.as_str(), handle)? {
                    continue;
                }
                handles.insert(handle.to_owned(), (identity.clone(), entitlement.clone()));
                holders.insert(identity.clone());
                let current = state.get("writ_version") == Some(state.current_version.to_string().as_str());
                let mut unretired = Vec::new();
                if let Some(previous) =
                    state.get("previous_handle").filter(|_| !matches!(kind, Kind::Static(_)))
                    && self.live(kind, identity.as_str(), entitlement.as_str(), previous)?
                {
                    unretired.push(previous.to_owned());
                }
                observed.issued.insert(
                    (entitlement.clone(), identity.clone()),
                    Issued {
                        change: state.get("writ_change").filter(|_| current).map(str::to_owned),
                        previous_retired: state.older_live.is_empty() && unretired.is_empty(),
                        unretired,
                    },
                );
            }
            observed.members.insert(entitlement.clone(), holders);
        }
        Ok((observed, handles))
    }

    /// The names listed under `path` (`?list=true`), empty if there is nothing.
    fn list(&self, path: &str, what: &str) -> Result<Vec<String>> {
        let reply = self.call("GET", &format!("{path}?list=true"), None)?;
        if reply.status == 404 {
            return Ok(Vec::new());
        }
        let body = reply.expect(self, 200, what)?;
        Ok(body
            .pointer("/data/keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default())
    }
}

impl Reply {
    /// The body if the status is `want`, else a refusal naming `what`.
    fn expect(self, connector: &OpenBaoConnector, want: u16, what: &str) -> Result<Value> {
        if self.status == want { Ok(self.body) } else { Err(self.refused(connector, what)) }
    }

    /// OpenBao's own `errors` list, never the rest of the body (which may hold a secret).
    fn refused(&self, connector: &OpenBaoConnector, what: &str) -> ConnectorError {
        let errors: Vec<&str> = self
            .body
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        connector.unavailable(format!("{what}: HTTP {} {}", self.status, errors.join("; ")))
    }
}

impl Connector for OpenBaoConnector {
    fn entitlements(&self) -> Result<Vec<EntitlementName>> {
        let mount = &self.settings.database_mount;
        let mut names = self.list(&format!("{mount}/roles"), "list database roles")?;
        names.extend(
            self.list(&format!("{mount}/static-roles"), "list static roles")?
                .into_iter()
                .map(|r| format!("static/{r}")),
        );
        if !self.settings.policies.is_empty() {
            names.extend(
                self.list("sys/policies/acl", "list policies")?
                    .into_iter()
                    .filter(|p| p != "root" && self.settings.policies.contains(p))
                    .map(|p| format!("policy/{p}")),
            );
        }
        let pki = &self.settings.pki_mount;
        names.extend(
            self.list(&format!("{pki}/roles"), "list PKI roles")?.into_iter().map(|r| format!("pki/{r}")),
        );
        let mut entitlements: Vec<EntitlementName> =
            names.iter().filter_map(|n| EntitlementName::parse(n).ok()).collect();
        entitlements.sort();
        Ok(entitlements)
    }

    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>> {
        let entitlements: Vec<EntitlementName> = ops.iter().map(|op| op.entitlement.clone()).collect();
        plan_against(&self.name, &self.holders(&entitlements)?.members, ops)
    }

    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport> {
        let plan = self.plan(ops)?;
        let mut applied = Vec::with_capacity(ops.len());
        for step in plan {
            let op = &step.op;
            match op.action {
                OpAction::Grant if step.will_change => self.deliver(context, op, false)?,
                OpAction::Grant => {}
                OpAction::Rotate => self.deliver(context, op, true)?,
                // A path whose credential already died is still cleared away.
                OpAction::Revoke => {
                    let kind = Kind::of(&op.entitlement);
                    self.remove(kind, op.member.as_str(), op.entitlement.as_str())?;
                    if let Kind::Policy(policy) = kind {
                        self.revoke_other_tokens(op.member.as_str(), policy)?;
                    }
                }
            }
            let after = step.op.action.leaves_present();
            applied.push(AppliedOp { op: step.op, before: step.present_now, after });
        }
        Ok(ApplyReport { applied, reference: None })
    }

    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        self.holders(entitlements)
    }

    fn holdings(&self) -> Result<writ_connector::Holdings> {
        self.inventory()
    }

    fn stamped(&self, change: &ChangeId, ops: &[TargetOp]) -> Result<Option<String>> {
        let mut found = Vec::new();
        for op in ops {
            let Some(state) = self.path_state(op.member.as_str(), op.entitlement.as_str())? else { continue };
            if state.get("writ_change") == Some(change.as_str()) {
                let path = self.kv_path("data", op.member.as_str(), op.entitlement.as_str());
                found.push(format!("{path} version {}", state.get("writ_version").unwrap_or("?")));
            }
        }
        Ok((!found.is_empty()).then(|| found.join(", ")))
    }
}

/// What Writ reads in certificates and CRLs (PEM as OpenBao returns them).
mod pki {
    use std::time::Duration;

    use x509_cert::Certificate;
    use x509_cert::crl::CertificateList;
    use x509_cert::der::{Decode, DecodePem, pem};

    /// The certificate's end of validity, since the Unix epoch.
    pub fn not_after(pem: &str) -> Result<Duration, String> {
        Ok(validity(pem)?.1)
    }

    /// The certificate's validity (not before, not after), since the Unix epoch.
    pub fn validity(pem: &str) -> Result<(Duration, Duration), String> {
        let certificate =
            Certificate::from_pem(pem.as_bytes()).map_err(|e| format!("not a PEM certificate: {e}"))?;
        let validity = &certificate.tbs_certificate.validity;
        Ok((validity.not_before.to_unix_duration(), validity.not_after.to_unix_duration()))
    }

    /// Whether the CRL lists `serial` (OpenBao's `aa:bb:…` form).
    pub fn crl_lists(pem: &str, serial: &str) -> Result<bool, String> {
        let (label, der) = pem::decode_vec(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
        if label != "X509 CRL" {
            return Err(format!("PEM {label:?} is not a CRL"));
        }
        let crl = CertificateList::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
        let wanted = serial_bytes(serial).ok_or_else(|| format!("{serial:?} is not a serial number"))?;
        Ok(crl
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .any(|revoked| significant(revoked.serial_number.as_bytes()) == significant(&wanted)))
    }

    /// `aa:bb:…` (or plain hex) as bytes.
    pub fn serial_bytes(serial: &str) -> Option<Vec<u8>> {
        let hex: String = serial.chars().filter(|c| *c != ':').collect();
        if hex.is_empty() || !hex.len().is_multiple_of(2) {
            return None;
        }
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
    }

    /// The bytes of an unsigned integer without leading zeros (DER adds one for the sign).
    fn significant(bytes: &[u8]) -> &[u8] {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        bytes.get(start..).unwrap_or_default()
    }
}

fn path_segment_ok(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_only_goes_to_loopback_and_paths_cannot_escape() {
        assert!(loopback_http("http://127.0.0.1:8200"));
        assert!(loopback_http("http://[::1]:8200/"));
        assert!(!loopback_http("http://vault.example.com:8200"));
        assert!(!loopback_http("https://127.0.0.1:8200"));
        assert!(path_segment_ok("database") && path_segment_ok("writ_creds-1"));
        assert!(!path_segment_ok("../sys") && !path_segment_ok("a/b") && !path_segment_ok(""));
    }

    #[test]
    fn a_certificate_domain_must_be_a_dns_name() {
        for (domain, ok) in [("svc.writ.test", true), ("svc_1.test", false), ("a..b", false), ("x/y", false)]
        {
            let settings = OpenBaoSettings {
                addr: "http://127.0.0.1:9".into(),
                database_mount: "database".into(),
                kv_mount: "secret".into(),
                kv_prefix: "writ".into(),
                policies: Vec::new(),
                pki_mount: "pki".into(),
                pki_domain: Some(domain.into()),
                timeout: Duration::from_secs(1),
            };
            // A valid domain gets as far as the (closed) port; an invalid one is refused first.
            let refused = matches!(
                OpenBaoConnector::connect("vault", settings, "t"),
                Err(ConnectorError::Invalid { .. })
            );
            assert_eq!(refused, !ok, "{domain}");
        }
    }

    #[test]
    fn serials_compare_as_numbers_in_openbao_and_der_form() {
        assert_eq!(pki::serial_bytes("32:79:16:fd"), Some(vec![0x32, 0x79, 0x16, 0xfd]));
        assert_eq!(pki::serial_bytes("00ff"), Some(vec![0, 0xff]));
        assert_eq!(pki::serial_bytes("3:27"), None, "odd digits");
        assert_eq!(pki::serial_bytes("zz"), None);
        assert_eq!(pki::serial_bytes(""), None);
        assert!(pki::not_after("not pem").is_err());
        assert!(pki::crl_lists("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "01").is_err());
    }
}
