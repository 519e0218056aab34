//! The OCS's HTTP API (`ocs::http`) as the network and its operators call it: the
//! online-charging list (CN102547642B), partial CDRs (CN102083044A), data usage records
//! (CN102083042B), and the administration a test or benchmark prepares the OCS with.

use numport_core::Money;
use ocs::data_charging::{ChargingMode, DataUsageRecord};
use ocs::online_list::{EntryKind, ListEntry};
use ocs::partial_cdr::PartialCdr;
use ocs::rating::TariffRule;
use ocs::service::{BalanceView, DataRating, PartialOutcome};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("OCS API: {0}")]
    Http(#[from] reqwest::Error),
    /// The OCS answered, and refused.
    #[error("OCS API refused ({status}): {body}")]
    Refused { status: StatusCode, body: String },
}

/// A client of one OCS's HTTP API.
#[derive(Debug, Clone)]
pub struct OcsApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl OcsApi {
    /// `base` like `http://127.0.0.1:8700`; `token` the API's bearer token.
    pub fn new(base: &str, token: &str) -> OcsApi {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        OcsApi { http, base: base.trim_end_matches('/').to_owned(), token: token.to_owned() }
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let r = req.bearer_auth(&self.token).send().await?;
        if !r.status().is_success() {
            let status = r.status();
            return Err(ApiError::Refused { status, body: r.text().await.unwrap_or_default() });
        }
        Ok(r.json().await?)
    }

    async fn send_empty(&self, req: reqwest::RequestBuilder) -> Result<(), ApiError> {
        let r = req.bearer_auth(&self.token).send().await?;
        if !r.status().is_success() {
            let status = r.status();
            return Err(ApiError::Refused { status, body: r.text().await.unwrap_or_default() });
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn online_list(&self) -> Result<Vec<ListEntry>, ApiError> {
        self.send(self.http.get(self.url("/v1/ocs/online-list"))).await
    }

    pub async fn partial_cdr(&self, p: &PartialCdr) -> Result<PartialOutcome, ApiError> {
        self.send(self.http.post(self.url("/v1/ocs/partial-cdrs")).json(p)).await
    }

    pub async fn data_record(&self, r: &DataUsageRecord) -> Result<DataRating, ApiError> {
        self.send(self.http.post(self.url("/v1/ocs/data-records")).json(r)).await
    }

    pub async fn balance(&self, msisdn: &str) -> Result<BalanceView, ApiError> {
        self.send(self.http.get(self.url(&format!("/v1/ocs/accounts/{msisdn}")))).await
    }

    pub async fn create_account(&self, msisdn: &str, credit_limit: Money) -> Result<BalanceView, ApiError> {
        let body = serde_json::json!({ "msisdn": msisdn, "credit_limit": credit_limit });
        self.send(self.http.post(self.url("/v1/ocs/accounts")).json(&body)).await
    }

    /// Recharges once per `key`.
    pub async fn recharge(&self, msisdn: &str, amount: Money, key: &str) -> Result<BalanceView, ApiError> {
        let url = self.url(&format!("/v1/ocs/accounts/{msisdn}/recharges"));
        let body = serde_json::json!({ "amount": amount });
        self.send(self.http.post(url).header("Idempotency-Key", key).json(&body)).await
    }

    pub async fn set_tariffs(&self, rules: &[TariffRule]) -> Result<(), ApiError> {
        self.send_empty(self.http.put(self.url("/v1/ocs/tariffs")).json(rules)).await
    }

    pub async fn put_online_entry(&self, digits: &str, kind: EntryKind) -> Result<(), ApiError> {
        let body = serde_json::json!({ "kind": kind });
        self.send_empty(self.http.put(self.url(&format!("/v1/ocs/online-list/{digits}"))).json(&body)).await
    }

    pub async fn set_charging_mode(
        &self,
        subscriber: &str,
        service_id: u32,
        mode: ChargingMode,
    ) -> Result<(), ApiError> {
        let url = self.url(&format!("/v1/ocs/charging-modes/{subscriber}/{service_id}"));
        self.send_empty(self.http.put(url).json(&mode)).await
    }
}
