//! The HTTP side of errors: every error becomes `writ_api::Error` (a stable code and a message),
//! and its status comes from the one table of error kinds (`writ_api::error::CODES`), the same
//! table the CLI takes its exit codes from. Bodies are `{"error": {"code", "message", "field"?}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An API error: the error as every surface reports it, and the status it is answered with.
/// Never carries a credential or a sealed value.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: writ_api::Error,
    /// Seconds to wait before asking again (`Retry-After`), for a rate-limited request.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a stable code; its status is the code's row in the table.
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::from(writ_api::Error::new(code, message))
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.error.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::from(writ_api::Error::internal(message))
    }
}

impl From<writ_api::Error> for ApiError {
    fn from(error: writ_api::Error) -> ApiError {
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, error, retry_after: None }
    }
}

/// Every error the engine and its parts raise reaches HTTP through `writ_api::Error`.
macro_rules! through_the_table {
    ($($source:ty),* $(,)?) => {$(
        impl From<$source> for ApiError {
            fn from(error: $source) -> ApiError {
                ApiError::from(writ_api::Error::from(error))
            }
        }
    )*};
}

through_the_table!(
    writ_engine::EngineError,
    writ_core::Refusal,
    writ_store::StoreError,
    writ_engine::access::AuthError,
    writ_engine::access::AccessError,
    writ_core::access::Forbidden,
    writ_intake::IntakeError,
);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.error.code, "message": self.error.message });
        if let (Some(field), Some(object)) = (&self.error.field, error.as_object_mut()) {
            object.insert("field".into(), serde_json::Value::String(field.clone()));
        }
        let mut response = (self.status, axum::Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"writ\""));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
