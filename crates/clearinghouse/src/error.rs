//! API errors: one enum, mapped to an HTTP status and a stable code in one place. Storage
//! errors become an opaque 500; their text goes to the log, never to the caller.

use crate::store::ledger::PostError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clearinghouse_api::model::ApiError;
use numport_db::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many requests from this operator; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("storage: {0}")]
    Store(StoreError),
}

impl From<StoreError> for Error {
    /// A compare-and-set that lost is the caller's conflict, wherever it surfaced (on
    /// PostgreSQL it is pipelined, and read with a later statement or the COMMIT).
    fn from(e: StoreError) -> Self {
        if e.is_state_changed() {
            return Error::conflict("invalid_state", "the order changed meanwhile; read it again");
        }
        Error::Store(e)
    }
}

impl From<PostError> for Error {
    fn from(e: PostError) -> Self {
        match e {
            PostError::InsufficientFunds { .. } => Error::Conflict {
                code: "insufficient_funds",
                message: "settlement account cannot cover the amount".into(),
            },
            PostError::Store(s) => s.into(),
        }
    }
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Error {
        Error::Conflict { code, message: message.into() }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Error {
        Error::BadRequest { code, message: message.into() }
    }

    /// A conflict with a concurrent transaction (a unique key taken meanwhile, a deadlock or
    /// serialization victim): running the operation again gives the real answer.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store(StoreError::Duplicate(_)) => true,
            Error::Store(e) => matches!(e.sql_state(), Some("40P01") | Some("40001")),
            _ => false,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. } | Error::Invalid { code, .. } | Error::Conflict { code, .. } => code,
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::TooLarge(_) => "body_too_large",
            Error::RateLimited { .. } => "rate_limited",
            Error::Store(_) => "internal",
        }
    }

    pub fn body(&self) -> ApiError {
        let message = match self {
            Error::Store(_) => "internal error; the request had no effect".to_owned(),
            other => other.to_string(),
        };
        ApiError { error: self.code().to_owned(), message }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Store(e) = &self {
            tracing::error!(error = %e, "storage error");
        }
        let mut resp = (self.status(), Json(self.body())).into_response();
        match self {
            Error::Unauthorized => {
                resp.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
            }
            Error::RateLimited { retry_after_s } => {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after_s.into());
            }
            _ => {}
        }
        resp
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
