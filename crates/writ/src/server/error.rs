//! Every error the HTTP API returns, in one place: a stable code, the HTTP status it maps to,
//! and a message a person can act on. Bodies are `{"error": {"code", "message", "field"?}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use writ_core::access::Forbidden;
use writ_engine::EngineError;
use writ_engine::access::{AccessError, AuthError};

/// An API error. Never carries a credential or a sealed value.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// The status for each code family; `docs/api.md` lists them.
fn status_of_refusal(code: &str) -> StatusCode {
    match code.split('.').next().unwrap_or_default() {
        "input" => StatusCode::BAD_REQUEST,
        "sod" => StatusCode::FORBIDDEN,
        "identity" => StatusCode::UNPROCESSABLE_ENTITY,
        "approval" | "state" => StatusCode::CONFLICT,
        // Reviewing before the post-hoc approvals is a matter of order, like a state conflict;
        // a break-glass request outside its scope is an unprocessable request.
        "breakglass" if code == "breakglass.approval_missing" => StatusCode::CONFLICT,
        "breakglass" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        use writ_connector::ConnectorError as C;
        let status = match &error {
            EngineError::Refused(refusal) => status_of_refusal(refusal.code()),
            EngineError::NotFound { .. } | EngineError::Connector(C::UnknownEntitlement { .. }) => {
                StatusCode::NOT_FOUND
            }
            EngineError::Store(writ_store::StoreError::Conflict(_)) => StatusCode::CONFLICT,
            EngineError::Store(writ_store::StoreError::Unavailable(_)) | EngineError::NoHmacKey => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            EngineError::Connector(C::Invalid { .. }) | EngineError::Policy(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            EngineError::Denied(denial)
                if denial.code.starts_with("approval.")
                    || denial.code == "finding.not_open"
                    || denial.code == "exception.duplicate" =>
            {
                StatusCode::CONFLICT
            }
            EngineError::Denied(denial) if denial.code == "exception.owner_not_human" => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            EngineError::Denied(_) => StatusCode::FORBIDDEN,
            EngineError::Intake { .. } => StatusCode::CONFLICT,
            EngineError::Scim(error) => {
                StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            EngineError::Connector(_) => StatusCode::BAD_GATEWAY,
            EngineError::Store(_) | EngineError::Ledger(_) | EngineError::Random(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

impl From<writ_core::Refusal> for ApiError {
    fn from(refusal: writ_core::Refusal) -> ApiError {
        ApiError::from(EngineError::from(refusal))
    }
}

impl From<writ_store::StoreError> for ApiError {
    fn from(error: writ_store::StoreError) -> ApiError {
        ApiError::from(EngineError::from(error))
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> ApiError {
        match error {
            AccessError::Auth(auth) => auth.into(),
            AccessError::Engine(engine) => engine.into(),
        }
    }
}

impl From<Forbidden> for ApiError {
    fn from(error: Forbidden) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, error.code(), error.to_string())
    }
}

impl From<crate::CliError> for ApiError {
    fn from(error: crate::CliError) -> ApiError {
        let status = match error.exit {
            crate::exit::INPUT => StatusCode::BAD_REQUEST,
            crate::exit::REFUSED => StatusCode::FORBIDDEN,
            crate::exit::NOT_FOUND => StatusCode::NOT_FOUND,
            crate::exit::STORE => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // Every code a local command raises is a literal; a received one never reaches here.
        let code = match error.code {
            std::borrow::Cow::Borrowed(code) => code,
            std::borrow::Cow::Owned(_) => "internal",
        };
        ApiError::new(status, code, error.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let (Some(field), Some(object)) = (&self.field, error.as_object_mut()) {
            object.insert("field".into(), serde_json::Value::String(field.clone()));
        }
        let mut response = (self.status, axum::Json(serde_json::json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"writ\""));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
