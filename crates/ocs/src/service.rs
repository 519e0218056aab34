//! [`Ocs`]: the service the Diameter Gy server and the operator node's API call.
//!
//! Accounts are changed in memory under their own lock ([`crate::engine`]): the pure logic runs
//! on a copy of the account, and the account's changes, the journal and the record that makes
//! the request idempotent (the session with its answer) go to the group commit; the answer is
//! returned once that commit is durable. The rarer writers (recharges, data records, partial
//! CDRs: each with an idempotency record of its own) hold the account's lock across a
//! transaction of their own. The tariffs, the online-charging list and the charging modes are
//! read on every request, so they are kept in memory, compiled, and replaced when they are
//! edited (through this service, after the edit commits).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use numport_core::{Clock, Millis, Money};
use numport_db::{Connection, Db, DbConfig, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::balance::{Account, AccountId, BalanceError, Entry, Ledger, MoneyBucket, UnitBucket};
use crate::capacity::{self, Admission};
use crate::data_charging::{self, ChargingMode, DataChargingError, DataUsageRecord, ModeTable};
use crate::engine::{Engine, Held};
use crate::metrics::{CcrLabels, Metrics, ModeLabel, OutcomeLabel};
use crate::online_list::{BadEntry, ChargingDecision, EntryKind, ListEntry, OnlineList};
use crate::partial_cdr::{self, CompleteCdr, Correction, MergeError, PartialCdr, PartialDecision, PartialError};
use crate::rating::{RatingError, TariffRule, TariffTable, UnitKind};
use crate::session::{self, CreditControlAnswer, CreditControlRequest, GyPolicy, SessionState, result_code};
use crate::store;

/// The OCS's settings (the `[ocs]` table of a role's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcsConfig {
    pub gy: GyPolicy,
    /// The zone tariff bands are written in, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// How often the Tcc supervisor looks for silent sessions, ms.
    pub supervise_every_ms: u64,
}

impl Default for OcsConfig {
    fn default() -> OcsConfig {
        OcsConfig { gy: GyPolicy::default(), utc_offset_minutes: 0, supervise_every_ms: 1000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OcsError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("subscriber {0} has no account")]
    UnknownSubscriber(String),
    #[error("subscriber {0} already has an account")]
    AccountExists(String),
    #[error(transparent)]
    Balance(#[from] BalanceError),
    #[error(transparent)]
    Rating(#[from] RatingError),
    #[error(transparent)]
    BadListEntry(#[from] BadEntry),
    #[error(transparent)]
    DataCharging(#[from] DataChargingError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("{0}")]
    Invalid(String),
}

impl From<PartialError> for OcsError {
    fn from(e: PartialError) -> OcsError {
        match e {
            PartialError::Rating(e) => e.into(),
            PartialError::Balance(e) => e.into(),
            PartialError::Merge(e) => e.into(),
        }
    }
}

pub type Result<T, E = OcsError> = std::result::Result<T, E>;

/// A subscriber's balance as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceView {
    pub msisdn: String,
    pub account_id: AccountId,
    /// `Σ buckets − debt`.
    pub balance: Money,
    /// What can still be spent or reserved: live buckets plus the credit headroom.
    pub available: Money,
    pub reserved: Money,
    pub debt: Money,
    pub credit_limit: Money,
    pub money_buckets: Vec<MoneyBucket>,
    pub unit_buckets: Vec<UnitBucket>,
}

impl BalanceView {
    fn of(msisdn: &str, a: &Account, now: Millis) -> BalanceView {
        BalanceView {
            msisdn: msisdn.to_owned(),
            account_id: a.id,
            balance: a.net(),
            available: a.available(now),
            reserved: a.reserved(),
            debt: a.debt,
            credit_limit: a.credit_limit,
            money_buckets: a.money.clone(),
            unit_buckets: a.units.clone(),
        }
    }
}

/// One service's line of a rated data record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubRecordCharge {
    pub service_id: u32,
    pub mode: ChargingMode,
    pub octets: u64,
    pub duration_s: u64,
    pub events: u64,
    /// What the mode rated it at.
    pub rated: Money,
    /// What the balance paid of that (less only when the credit limit was reached).
    pub charged: Money,
}

/// A data usage record, split and rated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRating {
    pub record_id: String,
    pub subscriber: String,
    pub lines: Vec<SubRecordCharge>,
    pub rated: Money,
    pub charged: Money,
}

/// A call's end: the merged CDR, its formal rating and the correction applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallResult {
    pub complete: CompleteCdr,
    pub correction: Correction,
    /// What moved: positive charged, negative refunded.
    pub applied: Money,
}

/// What a partial CDR brought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialOutcome {
    pub decision: PartialDecision,
    /// Set once the call's partials are complete.
    pub call: Option<CallResult>,
}

/// What the ledger check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerReport {
    pub accounts: usize,
    /// Sum over every ledger account: zero when money is conserved.
    pub total: i64,
    /// Money spent beyond credit limits, summed over accounts.
    pub overdraft: i64,
}

struct Inner {
    db: Db,
    engine: Engine,
    clock: Arc<dyn Clock>,
    config: OcsConfig,
    tariffs: RwLock<Arc<TariffTable>>,
    online: RwLock<OnlineList>,
    modes: RwLock<ModeTable>,
    metrics: Metrics,
}

/// The online charging system; cheap to clone.
#[derive(Clone)]
pub struct Ocs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ocs").field("backend", &self.inner.db.backend).finish_non_exhaustive()
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}

impl Ocs {
    /// Open the OCS's own database (`sqlite://…` or `postgres://…`), apply its migrations,
    /// and load its tables; metrics go to `registry`.
    pub async fn open(
        db: &DbConfig,
        config: OcsConfig,
        clock: Arc<dyn Clock>,
        registry: &telemetry::Registry,
    ) -> Result<Ocs> {
        let db = Db::open(db, &store::SCHEMA).await?;
        Ocs::with_db(db, config, clock, registry).await
    }

    /// An OCS on a database already opened with [`store::SCHEMA`].
    pub async fn with_db(
        db: Db,
        config: OcsConfig,
        clock: Arc<dyn Clock>,
        registry: &telemetry::Registry,
    ) -> Result<Ocs> {
        let mut conn = db.acquire().await?;
        let tariffs = TariffTable::compile(store::tariffs(&mut conn).await?, config.utc_offset_minutes)?;
        let online = OnlineList::new(store::online_list(&mut conn).await?)?;
        let mut modes = ModeTable::default();
        for (s, id, m) in store::charging_modes(&mut conn).await? {
            modes.set(&s, id, m)?;
        }
        let (total, loaded, _) = store::lock_capacity(&mut conn, "").await?;
        drop(conn);
        let metrics = Metrics::register(registry);
        metrics.online_list_entries.set(online.len() as i64);
        metrics.capacity_total.set(total.unwrap_or(0) as i64);
        metrics.capacity_loaded.set(loaded as i64);
        let inner = Inner {
            engine: Engine::start(db.clone(), metrics.group_commits.clone()),
            db,
            clock,
            config,
            tariffs: RwLock::new(Arc::new(tariffs)),
            online: RwLock::new(online),
            modes: RwLock::new(modes),
            metrics,
        };
        Ok(Ocs { inner: Arc::new(inner) })
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn config(&self) -> &OcsConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The compiled tariffs in force.
    pub fn tariffs(&self) -> Arc<TariffTable> {
        read(&self.inner.tariffs)
    }

    // ------------------------------------------------------------ credit control

    /// Answer a CCR. The answer is durable (with every charge and reservation it implies)
    /// when this returns; a retransmission gets the same answer and changes nothing. An
    /// `Err` is a storage failure: the Diameter layer answers it 5012 (UNABLE_TO_COMPLY),
    /// and since nothing was committed the gateway's retransmission is handled afresh.
    pub async fn credit_control(&self, req: CreditControlRequest) -> Result<CreditControlAnswer> {
        let started = Instant::now();
        let answer = self.credit_control_tx(&req).await?;
        let m = self.metrics();
        m.ccr
            .get_or_create(&CcrLabels { request_type: req.request_type.as_str(), result_code: answer.result_code })
            .inc();
        m.ccr_latency.observe(started.elapsed().as_secs_f64());
        Ok(answer)
    }

    async fn credit_control_tx(&self, req: &CreditControlRequest) -> Result<CreditControlAnswer> {
        let now = self.now();
        let engine = &self.inner.engine;
        let Some((mut held, known)) = engine.lock_for_request(&req.session_id, &req.subscription_id.data).await? else {
            return Ok(CreditControlAnswer::error(req, result_code::USER_UNKNOWN));
        };
        if let Some(k) = &known
            && let Some(answer) = session::replay(Some(&k.session), req)
        {
            drop(held);
            // A copy of a request whose change is still committing waits for it.
            if let Some(t) = &k.ticket {
                t.committed().await?;
            }
            self.metrics().retransmissions.inc();
            return Ok(answer);
        }
        let mut account = held.account().clone();
        let expired = account.expire(now)?;
        let tariffs = self.tariffs();
        let session = known.map(|k| k.session);
        let outcome = session::credit_control(&mut account, session, req, &tariffs, &self.inner.config.gy, now)?;
        let Some(stored) = outcome.session else {
            // Refused, changing nothing; but the refusal may rest on changes still committing.
            let last = held.last();
            drop(held);
            if let Some(t) = last {
                t.committed().await?;
            }
            return Ok(outcome.answer);
        };
        let key = format!("ccr:{}:{}", req.session_id, req.request_number);
        let mut postings = Vec::new();
        store::posting_rows(&mut postings, &format!("{key}:expiry"), "expiry", &expired, now);
        store::posting_rows(&mut postings, &key, "credit_control", &outcome.entries, now);
        let closed = stored.state != SessionState::Open;
        let ticket = held.apply(account, postings, Some(stored), now)?;
        let account_id = held.account().id;
        drop(held);
        ticket.committed().await?;
        if closed {
            engine.evict(account_id, &req.session_id, req.request_number).await;
        }
        let m = self.metrics();
        m.charged.inc_by(outcome.charged.0.max(0) as u64);
        m.uncollected_units.inc_by(outcome.uncollected_units);
        Ok(outcome.answer)
    }

    /// One pass of the Tcc supervisor: release the reservations of every open session whose
    /// deadline passed. Returns how many sessions it closed.
    pub async fn supervise_once(&self) -> Result<usize> {
        let now = self.now();
        let due = {
            let mut conn = self.inner.db.read().await?;
            store::due_sessions(&mut conn, now, 256).await?
        };
        let engine = &self.inner.engine;
        let mut released = Vec::new();
        for (session_id, account_id) in due {
            let Some(mut held) = engine.lock(account_id).await? else { continue };
            let Some(known) = held.session(&session_id).await? else { continue };
            let (mut account, mut s) = (held.account().clone(), known.session);
            let Some(entries) = session::supervise(&mut account, &mut s, now)? else { continue };
            let mut postings = Vec::new();
            store::posting_rows(&mut postings, &format!("tcc:{session_id}"), "tcc_release", &entries, now);
            let number = s.last_request_number;
            released.push((held.apply(account, postings, Some(s), now)?, account_id, session_id, number));
        }
        let mut closed = 0;
        for (ticket, account_id, session_id, number) in released {
            ticket.committed().await?;
            engine.evict(account_id, &session_id, number).await;
            closed += 1;
        }
        self.metrics().tcc_released.inc_by(closed as u64);
        Ok(closed)
    }

    /// Run the Tcc supervisor every `supervise_every_ms` until `shutdown`.
    pub fn spawn_supervisor(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let ocs = self.clone();
        let period = Duration::from_millis(self.inner.config.supervise_every_ms.max(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = ocs.supervise_once().await {
                            tracing::warn!(error = %e, "Tcc supervision pass failed");
                        }
                    }
                }
            }
        })
    }

    // ------------------------------------------------------------ accounts and recharges

    /// Open an account for `msisdn` with a credit limit (0 for pure prepaid).
    pub async fn create_account(&self, msisdn: &str, credit_limit: Money) -> Result<AccountId> {
        if credit_limit.is_negative() {
            return Err(OcsError::Invalid("the credit limit must not be negative".into()));
        }
        let mut tx = self.inner.db.begin().await?;
        let id = match store::create_account(&mut tx, msisdn, credit_limit, self.now()).await {
            Err(e) if e.is_duplicate() => return Err(OcsError::AccountExists(msisdn.to_owned())),
            other => other?,
        };
        tx.commit().await?;
        Ok(id)
    }

    /// Hold `msisdn`'s account for a transaction of the caller's own, its changes in flight
    /// committed first; or fail with [`OcsError::UnknownSubscriber`].
    async fn hold(&self, msisdn: &str) -> Result<Held> {
        self.inner.engine.hold(msisdn).await?.ok_or_else(|| OcsError::UnknownSubscriber(msisdn.to_owned()))
    }

    /// Recharge `amount` (to a bucket of its own when it expires), once per `key`: a recharge
    /// repeated with the same key changes nothing and returns the balance.
    pub async fn recharge(
        &self,
        msisdn: &str,
        amount: Money,
        expires_at: Option<Millis>,
        key: &str,
    ) -> Result<BalanceView> {
        let now = self.now();
        let mut held = self.hold(msisdn).await?;
        let before = held.account().clone();
        let mut tx = self.inner.db.begin().await?;
        if store::recharged(&mut tx, key).await? {
            held.keep();
            return Ok(BalanceView::of(msisdn, &before, now));
        }
        let mut account = before.clone();
        let (_, entry) = account.recharge(amount, expires_at)?;
        store::save_account(&mut tx, &before, &account).await?;
        store::record_recharge(&mut tx, key, now).await?;
        store::post(&mut tx, &format!("recharge:{key}"), "recharge", &[entry], now).await?;
        tx.commit().await?;
        held.set(account.clone());
        self.metrics().recharges.inc();
        self.metrics().recharged.inc_by(amount.0 as u64);
        Ok(BalanceView::of(msisdn, &account, now))
    }

    /// Add a bundle of units (free minutes, octets, messages) to `msisdn`'s account.
    pub async fn add_units(
        &self,
        msisdn: &str,
        unit: UnitKind,
        rating_group: Option<u32>,
        amount: u64,
        expires_at: Option<Millis>,
    ) -> Result<BalanceView> {
        let now = self.now();
        let mut held = self.hold(msisdn).await?;
        let before = held.account().clone();
        let mut account = before.clone();
        account.add_units(unit, rating_group, amount, expires_at);
        let mut tx = self.inner.db.begin().await?;
        store::save_account(&mut tx, &before, &account).await?;
        tx.commit().await?;
        held.set(account.clone());
        Ok(BalanceView::of(msisdn, &account, now))
    }

    /// Change the credit limit; never below the credit already taken.
    pub async fn set_credit_limit(&self, msisdn: &str, credit_limit: Money) -> Result<BalanceView> {
        let now = self.now();
        let mut held = self.hold(msisdn).await?;
        let before = held.account().clone();
        if credit_limit < before.debt || credit_limit.is_negative() {
            held.keep();
            return Err(OcsError::Invalid(format!(
                "credit limit {credit_limit} is below the credit taken, {}",
                before.debt
            )));
        }
        let mut account = before.clone();
        account.credit_limit = credit_limit;
        let mut tx = self.inner.db.begin().await?;
        store::save_account(&mut tx, &before, &account).await?;
        tx.commit().await?;
        held.set(account.clone());
        Ok(BalanceView::of(msisdn, &account, now))
    }

    /// The balance as committed: the account's changes in flight are waited for.
    pub async fn balance(&self, msisdn: &str) -> Result<BalanceView> {
        let mut held = self.hold(msisdn).await?;
        held.keep();
        Ok(BalanceView::of(msisdn, held.account(), self.now()))
    }

    /// Check the books: every account's buckets and reservations agree with its ledger
    /// accounts, no debt passes its limit, and the ledger sums to zero.
    pub async fn check_ledger(&self) -> Result<LedgerReport> {
        self.inner.engine.flush().await?;
        let mut conn = self.inner.db.acquire().await?;
        let balances = store::ledger_balances(&mut conn).await?;
        let unbalanced = store::unbalanced_entries(&mut conn).await?;
        if !unbalanced.is_empty() {
            return Err(BalanceError::Invariant(format!("unbalanced entries {unbalanced:?}")).into());
        }
        let get = |l: Ledger| Money(balances.get(&l.key()).copied().unwrap_or(0));
        let accounts = store::accounts(&mut conn).await?;
        let mut overdraft = 0;
        for (id, _) in &accounts {
            let Some(a) = store::account(&mut conn, *id).await? else { continue };
            overdraft += (a.debt.0 - a.credit_limit.0).max(0);
            a.check(get(Ledger::Available(a.id)), get(Ledger::Reserved(a.id)))?;
        }
        Ok(LedgerReport { accounts: accounts.len(), total: balances.values().sum(), overdraft })
    }

    // ------------------------------------------------------------ tariffs

    /// Replace the tariffs (checked and compiled first).
    pub async fn set_tariffs(&self, rules: Vec<TariffRule>) -> Result<()> {
        let table = TariffTable::compile(rules, self.inner.config.utc_offset_minutes)?;
        let mut tx = self.inner.db.begin().await?;
        store::replace_tariffs(&mut tx, table.rules()).await?;
        tx.commit().await?;
        write(&self.inner.tariffs, Arc::new(table));
        Ok(())
    }

    // ------------------------------------------------------------ CN102547642B

    /// How the caller of a call to `called` is charged: online where the list matches.
    pub fn charging_decision(&self, called: &str) -> ChargingDecision {
        let d = self.inner.online.read().unwrap_or_else(|p| p.into_inner()).decide(called);
        let outcome = if matches!(d, ChargingDecision::Online { .. }) { "online" } else { "offline" };
        self.metrics().charging_decisions.get_or_create(&OutcomeLabel { outcome }).inc();
        d
    }

    pub fn online_list(&self) -> Vec<ListEntry> {
        self.inner.online.read().unwrap_or_else(|p| p.into_inner()).entries().collect()
    }

    /// Add or replace a number or prefix on the online-charging list.
    pub async fn put_online_entry(&self, entry: ListEntry) -> Result<()> {
        let digits = OnlineList::validate(&entry)?;
        let mut tx = self.inner.db.begin().await?;
        store::put_online_entry(&mut tx, &digits, entry.kind, self.now()).await?;
        tx.commit().await?;
        let mut list = read(&self.inner.online);
        list.insert(ListEntry { digits, kind: entry.kind })?;
        self.metrics().online_list_entries.set(list.len() as i64);
        write(&self.inner.online, list);
        Ok(())
    }

    /// Remove a number or prefix; whether it was listed.
    pub async fn remove_online_entry(&self, digits: &str) -> Result<bool> {
        let digits = OnlineList::validate(&ListEntry { digits: digits.into(), kind: EntryKind::Prefix })?;
        let mut tx = self.inner.db.begin().await?;
        let removed = store::delete_online_entry(&mut tx, &digits).await?;
        tx.commit().await?;
        let mut list = read(&self.inner.online);
        list.remove(&digits);
        self.metrics().online_list_entries.set(list.len() as i64);
        write(&self.inner.online, list);
        Ok(removed)
    }

    // ------------------------------------------------------------ CN101425910A

    /// Configure the online-charging capacity.
    pub async fn set_capacity(&self, total: u64) -> Result<()> {
        let mut tx = self.inner.db.begin().await?;
        store::set_capacity(&mut tx, total).await?;
        tx.commit().await?;
        self.metrics().capacity_total.set(total as i64);
        Ok(())
    }

    /// A request to load `msisdn` into online charging, weighing `weight`.
    pub async fn load_subscriber(&self, msisdn: &str, weight: u64) -> Result<Admission> {
        let mut tx = self.inner.db.begin().await?;
        let (total, loaded, already) = store::lock_capacity(&mut tx, msisdn).await?;
        let admission = capacity::admit(total, loaded, already, weight);
        let outcome = match &admission {
            Admission::Admitted { loaded, .. } => {
                store::insert_loaded(&mut tx, msisdn, weight, self.now()).await?;
                tx.commit().await?;
                self.metrics().capacity_loaded.set(*loaded as i64);
                "admitted"
            }
            Admission::AlreadyLoaded { .. } => "already_loaded",
            Admission::Refused { .. } => "refused",
        };
        self.metrics().capacity_requests.get_or_create(&OutcomeLabel { outcome }).inc();
        Ok(admission)
    }

    /// Take `msisdn` out of online charging, freeing its capacity; whether it was loaded.
    pub async fn unload_subscriber(&self, msisdn: &str) -> Result<bool> {
        let mut tx = self.inner.db.begin().await?;
        let removed = store::delete_loaded(&mut tx, msisdn).await?;
        let (_, loaded, _) = store::lock_capacity(&mut tx, msisdn).await?;
        tx.commit().await?;
        self.metrics().capacity_loaded.set(loaded as i64);
        Ok(removed)
    }

    // ------------------------------------------------------------ CN102083042B

    /// Set the charging mode of (`subscriber` or `*`, `service_id`).
    pub async fn set_charging_mode(&self, subscriber: &str, service_id: u32, mode: ChargingMode) -> Result<()> {
        let mut modes = read(&self.inner.modes);
        modes.set(subscriber, service_id, mode)?;
        let mut tx = self.inner.db.begin().await?;
        store::put_charging_mode(&mut tx, subscriber, service_id, &mode).await?;
        tx.commit().await?;
        write(&self.inner.modes, modes);
        Ok(())
    }

    /// Split a data usage record by service, rate each part in the mode its (subscriber,
    /// service) pair selects, and charge it, as far as the credit limit allows. A record is
    /// charged once: sent again, its stored rating is returned.
    pub async fn rate_data_record(&self, record: &DataUsageRecord) -> Result<DataRating> {
        let now = self.now();
        let mut held = self.hold(&record.subscriber).await?;
        let before = held.account().clone();
        let mut tx = self.inner.db.begin().await?;
        if let Some(stored) = store::data_record_result(&mut tx, &record.record_id).await? {
            held.keep();
            return serde_json::from_str(&stored).map_err(|e| StoreError::Corrupt(e.to_string()).into());
        }
        let mut account = before.clone();
        let modes = read(&self.inner.modes);
        let mut entries: Vec<Entry> = account.expire(now)?;
        let mut rating = DataRating {
            record_id: record.record_id.clone(),
            subscriber: record.subscriber.clone(),
            lines: Vec::new(),
            rated: Money::ZERO,
            charged: Money::ZERO,
        };
        for sub in data_charging::split(record) {
            let mode = modes.lookup(&record.subscriber, sub.service_id)?;
            let flat_paid = matches!(mode, ChargingMode::Flat { .. })
                && !store::claim_flat_fee(
                    &mut tx,
                    &record.subscriber,
                    sub.service_id,
                    data_charging::flat_day(record.start),
                )
                .await?;
            let rated = data_charging::rate(mode, &sub, flat_paid)?;
            let (charged, e) = account.debit_up_to(rated, now)?;
            entries.extend(e);
            rating.rated.0 += rated.0;
            rating.charged.0 += charged.0;
            rating.lines.push(SubRecordCharge {
                service_id: sub.service_id,
                mode,
                octets: sub.octets,
                duration_s: sub.duration_s,
                events: sub.events,
                rated,
                charged,
            });
        }
        let result = serde_json::to_string(&rating).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store::save_account(&mut tx, &before, &account).await?;
        store::post(&mut tx, &format!("data:{}", record.record_id), "data_record", &entries, now).await?;
        store::insert_data_record(&mut tx, &record.record_id, &record.subscriber, &result, now).await?;
        tx.commit().await?;
        held.set(account);
        for line in &rating.lines {
            self.metrics().data_subrecords.get_or_create(&ModeLabel { mode: line.mode.name() }).inc();
        }
        self.metrics().charged.inc_by(rating.charged.0.max(0) as u64);
        Ok(rating)
    }

    // ------------------------------------------------------------ CN102083044A

    /// A partial CDR of a call in progress: rated and charged on arrival, with the decision
    /// whether the call may go on. Once a call's partials are all in (the last one flagged),
    /// they are merged, the complete CDR is rated formally, and the balance is corrected by
    /// the difference, in the same transaction. A partial sent again changes nothing and
    /// gets its decision back.
    pub async fn partial_cdr(&self, p: &PartialCdr) -> Result<PartialOutcome> {
        let now = self.now();
        let mut held = self.hold(&p.caller).await?;
        let before = held.account().clone();
        let mut tx = self.inner.db.begin().await?;
        if let Some(d) = store::partial_decision(&mut tx, &p.call_id, p.seq).await? {
            held.keep();
            let decision = serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let call = match store::call_result(&mut tx, &p.call_id).await? {
                Some(c) => Some(serde_json::from_str(&c).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                None => None,
            };
            return Ok(PartialOutcome { decision, call });
        }
        let mut account = before.clone();
        let tariffs = self.tariffs();
        let (decision, entry) = partial_cdr::on_partial(&mut account, &tariffs, p, now)?;
        let charged = match decision {
            PartialDecision::Continue { charged } | PartialDecision::CutOff { charged, .. } => charged,
        };
        let body = serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let decision_json = serde_json::to_string(&decision).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store::post(&mut tx, &format!("partial:{}:{}", p.call_id, p.seq), "partial_cdr", entry.as_slice(), now).await?;
        store::insert_partial(&mut tx, &p.call_id, p.seq, &body, &decision_json, charged, now).await?;
        let call = self.finish_call(&mut tx, &mut account, &tariffs, &p.call_id, now).await?;
        store::save_account(&mut tx, &before, &account).await?;
        tx.commit().await?;
        held.set(account);
        let outcome = if matches!(decision, PartialDecision::Continue { .. }) { "continue" } else { "cut_off" };
        self.metrics().partial_cdrs.get_or_create(&OutcomeLabel { outcome }).inc();
        self.metrics().charged.inc_by(charged.0.max(0) as u64);
        if let Some(c) = &call {
            let outcome = match c.applied.0.signum() {
                1 => "charge",
                -1 => "refund",
                _ => "none",
            };
            self.metrics().call_corrections.get_or_create(&OutcomeLabel { outcome }).inc();
        }
        Ok(PartialOutcome { decision, call })
    }

    /// If all of `call_id`'s partials are in, merge, rate formally and correct.
    async fn finish_call(
        &self,
        tx: &mut Connection,
        account: &mut Account,
        tariffs: &TariffTable,
        call_id: &str,
        now: Millis,
    ) -> Result<Option<CallResult>> {
        let (bodies, provisional) = store::partials(tx, call_id).await?;
        let parts = bodies
            .iter()
            .map(|b| serde_json::from_str::<PartialCdr>(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let complete = match partial_cdr::merge(&parts) {
            Ok(c) => c,
            Err(MergeError::Missing(_) | MergeError::NotEnded) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let correction = Correction { provisional, formal: partial_cdr::formal_charge(tariffs, &complete)? };
        let (applied, entry) = correction.apply(account, now)?;
        let result = CallResult { complete, correction, applied };
        let json = serde_json::to_string(&result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store::post(tx, &format!("call:{call_id}"), "call_correction", entry.as_slice(), now).await?;
        store::insert_call(tx, call_id, account.id, &json, now).await?;
        Ok(Some(result))
    }
}
