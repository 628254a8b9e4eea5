//! SCIM 2.0 (RFC 7643 schemas, RFC 7644 protocol) over plain JSON resources.
//!
//! - [`schema`]: the User, Group and enterprise User schemas as one table that drives the
//!   `/Schemas` documents, input normalisation (attribute case, Entra's `"False"` strings),
//!   validation (types, required, mutability) and what a response returns.
//! - [`filter`]: the filter grammar (§3.4.2.2) parsed by recursive descent into an AST,
//!   evaluated against resources and printed back.
//! - [`patch`]: PATCH operations (§3.5.2), applied in order to a copy; any failure fails all.
//! - [`list`]: sorting, pagination and attribute projection for list responses.
//!
//! Pure: no I/O, no clock, no store. Errors are [`ScimError`]s in the RFC's shape.

pub mod filter;
pub mod list;
pub mod patch;
pub mod schema;

use serde_json::{Value, json};

/// The URN of the core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The URN of the core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The URN of the enterprise User extension.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The URN of list responses.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The URN of PATCH requests.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The URN of error responses.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` of a 400 (RFC 7644 §3.12, table 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

/// A SCIM error: the HTTP status, the optional `scimType` and a detail a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    /// A 400 with a `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> ScimError {
        ScimError { status: 400, scim_type: Some(scim_type), detail: detail.into() }
    }

    /// Any status without a `scimType` (404, 412, 501…).
    pub fn status(status: u16, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type: None, detail: detail.into() }
    }

    /// The error body (§3.12): `status` is a string, as the RFC shows it.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(scim_type), Some(map)) = (self.scim_type, body.as_object_mut()) {
            map.insert("scimType".into(), Value::String(scim_type.as_str().into()));
        }
        body
    }
}

pub type Result<T> = std::result::Result<T, ScimError>;

#[cfg(test)]
mod tests;
