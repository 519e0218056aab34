//! The node's errors, and how they look on its HTTP API.
//!
//! HTTP errors have the clearinghouse's shape (`{"error": code, "message": text}`,
//! [`ApiError`]), so a terminal reads both the same way. Errors the clearinghouse returned to
//! a relayed request are passed through with their status; storage errors become an opaque 500
//! (the log has the detail, the client never sees SQL).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clearinghouse_api::ClientError;
use clearinghouse_api::model::ApiError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Store(#[from] numport_db::StoreError),
    /// The SMS center's SQLite writer (`store::sms_sqlite`).
    #[error("database (SMS writer): {0}")]
    SmsWriter(#[from] rusqlite::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Clearinghouse(#[from] ClientError),
    #[error("subscriber import, line {line}: {message}")]
    Import { line: u64, message: String },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("portability replica: {0}")]
    Replica(#[from] replica::ReplicaError),
    #[error("TLS: {0}")]
    Tls(#[from] numport_tls::TlsError),
}

/// An error answer of the node's HTTP API.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub status: StatusCode,
    pub body: ApiError,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> HttpError {
        HttpError { status, body: ApiError { error: code.to_owned(), message: message.into() } }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &str, message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::UNAUTHORIZED, code, message)
    }
}

impl From<OperatorError> for HttpError {
    fn from(e: OperatorError) -> HttpError {
        match e {
            OperatorError::Clearinghouse(ClientError::Api { status, error }) => HttpError {
                status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                body: error,
            },
            OperatorError::Clearinghouse(ClientError::Transport(e)) => {
                tracing::warn!(error = %e, "clearinghouse unreachable");
                HttpError::new(
                    StatusCode::BAD_GATEWAY,
                    "clearinghouse_unreachable",
                    "the clearinghouse could not be reached; try again later",
                )
            }
            other => {
                tracing::error!(error = %other, "request failed");
                HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
