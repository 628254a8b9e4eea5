//! API access: tokens bound to identities, roles, and authentication of a presented token.
//!
//! A token reads `writ_<id>_<secret>`. The id is public (listed, logged, revoked by); the
//! secret is 32 random bytes shown once at issue. The store keeps only HMAC-SHA256 of the
//! secret under the deployment's HMAC key, so a copy of the database does not yield usable
//! tokens, and a presented token is checked by recomputing the HMAC and comparing in constant
//! time. Issue, revocation and every role assignment are registry events in the ledger.

use writ_core::access::{Delegation, MAX_DELEGATION_MS, Principal, Role, TokenInfo, token_label};
use writ_core::event::RegistryEvent;
use writ_core::identity::{Actor, IdentityState};
use writ_core::name::IdentityName;
use writ_core::time::{Duration, Timestamp};
use writ_store::StoredToken;

use crate::{Engine, EngineError, Result, registry_event};

/// The prefix every Writ API token carries (so secret scanners can recognise one).
pub const TOKEN_PREFIX: &str = "writ_";

/// How long a token lives unless told otherwise, and at most.
pub const DEFAULT_TOKEN_TTL: &str = "30d";
pub const MAX_TOKEN_TTL_MS: i64 = 366 * 86_400_000;

/// Why a presented credential was not accepted. Messages never repeat the credential.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is not valid (malformed, unknown, or wrong secret)")]
    Invalid,
    #[error("token {id} was revoked")]
    Revoked { id: String },
    #[error("token {id} expired at {at}")]
    Expired { id: String, at: Timestamp },
    #[error("{identity} is {state}: a disabled or offboarded identity cannot sign in")]
    IdentityDisabled { identity: IdentityName, state: IdentityState },
    #[error("the OIDC token was refused: {0}")]
    Oidc(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth.missing_token",
            AuthError::Invalid => "auth.invalid_token",
            AuthError::Revoked { .. } => "auth.token_revoked",
            AuthError::Expired { .. } => "auth.token_expired",
            AuthError::IdentityDisabled { .. } => "auth.identity_disabled",
            AuthError::Oidc(_) => "auth.oidc_refused",
        }
    }
}

/// A token just issued: its record, and the full token text, which exists only here.
pub struct IssuedToken {
    pub info: TokenInfo,
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedToken({}, secret redacted)", self.info.id)
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| EngineError::Random(e.to_string()))?;
    Ok(bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `writ_<id>_<secret>`; the id is 16 lowercase hex digits, the secret 64.
pub fn parse_token(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((id, secret))
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Engine {
    fn token_hash(&self, id: &str, secret: &str) -> Result<String> {
        Ok(self.hmac()?.mac(&format!("writ-api-token/v1\n{id}\n{secret}")))
    }

    /// Issues a token for `identity`, valid for `ttl` (at most a year). The returned text is the
    /// only copy of the secret.
    pub fn issue_token(
        &self,
        actor: Actor,
        identity: &IdentityName,
        label: &str,
        ttl: Duration,
    ) -> Result<IssuedToken> {
        self.acting(&actor)?;
        let identity = self.actor(identity)?;
        let label = token_label(label)?;
        if ttl.as_millis() > MAX_TOKEN_TTL_MS {
            return Err(writ_core::Refusal::InvalidDuration {
                input: ttl.to_string(),
                reason: "tokens live at most 366 days",
            }
            .into());
        }
        let id = hex(&random_bytes::<8>()?);
        let secret = hex(&random_bytes::<32>()?);
        let now = self.clock.now();
        let info = TokenInfo {
            id: id.clone(),
            identity: identity.name,
            label,
            created_at: now,
            expires_at: now.plus(ttl),
        };
        let stored =
            StoredToken { info: info.clone(), hash: self.token_hash(&id, &secret)?, revoked_at: None };
        let event = RegistryEvent::TokenIssued { actor, token: info.clone() };
        self.store.add_token(&stored, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::access", token = %id, identity = %info.identity, "token issued");
        Ok(IssuedToken { info, token: format!("{TOKEN_PREFIX}{id}_{secret}") })
    }

    /// Revokes a token by its public id; it stops working at once on every instance. Returns
    /// the token as it now stands.
    pub fn revoke_token(&self, actor: Actor, id: &str) -> Result<StoredToken> {
        self.acting(&actor)?;
        let token = self
            .store
            .token(id)?
            .ok_or_else(|| EngineError::NotFound { what: "token", name: id.to_owned() })?;
        let event = RegistryEvent::TokenRevoked {
            actor,
            id: id.to_owned(),
            identity: token.info.identity.clone(),
            at: self.clock.now(),
        };
        self.store.revoke_token(id, event.at(), &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::access", token = %id, "token revoked");
        Ok(StoredToken { revoked_at: Some(event.at()), ..token })
    }

    /// Assigns (`present`) or removes a role.
    pub fn set_role(&self, actor: Actor, identity: &IdentityName, role: Role, present: bool) -> Result<()> {
        self.acting(&actor)?;
        let identity = self.identity(identity)?.name;
        let at = self.clock.now();
        let event = if present {
            RegistryEvent::RoleGranted { actor, identity: identity.clone(), role, at }
        } else {
            RegistryEvent::RoleRevoked { actor, identity: identity.clone(), role, at }
        };
        self.store.set_role(&identity, role, present, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::access", %identity, %role, present, "role changed");
        Ok(())
    }

    /// Lets `delegate` act on behalf of `principal` for `ttl` (at most a year): ask for changes
    /// for them and approve in their name. Only the principal or an admin grants it; both must
    /// be active people or NHIs able to act. Granting again moves the end.
    pub fn grant_delegation(
        &self,
        actor: Actor,
        principal: &IdentityName,
        delegate: &IdentityName,
        ttl: Duration,
    ) -> Result<Delegation> {
        self.acting(&actor)?;
        self.may_administer_delegation(&actor, principal, None, "grant")?;
        let principal = self.actor(principal)?.name;
        let delegate = self.actor(delegate)?.name;
        if principal == delegate {
            return Err(writ_core::Refusal::DelegationRefused {
                actor: actor.to_string(),
                principal,
                action: "grant",
                reason: "a delegation is to someone else; everyone acts for themselves already",
            }
            .into());
        }
        if ttl.as_millis() > MAX_DELEGATION_MS {
            return Err(writ_core::Refusal::InvalidDuration {
                input: ttl.to_string(),
                reason: "a delegation lasts at most 366 days",
            }
            .into());
        }
        let now = self.clock.now();
        let delegation = Delegation { principal, delegate, until: now.plus(ttl), created_at: now };
        let event = RegistryEvent::DelegationGranted { actor, delegation: delegation.clone() };
        self.store.set_delegation(&delegation, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::access", principal = %delegation.principal, delegate = %delegation.delegate, until = %delegation.until, "delegation granted");
        Ok(delegation)
    }

    /// Ends a delegation before its end: its principal, its delegate or an admin. Returns it
    /// as it was.
    pub fn revoke_delegation(
        &self,
        actor: Actor,
        principal: &IdentityName,
        delegate: &IdentityName,
    ) -> Result<Delegation> {
        self.acting(&actor)?;
        self.may_administer_delegation(&actor, principal, Some(delegate), "revoke")?;
        let Some(delegation) = self.store.delegation(principal, delegate)? else {
            return Err(EngineError::NotFound {
                what: "delegation",
                name: format!("{principal} → {delegate}"),
            });
        };
        let event = RegistryEvent::DelegationRevoked {
            actor,
            principal: principal.clone(),
            delegate: delegate.clone(),
            at: self.clock.now(),
        };
        self.store.revoke_delegation(principal, delegate, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::access", %principal, %delegate, "delegation revoked");
        Ok(delegation)
    }

    /// Delegations in force or past, ordered by principal then delegate.
    pub fn delegations(&self) -> Result<Vec<Delegation>> {
        Ok(self.store.delegations()?)
    }

    /// Refuses unless `actor` may act on behalf of `principal` now: a delegation from the
    /// principal to the actor is in force. (A hook's account mapping is the other way, and
    /// intake checks it itself.)
    pub(crate) fn check_delegation(&self, actor: &IdentityName, principal: &IdentityName) -> Result<()> {
        let in_force = self.store.delegation(principal, actor)?.is_some_and(|d| d.until > self.clock.now());
        if in_force {
            return Ok(());
        }
        Err(writ_core::Refusal::NoDelegation { actor: actor.clone(), principal: principal.clone() }.into())
    }

    /// Who may grant (the principal, an admin) or revoke (also the delegate) a delegation.
    fn may_administer_delegation(
        &self,
        actor: &Actor,
        principal: &IdentityName,
        delegate: Option<&IdentityName>,
        action: &'static str,
    ) -> Result<()> {
        let name = match actor {
            Actor::System(writ_core::identity::SystemActor::Admin) => return Ok(()),
            Actor::System(_) => None,
            Actor::Identity(name) => Some(name),
        };
        let own = name.is_some_and(|n| n == principal || Some(n) == delegate);
        let admin = match name {
            Some(n) => self.store.roles_of(n)?.contains(&writ_core::access::Role::Admin),
            None => false,
        };
        if own || admin {
            return Ok(());
        }
        Err(writ_core::Refusal::DelegationRefused {
            actor: actor.to_string(),
            principal: principal.clone(),
            action,
            reason: if delegate.is_some() {
                "only its principal, its delegate or an admin may"
            } else {
                "only the person who delegates, or an admin, may"
            },
        }
        .into())
    }

    /// The principal a presented token stands for, or why it is refused. Checks the secret
    /// before saying anything about the token's state, so only its holder learns it was revoked.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, AccessError> {
        let (id, secret) = parse_token(presented).ok_or(AuthError::Invalid)?;
        let (stored, identity, roles) = self.store.token_principal(id)?.ok_or(AuthError::Invalid)?;
        if !constant_time_eq(&self.token_hash(id, secret)?, &stored.hash) {
            return Err(AuthError::Invalid.into());
        }
        self.token_standing_of(id, stored, identity, roles)
    }

    /// The principal a token stands for while it is in force, by its id alone: for a session
    /// opened with the token, whose secret was checked once (`authenticate`) and not kept. Refused
    /// as `authenticate` refuses a revoked or expired token, or one whose identity left `active`.
    pub fn token_standing(&self, id: &str) -> Result<Principal, AccessError> {
        let (stored, identity, roles) = self.store.token_principal(id)?.ok_or(AuthError::Invalid)?;
        self.token_standing_of(id, stored, identity, roles)
    }

    fn token_standing_of(
        &self,
        id: &str,
        stored: StoredToken,
        identity: writ_core::identity::Identity,
        roles: Vec<Role>,
    ) -> Result<Principal, AccessError> {
        // Before the token's own state: leaving `active` also revoked it, and the holder should
        // learn why.
        if identity.state != IdentityState::Active {
            return Err(AuthError::IdentityDisabled { identity: identity.name, state: identity.state }.into());
        }
        if stored.revoked_at.is_some() {
            return Err(AuthError::Revoked { id: id.to_owned() }.into());
        }
        if stored.info.expires_at <= self.clock.now() {
            return Err(AuthError::Expired { id: id.to_owned(), at: stored.info.expires_at }.into());
        }
        Ok(Principal { identity, roles })
    }

    /// The principal for an identity established some other way (OIDC subject).
    pub fn principal(&self, identity: &IdentityName) -> Result<Principal, AccessError> {
        let identity = self.identity(identity).map_err(|e| match e {
            EngineError::NotFound { .. } => AccessError::Auth(AuthError::Invalid),
            other => AccessError::Engine(other),
        })?;
        if identity.state != IdentityState::Active {
            return Err(AuthError::IdentityDisabled { identity: identity.name, state: identity.state }.into());
        }
        let roles = self.store.roles_of(&identity.name).map_err(EngineError::from)?;
        Ok(Principal { identity, roles })
    }
}

/// Authentication failed, or the engine could not check.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<writ_store::StoreError> for AccessError {
    fn from(error: writ_store::StoreError) -> AccessError {
        AccessError::Engine(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_is_parsed_strictly() {
        let id = "0123456789abcdef";
        let secret = "a".repeat(64);
        assert_eq!(parse_token(&format!("writ_{id}_{secret}")), Some((id, secret.as_str())));
        for bad in [
            format!("writ_{id}_{}", "a".repeat(63)),
            format!("writ_{id}_{}A", "a".repeat(63)),
            format!("writ_{}_{secret}", "0".repeat(15)),
            format!("wrot_{id}_{secret}"),
            format!("writ_{id}{secret}"),
            String::new(),
        ] {
            assert_eq!(parse_token(&bad), None, "{bad}");
        }
    }

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
