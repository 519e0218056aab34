//! Self-service account opening (F7): a person holding one of the operator's blank cards opens
//! an account from a web page or the API, without a shop.
//!
//! The card is one the operator loaded into its stock ([`crate::ota::stock`]): ICCID, IMSI
//! (taken from the `[accounts] imsi_pool` when it was loaded), K_sim and the OTA keys, all
//! sealed at rest. Opening an account ([`open`]):
//!
//! 1. validates the identity ([`identity`]);
//! 2. in one transaction ([`crate::store::accounts`]): claims the card (blank to assigned),
//!    takes a number from `[accounts] msisdn_pool`, creates the subscriber, the SIM the air
//!    interface attaches (IMSI, number, K_sim), the account, and the OTA job that writes the
//!    card (number, service provider name, SMS center address, product keys);
//! 3. queues the provisioning order that activates the subscriber on the network elements
//!    (`new_account`, activation category; a crash before it is made good at the next start);
//! 4. wakes the OTA server, which writes the card over the air ([`crate::ota`]).
//!
//! Its progress ([`progress`]) is read from those records: `allocated`, `provisioned` once the
//! provisioning order is done, `sim_written` once the card's proof of receipt also confirmed
//! the writes, or `failed` with the reason.

pub mod http;
pub mod identity;
pub mod pools;

use numport_core::Millis;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::store::accounts::{NewAccount, OpenError, Opened};
use crate::{Node, OperatorError};
pub use identity::{AccountRequest, FieldError};
use pools::Pool;

/// The `[accounts]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// The numbers new accounts get, as ranges `first-last` of E.164 digits, handed out in
    /// order; a number that already has a subscriber (ported in) is skipped.
    pub msisdn_pool: Vec<String>,
    /// The IMSIs cards loaded without one get (15 digits), in order.
    pub imsi_pool: Vec<String>,
    /// The plan a new account is activated with.
    pub plan: String,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig { msisdn_pool: Vec::new(), imsi_pool: Vec::new(), plan: "basic".into() }
    }
}

impl AccountsConfig {
    pub fn numbers(&self) -> Result<Pool, OperatorError> {
        let pool = Pool::parse(&self.msisdn_pool).map_err(|e| OperatorError::Config(format!("msisdn_pool: {e}")))?;
        if !pool.all_of_length(8..=15) {
            return Err(OperatorError::Config("msisdn_pool: numbers have 8 to 15 digits".into()));
        }
        Ok(pool)
    }

    pub fn imsis(&self) -> Result<Pool, OperatorError> {
        let pool = Pool::parse(&self.imsi_pool).map_err(|e| OperatorError::Config(format!("imsi_pool: {e}")))?;
        if !pool.all_of_length(15..=15) {
            return Err(OperatorError::Config("imsi_pool: IMSIs have 15 digits".into()));
        }
        Ok(pool)
    }
}

/// Why an account was not opened.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{}", identity::describe(.0))]
    Identity(Vec<FieldError>),
    #[error("no blank card with this ICCID: check the number printed on the card")]
    CardUnavailable,
    #[error("no number is left to give; try again later")]
    PoolExhausted,
    #[error("this Idempotency-Key was used for another request")]
    KeyReused,
    #[error("account opening is not available: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Node(#[from] OperatorError),
}

impl From<OpenError> for Refusal {
    fn from(e: OpenError) -> Refusal {
        match e {
            OpenError::CardUnavailable => Refusal::CardUnavailable,
            OpenError::PoolExhausted => Refusal::PoolExhausted,
            OpenError::KeyReused => Refusal::KeyReused,
            OpenError::Store(e) => Refusal::Node(e),
        }
    }
}

/// An account as the request left it: its id, and whether an earlier copy of the request
/// opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedAccount {
    pub id: String,
    pub repeat: bool,
}

/// The calendar date at `now`, UTC.
fn date_at(now: Millis) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(now.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH).date()
}

/// Opens an account for `request`; `key` is its Idempotency-Key, under which a repeat (the
/// same body) answers the same account.
pub async fn open(node: &Node, request: &AccountRequest, key: Option<String>) -> Result<OpenedAccount, Refusal> {
    let now = node.now();
    let id = identity::validate(request, date_at(now)).map_err(Refusal::Identity)?;
    let numbers = node.config().accounts.numbers()?;
    if numbers.size() == 0 {
        return Err(Refusal::Unavailable("[accounts] msisdn_pool is empty".into()));
    }
    let sealer = node.sealer().map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let card = node.store().sim_card(&id.iccid).await?.filter(|c| c.state == "blank");
    let Some(card) = card else {
        // A repeat of a request that opened an account on this card answers that account.
        return match key {
            Some(_) => repeat_or(node, request, key, Refusal::CardUnavailable).await,
            None => Err(Refusal::CardUnavailable),
        };
    };
    let k_sim = sealer
        .open(crate::ota::stock::K_SIM_CONTEXT.context(&card.iccid).as_bytes(), &card.k_sim_sealed)
        .map_err(|e| OperatorError::Corrupt(format!("K_sim of card {}: {e}", card.iccid)))?;
    let ota = &node.config().ota;
    let account = NewAccount {
        id: random_id(),
        idempotency_key: key,
        request_sha256: request_digest(request),
        given_name: id.given_name,
        family_name: id.family_name,
        date_of_birth: id.date_of_birth.to_string(),
        id_document: id.id_document,
        email: id.email,
        iccid: id.iccid,
        plan: node.config().accounts.plan.clone(),
        spn: ota.spn(node.name()),
        smsc_address: ota.sms_center_address.clone(),
        created_at: now,
    };
    match node.store().open_account(&account, &numbers, &k_sim).await? {
        Opened::Repeat { id } => Ok(OpenedAccount { id, repeat: true }),
        Opened::New { msisdn, imsi } => {
            tracing::info!(account = account.id, %msisdn, iccid = account.iccid, "account opened");
            provision(node, &account.id, &msisdn, &imsi, &account.plan).await;
            node.ota().wake();
            Ok(OpenedAccount { id: account.id, repeat: false })
        }
    }
}

/// The account an earlier copy of the request opened, else `refusal`.
async fn repeat_or(
    node: &Node,
    request: &AccountRequest,
    key: Option<String>,
    refusal: Refusal,
) -> Result<OpenedAccount, Refusal> {
    match node.store().earlier_account(key.as_deref(), &request_digest(request)).await? {
        Some(Opened::Repeat { id }) => Ok(OpenedAccount { id, repeat: true }),
        _ => Err(refusal),
    }
}

/// Queues the activation of a new account on the network elements; one lost here is queued
/// at the next start ([`queue_unprovisioned`]).
async fn provision(node: &Node, account: &str, msisdn: &str, imsi: &str, plan: &str) {
    let order = msisdn.parse().map(|m| {
        provisioning::Order::new(m, provisioning::Action::NewAccount { imsi: imsi.to_owned(), plan: plan.to_owned() })
    });
    let result = match order {
        Ok(o) => node.provisioner().enqueue(vec![(o, Some(format!("account:{account}")))]).await.map(|_| ()),
        Err(e) => Err(crate::provisioner::EnqueueError::Invalid(format!("{msisdn}: {e}"))),
    };
    if let Err(e) = result {
        tracing::warn!(account, msisdn, error = %e, "provisioning order for a new account not queued; queued at next start");
    }
}

/// Queues the provisioning orders of accounts that have none (run at start).
pub(crate) async fn queue_unprovisioned(node: &Node) -> Result<(), OperatorError> {
    for (id, msisdn, imsi, plan) in node.store().unprovisioned_accounts().await? {
        provision(node, &id, &msisdn, &imsi, &plan).await;
    }
    Ok(())
}

/// 128 random bits, hex: an account's id is all its holder needs to read its progress.
fn random_id() -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    hex::encode(id)
}

/// What tells a repeat of a request from another request under the same key.
fn request_digest(r: &AccountRequest) -> String {
    let body = serde_json::to_vec(r).unwrap_or_default();
    hex::encode(Sha256::digest(body))
}

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Number and card assigned; the network elements and the card not yet confirmed.
    Allocated,
    /// Active on the network elements; the card not yet confirmed.
    Provisioned,
    /// Active, and the card confirmed its new contents with a proof of receipt.
    SimWritten,
    Failed,
}

/// The answer of `GET /v1/accounts/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub state: AccountState,
    /// Why it failed.
    pub reason: Option<String>,
    pub msisdn: String,
    pub iccid: String,
    pub plan: String,
    /// Each step: done or not.
    pub allocated: bool,
    pub provisioned: bool,
    pub sim_written: bool,
    pub provisioning_order_id: Option<i64>,
    pub ota_job_id: Option<i64>,
    pub created_at: Millis,
}

/// The account `id` and how far it got; `None` if there is none.
pub async fn progress(node: &Node, id: &str) -> Result<Option<AccountView>, OperatorError> {
    let Some(a) = node.store().account(id).await? else { return Ok(None) };
    let source = format!("account:{id}");
    let order_id = node.store().provisioning_sources(&[source.as_str()]).await?.get(&source).copied();
    let order = match order_id {
        Some(oid) => node.store().provisioning_order(oid).await?,
        None => None,
    };
    let job = node.store().ota_job_by_source(&source).await?;
    let dead = order.as_ref().and_then(|o| o.commands.iter().find(|c| c.state == "dead"));
    let provisioned = order.as_ref().is_some_and(|o| o.commands.iter().all(|c| c.state == "done"));
    let sim_written = job.as_ref().is_some_and(|j| j.state == "done");
    let (state, reason) = match (&job, dead) {
        (Some(j), _) if j.state == "failed" => (
            AccountState::Failed,
            Some(format!("the card was not written: {}", j.reason.as_deref().unwrap_or("failed"))),
        ),
        (_, Some(c)) => (
            AccountState::Failed,
            Some(format!("provisioning on {} failed: {}", c.command.element, c.reason.as_deref().unwrap_or("refused"))),
        ),
        _ if provisioned && sim_written => (AccountState::SimWritten, None),
        _ if provisioned => (AccountState::Provisioned, None),
        _ => (AccountState::Allocated, None),
    };
    Ok(Some(AccountView {
        id: a.id,
        state,
        reason,
        msisdn: a.msisdn,
        iccid: a.iccid,
        plan: a.plan,
        allocated: true,
        provisioned,
        sim_written,
        provisioning_order_id: order_id,
        ota_job_id: job.map(|j| j.id),
        created_at: a.created_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_utc() {
        assert_eq!(date_at(1_796_601_599_000).to_string(), "2026-12-06");
        assert_eq!(date_at(1_796_601_600_000).to_string(), "2026-12-07");
    }

    #[test]
    fn pools_are_checked() {
        let c = AccountsConfig { msisdn_pool: vec!["4791".into()], ..Default::default() };
        assert!(c.numbers().is_err());
        let c = AccountsConfig { imsi_pool: vec!["24201000000000".into()], ..Default::default() };
        assert!(c.imsis().is_err());
        let c = AccountsConfig {
            msisdn_pool: vec!["4791000000-4791000999".into()],
            imsi_pool: vec!["242010000000000-242010000000999".into()],
            ..Default::default()
        };
        assert_eq!((c.numbers().unwrap().size(), c.imsis().unwrap().size()), (1000, 1000));
    }
}
