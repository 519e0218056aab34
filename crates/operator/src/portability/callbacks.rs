//! `POST /v1/clearinghouse/callbacks`: where the clearinghouse delivers messages.
//!
//! The signature covers the raw body bytes, so the body is verified before it is parsed.
//! Refusals: 401 for a missing, malformed, wrong or stale signature (and when the node has no
//! callback secret); 400 for a body that is not an envelope or a non-empty array of them. A
//! message id seen before changes nothing (a single one is answered 200 `{"duplicate": true}`).
//! New messages are recorded, all of one callback in one transaction, answered 200 at once, and
//! processed in the background.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use clearinghouse_api::CallbackBody;
use clearinghouse_api::Envelope;
use clearinghouse_api::model::ApiError;
use numport_core::Millis;
use numport_core::signing::{SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER, verify};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::Node;
use crate::error::HttpError;
use crate::portability::handler::Handled;
use crate::store::Arrival;

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

/// The answer to a callback.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Received {
    /// One new message.
    One { received: bool, id: i64 },
    /// One message seen before.
    Duplicate { duplicate: bool },
    /// Several messages: the ids new and the ids seen before.
    Several { received: Vec<i64>, duplicate: Vec<i64> },
}

/// Messages from the clearinghouse (signed callback)
///
/// One envelope, or several as an array, signed by the clearinghouse with the node's callback
/// secret. New messages are recorded, answered at once and processed in the background; a
/// message id seen before changes nothing.
#[utoipa::path(post, path = "/v1/clearinghouse/callbacks", tag = "portability", operation_id = "receiveCallback",
    params(
        ("x-numport-timestamp" = String, Header, description = "When the callback was signed, Unix milliseconds."),
        ("x-numport-signature" = String, Header, description = "`v1=` + hex(HMAC-SHA256(secret, timestamp + \".\" + body))."),
    ),
    request_body = CallbackBody,
    responses(
        (status = 200, description = "Recorded (or seen before).", body = Received),
        (status = 400, description = "Not an envelope or a non-empty array of them. Code: `malformed`.", body = ApiError),
        (status = 401, description = "Missing, malformed, wrong or stale signature, or no callback secret configured. \
            Codes: `missing_signature`, `malformed_signature`, `bad_signature`, `stale`, `no_secret`.", body = ApiError),
        (status = 500, description = "Not recorded; the clearinghouse sends it again. Code: `internal`.", body = ApiError),
    ))]
pub(crate) async fn receive(
    State(node): State<Node>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>, HttpError> {
    node.verify_callback(&headers, &body)?;
    let malformed = |message: String| {
        node.inner.metrics.callback_rejected("malformed");
        tracing::warn!(node = %node.name(), %message, "callback body refused");
        HttpError::bad_request("malformed", message)
    };
    let text = std::str::from_utf8(&body).map_err(|_| malformed("body is not UTF-8".into()))?;
    let received = envelopes(text).map_err(malformed)?;
    node.inner.metrics.callbacks_received.inc_by(received.len() as u64);

    let started = Instant::now();
    let now = node.now();
    let retry_at = now.saturating_add(node.inner.config.reprocess_after_ms);
    // Messages that only tell the node of an end are finished in the transaction that records
    // them; the others are processed after the answer.
    let handled: Vec<Option<Handled>> = received.iter().map(|(e, _)| node.handle_locally(e)).collect();
    let arrivals: Vec<Arrival> = received
        .iter()
        .zip(&handled)
        .map(|((e, raw), h)| Arrival {
            id: e.id,
            kind: e.message.kind(),
            body: raw,
            handled: h.as_ref().map(|h| (h.outcome.note(), &h.effect)),
        })
        .collect();
    let new = node.inner.store.record_messages(&arrivals, now, retry_at).await?;
    let (mut fresh, mut duplicate) = (Vec::new(), Vec::new());
    for (((envelope, _), handled), new) in received.into_iter().zip(handled).zip(new) {
        if !new {
            tracing::debug!(node = %node.name(), id = envelope.id, "duplicate callback");
            duplicate.push(envelope.id);
            continue;
        }
        fresh.push(envelope.id);
        match handled {
            Some(h) => node.finished(envelope.message.kind(), &h, true, started),
            None => node.spawn_processing(envelope),
        }
    }
    node.inner.metrics.callbacks_duplicate.inc_by(duplicate.len() as u64);
    Ok(Json(match (fresh.as_slice(), duplicate.as_slice()) {
        ([id], []) => Received::One { received: true, id: *id },
        ([], [_]) => Received::Duplicate { duplicate: true },
        _ => Received::Several { received: fresh, duplicate },
    }))
}

/// The envelopes of a callback body, each with its own JSON text (what is recorded): one
/// envelope as an object, or several as an array.
fn envelopes(text: &str) -> Result<Vec<(Envelope, &str)>, String> {
    let parse =
        |raw: &str| serde_json::from_str::<Envelope>(raw).map_err(|e| format!("body is not a message envelope: {e}"));
    if !text.trim_start().starts_with('[') {
        return Ok(vec![(parse(text)?, text)]);
    }
    let raws: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| format!("body is not an array of message envelopes: {e}"))?;
    if raws.is_empty() {
        return Err("the array of message envelopes is empty".into());
    }
    raws.into_iter().map(|raw| Ok((parse(raw.get())?, raw.get()))).collect()
}
