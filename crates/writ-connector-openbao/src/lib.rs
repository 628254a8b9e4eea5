//! The OpenBao connector, database secrets engine: an entitlement is a role of the target's
//! database mount (`LIST <mount>/roles`); granting it to an identity issues dynamic credentials
//! (`GET <mount>/creds/<role>`, a new login on the database with its own lease) and delivers them
//! to the identity's KV v2 path `<kv>/data/<prefix>/<identity>/<role>`, where the workload reads
//! them with its own token. The path's `custom_metadata` carries the Writ change ID, the lease
//! ID and who executed it. Revoking revokes the lease (OpenBao drops the login on the database)
//! and deletes the KV path with all its versions. A member is an identity whose KV path names a
//! lease OpenBao still reports live (`sys/leases/lookup`) — observed on OpenBao, never in Writ.
//!
//! A time-bound grant renews the new lease to the grant's duration (OpenBao caps it at the
//! role's `max_ttl`), so the database refuses the login at the end even if Writ's own expiry
//! change were late.
//!
//! **Secrets never reach Writ's records:** the password passes through memory from OpenBao's
//! answer to the KV write; reports, evidence and errors carry only lease IDs, versions and the
//! path. OpenBao's answers are never quoted in errors, only its `errors` list on a refusal.
//!
//! Target settings: `addr` (`http://127.0.0.1:8200`), `token_file` (Writ's OpenBao token, read
//! when connecting), optionally `database_mount` (`database`), `kv_mount` (`secret`) and
//! `kv_prefix` (`writ`). This build has no TLS: the token is only sent to a loopback address.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use writ_connector::{
    AppliedOp, ApplyContext, ApplyReport, Connector, ConnectorError, Observed, PlanStep, Result, TargetOp,
    plan_against,
};
use writ_core::change::OpAction;
use writ_core::name::{EntitlementName, IdentityName};

/// Where and how to reach one OpenBao.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenBaoSettings {
    pub addr: String,
    pub database_mount: String,
    pub kv_mount: String,
    pub kv_prefix: String,
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
        ] {
            if !path_segment_ok(value) {
                return Err(invalid(format!("{key} must be a plain path segment, not {value:?}")));
            }
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
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

    /// The lease named on `identity`'s path for `role`, if the path exists.
    fn recorded_lease(&self, identity: &str, role: &str) -> Result<Option<String>> {
        let reply = self.call("GET", &self.kv_path("metadata", identity, role), None)?;
        if reply.status == 404 {
            return Ok(None);
        }
        let body = reply.expect(self, 200, "read KV metadata")?;
        Ok(body
            .pointer("/data/custom_metadata/lease_id")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .map(str::to_owned))
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

    /// Whether `identity` holds live credentials for `role`.
    fn holds(&self, identity: &str, role: &str) -> Result<bool> {
        match self.recorded_lease(identity, role)? {
            Some(lease) => self.lease_live(&lease),
            None => Ok(false),
        }
    }

    /// Every identity that has a path under the prefix.
    fn identities(&self) -> Result<Vec<IdentityName>> {
        let path = format!("{}/metadata/{}?list=true", self.settings.kv_mount, self.settings.kv_prefix);
        let reply = self.call("GET", &path, None)?;
        if reply.status == 404 {
            return Ok(Vec::new());
        }
        let body = reply.expect(self, 200, "list KV paths")?;
        Ok(body
            .pointer("/data/keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|k| k.strip_suffix('/'))
                    .filter_map(|k| IdentityName::parse(k).ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Current members of `roles`: identities with a live lease recorded on their path.
    fn members(
        &self,
        roles: &[EntitlementName],
    ) -> Result<BTreeMap<EntitlementName, BTreeSet<IdentityName>>> {
        let known: BTreeSet<EntitlementName> = self.entitlements()?.into_iter().collect();
        let identities = self.identities()?;
        let mut members = BTreeMap::new();
        for role in roles.iter().filter(|r| known.contains(*r)) {
            let mut holders = BTreeSet::new();
            for identity in &identities {
                if self.holds(identity.as_str(), role.as_str())? {
                    holders.insert(identity.clone());
                }
            }
            members.insert(role.clone(), holders);
        }
        Ok(members)
    }

    fn grant(&self, context: &ApplyContext, op: &TargetOp) -> Result<()> {
        let (identity, role) = (op.member.as_str(), op.entitlement.as_str());
        // Credentials for a lease that died are replaced; their path is removed first.
        self.revoke_path(identity, role)?;
        let issued = self
            .call("GET", &format!("{}/creds/{role}", self.settings.database_mount), None)?
            .expect(self, 200, "issue credentials")?;
        let lease = issued.get("lease_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let (Some(username), Some(password)) = (
            issued.pointer("/data/username").and_then(Value::as_str),
            issued.pointer("/data/password").and_then(Value::as_str),
        ) else {
            return Err(self.unavailable("issue credentials: the answer has no username/password".into()));
        };
        if lease.is_empty() {
            return Err(self.unavailable("issue credentials: the answer has no lease".into()));
        }
        if let Some(ttl) = op.ttl {
            let seconds = (ttl.as_millis() / 1000).max(1);
            self.call("POST", "sys/leases/renew", Some(json!({ "lease_id": lease, "increment": seconds })))?
                .expect(self, 200, "set the lease to the grant's duration")?;
        }
        let delivered = self.call(
            "POST",
            &self.kv_path("data", identity, role),
            Some(json!({ "data": { "username": username, "password": password, "lease_id": lease } })),
        )?;
        if let Err(error) = delivered.expect(self, 200, "deliver credentials") {
            // Undelivered credentials must not stay valid.
            let _ = self.call("POST", "sys/leases/revoke", Some(json!({ "lease_id": lease })));
            return Err(error);
        }
        let metadata = json!({
            "custom_metadata": {
                "writ_change": context.change.as_str(),
                "lease_id": lease,
                "requester": context.requester,
                "approvers": context.approvers.join(","),
                "executor": context.executor,
            }
        });
        self.call("POST", &self.kv_path("metadata", identity, role), Some(metadata))?.expect(
            self,
            204,
            "record the change on the path",
        )?;
        Ok(())
    }

    /// Revokes the recorded lease (if any) and deletes the path with all its versions.
    fn revoke_path(&self, identity: &str, role: &str) -> Result<()> {
        if let Some(lease) = self.recorded_lease(identity, role)? {
            self.call("POST", "sys/leases/revoke", Some(json!({ "lease_id": lease })))?.expect(
                self,
                204,
                "revoke the lease",
            )?;
            if self.lease_live(&lease)? {
                return Err(self.unavailable(format!("lease {lease} is still live after revocation")));
            }
        }
        let deleted = self.call("DELETE", &self.kv_path("metadata", identity, role), None)?;
        if deleted.status != 204 && deleted.status != 404 {
            return Err(deleted.refused(self, "delete the credentials path"));
        }
        Ok(())
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
        let reply = self.call("GET", &format!("{}/roles?list=true", self.settings.database_mount), None)?;
        if reply.status == 404 {
            return Ok(Vec::new());
        }
        let body = reply.expect(self, 200, "list database roles")?;
        let mut roles: Vec<EntitlementName> = body
            .pointer("/data/keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter().filter_map(Value::as_str).filter_map(|k| EntitlementName::parse(k).ok()).collect()
            })
            .unwrap_or_default();
        roles.sort();
        Ok(roles)
    }

    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>> {
        let roles: Vec<EntitlementName> = ops.iter().map(|op| op.entitlement.clone()).collect();
        plan_against(&self.name, &self.members(&roles)?, ops)
    }

    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport> {
        let plan = self.plan(ops)?;
        let mut applied = Vec::with_capacity(ops.len());
        for step in plan {
            if step.will_change {
                match step.op.action {
                    OpAction::Grant => self.grant(context, &step.op)?,
                    OpAction::Revoke => {
                        self.revoke_path(step.op.member.as_str(), step.op.entitlement.as_str())?
                    }
                }
            }
            let after = step.op.action == OpAction::Grant;
            applied.push(AppliedOp { op: step.op, before: step.present_now, after });
        }
        Ok(ApplyReport { applied, reference: None })
    }

    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        Ok(Observed { members: self.members(entitlements)?, reference: None })
    }
}

fn path_segment_ok(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// True for `http://` to a loopback address.
fn loopback_http(addr: &str) -> bool {
    addr.strip_prefix("http://")
        .is_some_and(|rest| writ_connector::loopback_authority(rest.split('/').next().unwrap_or_default()))
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
}
