//! Who may do what through the API: roles assigned to identities, the role each action needs,
//! and the vendor scope. Pure rules; authentication (tokens, OIDC) lives in the engine and the
//! server, which hand an authenticated [`Principal`] to these functions.
//!
//! Roles say who may *attempt* an action; the change machine's separation-of-duties rules then
//! decide whether this person may take it on this change. Both use the authenticated identity.

use crate::Refusal;
use crate::identity::Identity;
use crate::name::OrgName;

/// A role assigned to an identity. Roles add up; none implies another (an admin is not an
/// approver unless also given that role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Opens changes and cancels their own.
    Requester,
    /// Approves or rejects changes.
    Approver,
    /// Implements approved changes on targets and verifies them (usually the executor engine).
    Executor,
    /// Reviews implemented changes.
    Reviewer,
    /// Registers identities and targets, issues tokens, assigns roles, signs checkpoints.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
    /// An identity provider's SCIM client: pushes Users and Groups, whose lifecycle events open
    /// changes (it cannot approve or execute them).
    Provisioner,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Requester,
        Role::Approver,
        Role::Executor,
        Role::Reviewer,
        Role::Admin,
        Role::Auditor,
        Role::Provisioner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Executor => "executor",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Provisioner => "provisioner",
        }
    }

    pub fn parse(input: &str) -> Result<Role, Refusal> {
        Role::ALL.into_iter().find(|r| r.as_str() == input).ok_or_else(|| Refusal::InvalidValue {
            field: "role",
            input: input.to_owned(),
            expected: "requester, approver, executor, reviewer, admin, auditor or provisioner",
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller asks to do; each action needs one of a fixed set of roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read changes, identities, targets, grants, evidence of changes in scope.
    Read,
    /// Read the whole ledger, proofs and audit bundles.
    ReadLedger,
    Request,
    Cancel,
    Approve,
    Reject,
    Execute,
    Verify,
    Review,
    AttachEvidence,
    /// Comment on a change (whose change it is decides the rest).
    Comment,
    /// Ask for a change to be rolled back (its rollback owner, requester or an admin).
    Rollback,
    /// Place or lift a legal hold on a change.
    Hold,
    /// Register identities and targets, issue and revoke tokens, assign roles.
    Administer,
    /// Sign a checkpoint or run due work by hand.
    Operate,
    /// Push Users and Groups over SCIM.
    Provision,
}

impl Action {
    /// The roles any one of which allows this action.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::Read => &[Requester, Approver, Executor, Reviewer, Admin, Auditor],
            Action::ReadLedger => &[Auditor, Admin],
            Action::Request => &[Requester],
            // Whose change it is decides the rest (`crate::authority::may_cancel`).
            Action::Cancel => &[Requester, Admin],
            Action::Approve | Action::Reject => &[Approver],
            Action::Execute | Action::Verify => &[Executor],
            Action::Review => &[Reviewer],
            // The step and the actor's relationship decide the rest (`crate::authority`).
            Action::AttachEvidence | Action::Comment => {
                &[Requester, Approver, Executor, Reviewer, Auditor, Admin]
            }
            Action::Rollback => &[Requester, Approver, Executor, Reviewer, Admin],
            Action::Hold => &[Admin, Auditor],
            Action::Administer | Action::Operate => &[Admin],
            Action::Provision => &[Provisioner],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::ReadLedger => "read the ledger",
            Action::Request => "request changes",
            Action::Cancel => "cancel changes",
            Action::Approve => "approve changes",
            Action::Reject => "reject changes",
            Action::Execute => "execute changes",
            Action::Verify => "verify changes",
            Action::Review => "review changes",
            Action::AttachEvidence => "attach evidence",
            Action::Comment => "comment on changes",
            Action::Rollback => "roll back changes",
            Action::Hold => "place legal holds",
            Action::Administer => "administer Writ",
            Action::Operate => "operate the ledger",
            Action::Provision => "provision identities over SCIM",
        }
    }
}

/// An authenticated caller: the identity a token or OIDC subject is bound to, and its roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub identity: Identity,
    pub roles: Vec<Role>,
}

/// Why an authenticated caller may not do something, before any change rule is consulted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("{identity} needs one of the roles {needed} to {action}")]
    RoleRequired { identity: String, action: &'static str, needed: String },
    #[error("{identity} acts for vendor {org} and may only {action} within that organisation")]
    VendorScope { identity: String, org: String, action: &'static str },
}

impl Forbidden {
    pub fn code(&self) -> &'static str {
        match self {
            Forbidden::RoleRequired { .. } => "auth.role_required",
            Forbidden::VendorScope { .. } => "auth.vendor_scope",
        }
    }
}

impl Principal {
    /// Allows `action` if the principal holds one of the roles it needs.
    pub fn may(&self, action: Action) -> Result<(), Forbidden> {
        if action.roles().iter().any(|r| self.roles.contains(r)) {
            return Ok(());
        }
        let needed: Vec<&str> = action.roles().iter().map(|r| r.as_str()).collect();
        Err(Forbidden::RoleRequired {
            identity: self.identity.name.to_string(),
            action: action.as_str(),
            needed: needed.join(", "),
        })
    }

    /// A vendor's principal may only touch what belongs to its own organisation: `orgs` are the
    /// organisations of everyone a change involves (requester, principal, subjects). Internal
    /// principals are not scoped.
    pub fn within_scope<'a>(
        &self,
        action: Action,
        mut orgs: impl Iterator<Item = Option<&'a OrgName>>,
    ) -> Result<(), Forbidden> {
        let Some(own) = &self.identity.vendor else {
            return Ok(());
        };
        if orgs.all(|org| org == Some(own)) {
            return Ok(());
        }
        Err(Forbidden::VendorScope {
            identity: self.identity.name.to_string(),
            org: own.to_string(),
            action: action.as_str(),
        })
    }
}

/// An API token as recorded (never the secret, nor its hash: those stay with the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Public identifier, part of the token text, safe to log.
    pub id: String,
    pub identity: crate::name::IdentityName,
    /// What the token is for, as its creator described it.
    pub label: String,
    pub created_at: crate::time::Timestamp,
    pub expires_at: crate::time::Timestamp,
}

/// A standing permission for `delegate` to act on behalf of `principal` (ask for changes for
/// them, approve in their name) until `until`. Granted by the principal or an admin, recorded,
/// and the only way (besides a hook's account mapping) a request or approval names someone
/// other than its actor as the person it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    pub principal: crate::name::IdentityName,
    pub delegate: crate::name::IdentityName,
    pub until: crate::time::Timestamp,
    pub created_at: crate::time::Timestamp,
}

/// The longest a delegation lasts: a year.
pub const MAX_DELEGATION_MS: i64 = 366 * 86_400_000;

/// The longest label a token may carry.
pub const MAX_TOKEN_LABEL: usize = 100;

/// Validates a token label: 1 to [`MAX_TOKEN_LABEL`] characters, none of them a control character.
pub fn token_label(input: &str) -> Result<String, Refusal> {
    if input.is_empty() || input.chars().count() > MAX_TOKEN_LABEL || input.chars().any(char::is_control) {
        return Err(Refusal::InvalidText { field: "token label", max: MAX_TOKEN_LABEL });
    }
    Ok(input.to_owned())
}
