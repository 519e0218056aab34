//! The OTA server's API, for the operator's back office (the provisioning API's bearer token,
//! `[provisioning] token_sha256`):
//!
//! - `GET /v1/ota/jobs/{id}`: a job, its attempts and its outcome;
//! - `GET /v1/ota/status`: jobs by state and the most recent ones (`numport operator ota status`);
//! - `POST /v1/ota/jobs/{id}/retry`: a failed job queued again from its first attempt.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use clearinghouse_api::model::ApiError;
use numport_core::Millis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Node;
use crate::error::HttpError;
use crate::provisioner::http::authorise;
use crate::store::ota::OtaJob;

pub(crate) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new().routes(routes!(get_job)).routes(routes!(retry_job)).routes(routes!(status))
}

/// An OTA job as the API shows it (no keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtaJobView {
    pub id: i64,
    /// `account_opening` or `port_in`.
    pub kind: String,
    pub iccid: String,
    pub msisdn: String,
    /// `queued`, `sent` (waiting for the proof of receipt), `done` or `failed`.
    pub state: String,
    pub attempts: i64,
    /// When the next attempt is due if no proof of receipt comes first.
    pub next_attempt_at: Option<Millis>,
    /// The counters its packets were sent with: the first and the last.
    pub counter_from: Option<i64>,
    pub counter: Option<i64>,
    /// Status of the last proof of receipt (TS 102 225 §5.1.5), and in words.
    pub por_status: Option<i64>,
    pub por_status_text: Option<String>,
    /// Why it failed, or why its last attempt did not succeed.
    pub reason: Option<String>,
    /// What it writes: service provider name and SMS center address (and the number and keys).
    pub spn: String,
    pub sms_center_address: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl From<OtaJob> for OtaJobView {
    fn from(j: OtaJob) -> OtaJobView {
        let pending = matches!(j.state.as_str(), "queued" | "sent");
        OtaJobView {
            id: j.id,
            kind: j.kind,
            iccid: j.iccid,
            msisdn: j.msisdn,
            state: j.state,
            attempts: j.attempts,
            next_attempt_at: pending.then_some(j.next_attempt_at),
            counter_from: j.counter_from,
            counter: j.counter,
            por_status: j.por_status,
            por_status_text: j.por_status.map(|s| sim::packet::PorStatus::from_code(s as u8).to_string()),
            reason: j.reason,
            spn: j.spn,
            sms_center_address: j.smsc_address,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

/// An OTA job
#[utoipa::path(get, path = "/v1/ota/jobs/{id}", tag = "ota", operation_id = "getOtaJob",
    params(("id" = i64, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job.", body = OtaJobView),
        (status = 401, description = "Codes: `missing_token`, `bad_token`, `no_token_configured`.", body = ApiError),
        (status = 404, description = "No such job. Code: `not_found`.", body = ApiError),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_job(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<OtaJobView>, HttpError> {
    authorise(&node, &headers)?;
    match node.store().ota_job(id).await? {
        Some(j) => Ok(Json(j.into())),
        None => Err(HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such OTA job")),
    }
}

/// Retry a failed OTA job
///
/// Queues the job again from its first attempt, with fresh counters; 409 if it has not failed.
#[utoipa::path(post, path = "/v1/ota/jobs/{id}/retry", tag = "ota", operation_id = "retryOtaJob",
    params(("id" = i64, Path, description = "The job's id.")),
    responses(
        (status = 202, description = "Queued again.", body = OtaJobView),
        (status = 401, description = "Codes: `missing_token`, `bad_token`, `no_token_configured`.", body = ApiError),
        (status = 404, description = "No such job. Code: `not_found`.", body = ApiError),
        (status = 409, description = "The job has not failed. Code: `not_failed`.", body = ApiError),
    ),
    security(("bearer" = [])))]
pub(crate) async fn retry_job(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<OtaJobView>), HttpError> {
    authorise(&node, &headers)?;
    let retried = node.store().retry_ota_job(id, node.now()).await?;
    let Some(job) = node.store().ota_job(id).await? else {
        return Err(HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such OTA job"));
    };
    if !retried {
        return Err(HttpError::new(StatusCode::CONFLICT, "not_failed", format!("the job is {}", job.state)));
    }
    node.ota().wake();
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// The answer of `GET /v1/ota/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtaStatus {
    /// Jobs by state.
    pub queued: i64,
    pub sent: i64,
    pub done: i64,
    pub failed: i64,
    /// Cards in stock and assigned to accounts.
    pub cards_blank: i64,
    pub cards_assigned: i64,
    /// The 20 most recent jobs, newest first.
    pub recent: Vec<OtaJobView>,
}

/// How the OTA server stands
#[utoipa::path(get, path = "/v1/ota/status", tag = "ota", operation_id = "getOtaStatus",
    responses(
        (status = 200, description = "Jobs by state, cards, recent jobs.", body = OtaStatus),
        (status = 401, description = "Codes: `missing_token`, `bad_token`, `no_token_configured`.", body = ApiError),
    ),
    security(("bearer" = [])))]
pub(crate) async fn status(State(node): State<Node>, headers: HeaderMap) -> Result<Json<OtaStatus>, HttpError> {
    authorise(&node, &headers)?;
    let counts = node.store().ota_job_counts().await?;
    let count = |s: &str| counts.iter().find(|(state, _)| state == s).map_or(0, |(_, n)| *n);
    let (cards_blank, cards_assigned) = node.store().sim_card_counts().await?;
    let recent = node.store().recent_ota_jobs(20).await?.into_iter().map(Into::into).collect();
    Ok(Json(OtaStatus {
        queued: count("queued"),
        sent: count("sent"),
        done: count("done"),
        failed: count("failed"),
        cards_blank,
        cards_assigned,
        recent,
    }))
}
