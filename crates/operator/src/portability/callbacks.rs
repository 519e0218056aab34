//! `POST /v1/clearinghouse/callbacks`: where the clearinghouse delivers messages.
//!
//! The signature covers the raw body bytes, so the body is verified before it is parsed.
//! Refusals: 401 for a missing, malformed, wrong or stale signature (and when the node has no
//! callback secret); 400 for a body that is not an envelope. A message id seen before is
//! answered 200 `{"duplicate": true}` and changes nothing. A new message is recorded, answered
//! 200 at once, and processed in the background.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use clearinghouse_api::Envelope;
use numport_core::Millis;
use numport_core::signing::{MESSAGE_ID_HEADER, SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER, verify};
use serde_json::{Value, json};

use crate::Node;
use crate::error::HttpError;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Node {
    fn reject(&self, status_reason: &str, message: impl Into<String>) -> HttpError {
        self.inner.metrics.callback_rejected(status_reason);
        let message = message.into();
        tracing::warn!(node = %self.name(), reason = status_reason, %message, "callback refused");
        HttpError::unauthorized(status_reason, message)
    }

    /// Check the signature headers against the raw body.
    fn verify_callback(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), HttpError> {
        let Some(secret) = self.inner.callback_secret.as_deref() else {
            return Err(self.reject("no_secret", "this node has no callback secret configured"));
        };
        let (Some(ts), Some(sig)) = (header(headers, TIMESTAMP_HEADER), header(headers, SIGNATURE_HEADER)) else {
            return Err(self.reject("missing_signature", "signature or timestamp header missing"));
        };
        let ts: Millis =
            ts.trim().parse().map_err(|_| self.reject("malformed_signature", "timestamp is not Unix milliseconds"))?;
        let tolerance = self.inner.config.signature_tolerance_ms;
        verify(secret, ts, body, sig.trim(), self.now(), tolerance).map_err(|e| {
            let reason = match e {
                SignatureError::Malformed => "malformed_signature",
                SignatureError::Mismatch => "bad_signature",
                SignatureError::Stale { .. } => "stale",
            };
            self.reject(reason, e.to_string())
        })
    }
}

pub(crate) async fn receive(
    State(node): State<Node>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, HttpError> {
    node.verify_callback(&headers, &body)?;
    let malformed = |message: String| {
        node.inner.metrics.callback_rejected("malformed");
        tracing::warn!(node = %node.name(), %message, "callback body refused");
        HttpError::bad_request("malformed", message)
    };
    let text = std::str::from_utf8(&body).map_err(|_| malformed("body is not UTF-8".into()))?;
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| malformed(format!("body is not a message envelope: {e}")))?;
    if let Some(h) = header(&headers, MESSAGE_ID_HEADER)
        && h.trim() != envelope.id.to_string()
    {
        tracing::debug!(header = h, id = envelope.id, "message id header differs from the envelope's");
    }
    node.inner.metrics.callbacks_received.inc();

    let now = node.now();
    let retry_at = now.saturating_add(node.inner.config.reprocess_after_ms);
    let new = node.inner.store.record_message(envelope.id, envelope.message.kind(), text, now, retry_at).await?;
    if !new {
        node.inner.metrics.callbacks_duplicate.inc();
        tracing::debug!(node = %node.name(), id = envelope.id, "duplicate callback");
        return Ok(Json(json!({ "duplicate": true })));
    }
    let id = envelope.id;
    node.spawn_processing(envelope);
    Ok(Json(json!({ "received": true, "id": id })))
}
