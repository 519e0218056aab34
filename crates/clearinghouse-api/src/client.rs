//! A typed client for operators (and the demo and benchmarks) calling the clearinghouse.

use numport_core::Msisdn;
use numport_tls::{ClientTls, TlsError};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::*;

/// Header carrying the caller's idempotency key on every state-changing request.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to the clearinghouse failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("clearinghouse answered {status}: {} ({})", .error.message, .error.error)]
    Api { status: StatusCode, error: ApiError },
}

impl ClientError {
    /// The API error code, when the clearinghouse answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.error),
            ClientError::Transport(_) => None,
        }
    }
}

/// An authenticated connection to one clearinghouse; cheap to clone.
#[derive(Debug, Clone)]
pub struct ClearinghouseClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ClearinghouseClient {
    /// `base` is the clearinghouse's root URL (`http://127.0.0.1:8400`); `token` the operator's
    /// API key as issued (`<key id>.<secret>`).
    pub fn new(base: &str, token: &str) -> ClearinghouseClient {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).tcp_nodelay(true).build().unwrap_or_default();
        ClearinghouseClient { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http }
    }

    /// As [`Self::new`], for an `https://` base verified with `tls`'s CA; with `tls`'s
    /// certificate presented when the clearinghouse asks for one (mutual TLS).
    pub fn with_tls(base: &str, token: &str, tls: Option<&ClientTls>) -> Result<ClearinghouseClient, TlsError> {
        let http = numport_tls::http::client(tls, |b| b.pool_max_idle_per_host(64).tcp_nodelay(true))?;
        Ok(ClearinghouseClient { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        idempotency_key: Option<&str>,
    ) -> Result<T, ClientError> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path)).bearer_auth(&self.token);
        if let Some(k) = idempotency_key {
            req = req.header(IDEMPOTENCY_KEY_HEADER, k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Self::parse(req.send().await?).await
    }

    async fn parse<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
        if resp.status().is_success() { Ok(resp.json().await?) } else { Err(Self::api_error(resp).await) }
    }

    async fn api_error(resp: reqwest::Response) -> ClientError {
        let status = resp.status();
        let error = resp
            .json::<ApiError>()
            .await
            .unwrap_or_else(|e| ApiError { error: "unreadable_error".into(), message: e.to_string() });
        ClientError::Api { status, error }
    }

    /// F1 step 1 (recipient): open a porting order with the terminal's proof.
    pub async fn request_port(&self, req: &PortingRequest, idem: &str) -> Result<Order, ClientError> {
        self.call(Method::POST, "/v1/porting-orders", Some(req), Some(idem)).await
    }

    /// F1 step 2 (donor): deposit the expected proof.
    pub async fn deposit(&self, req: &DepositRequest, idem: &str) -> Result<DepositAccepted, ClientError> {
        self.call(Method::POST, "/v1/deposits", Some(req), Some(idem)).await
    }

    /// F1 step 4 (donor): answer the credit query.
    pub async fn credit_information(
        &self,
        order_id: i64,
        req: &CreditInformationRequest,
        idem: &str,
    ) -> Result<Order, ClientError> {
        self.call(Method::POST, &format!("/v1/porting-orders/{order_id}/credit-information"), Some(req), Some(idem))
            .await
    }

    /// F1 step 5 (recipient): accept with the compensation, or refuse.
    pub async fn decide(&self, order_id: i64, req: &DecisionRequest, idem: &str) -> Result<Order, ClientError> {
        self.call(Method::POST, &format!("/v1/porting-orders/{order_id}/decision"), Some(req), Some(idem)).await
    }

    /// F1 step 2 (donor): decline an order awaiting the deposit, with the reason.
    pub async fn decline(&self, order_id: i64, req: &DeclineRequest, idem: &str) -> Result<Order, ClientError> {
        self.call(Method::POST, &format!("/v1/porting-orders/{order_id}/decline"), Some(req), Some(idem)).await
    }

    pub async fn cancel(&self, order_id: i64, req: &CancelRequest, idem: &str) -> Result<Order, ClientError> {
        self.call(Method::POST, &format!("/v1/porting-orders/{order_id}/cancel"), Some(req), Some(idem)).await
    }

    pub async fn order(&self, order_id: i64) -> Result<Order, ClientError> {
        self.call(Method::GET, &format!("/v1/porting-orders/{order_id}"), None::<&()>, None).await
    }

    pub async fn orders(&self) -> Result<OrderList, ClientError> {
        self.call(Method::GET, "/v1/porting-orders", None::<&()>, None).await
    }

    pub async fn audit(&self, order_id: i64) -> Result<AuditTrail, ClientError> {
        self.call(Method::GET, &format!("/v1/porting-orders/{order_id}/audit"), None::<&()>, None).await
    }

    /// The serving operator terminated a ported number: give it back to its range holder.
    pub async fn return_number(&self, msisdn: &Msisdn, idem: &str) -> Result<NumberReturned, ClientError> {
        self.call(Method::POST, &format!("/v1/numbers/{msisdn}/return"), Some(&serde_json::json!({})), Some(idem)).await
    }

    pub async fn number(&self, msisdn: &Msisdn) -> Result<NumberStatus, ClientError> {
        self.call(Method::GET, &format!("/v1/numbers/{msisdn}"), None::<&()>, None).await
    }

    pub async fn account(&self) -> Result<Account, ClientError> {
        self.call(Method::GET, "/v1/accounts/me", None::<&()>, None).await
    }

    pub async fn violations(&self) -> Result<ViolationList, ClientError> {
        self.call(Method::GET, "/v1/violations", None::<&()>, None).await
    }

    pub async fn inbox(&self, after: i64, limit: i64) -> Result<Inbox, ClientError> {
        self.call(Method::GET, &format!("/v1/inbox?after={after}&limit={limit}"), None::<&()>, None).await
    }

    pub async fn ack(&self, up_to: i64) -> Result<serde_json::Value, ClientError> {
        self.call(Method::POST, "/v1/inbox/ack", Some(&AckRequest { up_to }), None).await
    }

    /// Routing changes after `after`, waiting up to `wait_ms` for one if none is there yet.
    /// The request gives up 5 s after the wait, so a follower never hangs on a dead peer.
    pub async fn routing_changes(&self, after: i64, limit: i64, wait_ms: u64) -> Result<ChangePage, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/routing/changes?after={after}&limit={limit}&wait_ms={wait_ms}", self.base))
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_millis(wait_ms + 5_000))
            .send()
            .await?;
        Self::parse(resp).await
    }

    /// The routing snapshot (the `npdb::snapshot` text format), as a response whose body the
    /// caller streams with [`reqwest::Response::chunk`].
    pub async fn routing_snapshot(&self) -> Result<reqwest::Response, ClientError> {
        let resp = self.http.get(format!("{}/v1/routing/snapshot", self.base)).bearer_auth(&self.token).send().await?;
        if resp.status().is_success() { Ok(resp) } else { Err(Self::api_error(resp).await) }
    }

    /// The registered callback URL and how its deliveries fare.
    pub async fn callback_status(&self) -> Result<CallbackStatus, ClientError> {
        self.call(Method::GET, "/v1/operators/me/callback", None::<&()>, None).await
    }

    pub async fn set_callback(&self, url: Option<&str>) -> Result<serde_json::Value, ClientError> {
        self.call(
            Method::PUT,
            "/v1/operators/me/callback",
            Some(&CallbackRequest { url: url.map(str::to_owned) }),
            None,
        )
        .await
    }
}
