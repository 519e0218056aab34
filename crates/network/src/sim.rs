//! The simulator's driver: places the calls and data sessions [`crate::traffic`] draws, at the
//! configured rates, and runs each against the OCS as [`crate::charging`] says: over Gy
//! through one [`diameter::peer::Client`] (watchdog, failover to the next OCS address), on
//! partial CDRs and data usage records through the OCS's HTTP API ([`crate::ocs_api`]), and
//! writes every call and session to the CDR files ([`crate::cdr_file`]).
//!
//! Time is simulated: it runs `speedup` times faster than the wall clock from the moment the
//! run starts, so a 40-minute call lasts 4 s at `speedup = 600`. Event-Timestamp and the
//! CDRs' times are simulated times; the OCS rates at Event-Timestamp.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use diameter::base::Identity;
use diameter::cc::{self, CcRequestType, Cca, Ccr, Mscc, PsInformation, ServiceInformation, ServiceUnit};
use diameter::peer::{Client, ClientConfig, ClientError};
use ocs::data_charging::{DataUsageRecord, UsageContainer};
use ocs::online_list::{ChargingDecision, OnlineList};
use ocs::partial_cdr::{PartialCdr, PartialDecision};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cdr::{Cause, Cdr, Charging, RecordType, ServiceVolume};
use crate::cdr_file::{CdrFileError, CdrSink, CdrWriter, Rotation};
use crate::charging::{DataSession, Grant, GyCall, Next, PartialCall, Report};
use crate::ocs_api::{ApiError, OcsApi};
use crate::traffic::{CallPlan, DataPlan, Profile, Traffic};

/// The Rating-Group voice calls are reported under.
pub const VOICE_RATING_GROUP: u32 = 1;
/// The access point name of data sessions.
pub const APN: &str = "internet";

/// A run's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The switching centre's and gateway's Diameter identity (one node).
    pub identity: Identity,
    pub destination_realm: String,
    /// OCS Diameter addresses, in order of preference.
    pub ocs: Vec<SocketAddr>,
    pub api: OcsApi,
    pub profile: Profile,
    pub seed: u64,
    pub calls_per_s: f64,
    pub data_per_s: f64,
    /// How long new calls and sessions are started (wall clock).
    pub duration: Duration,
    /// How long calls still in progress are waited for after that, before they are dropped.
    pub drain: Duration,
    pub speedup: f64,
    /// Requested-Service-Unit of a call, seconds.
    pub quota_s: u32,
    /// Requested-Service-Unit of each data Rating-Group, octets.
    pub quota_octets: u64,
    /// A partial CDR every so many seconds of a call.
    pub partial_every_s: u64,
    /// How often the online-charging list is fetched again.
    pub list_refresh: Duration,
    pub cdr_dir: PathBuf,
    pub rotation: Rotation,
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no OCS at {0:?} completed the capabilities exchange")]
    NoOcs(Vec<SocketAddr>),
    #[error("fetching the online-charging list: {0}")]
    OnlineList(ApiError),
    #[error(transparent)]
    CdrFile(#[from] CdrFileError),
    #[error("the online-charging list from the OCS is invalid: {0}")]
    BadList(String),
    #[error("a call or session task outlived the run")]
    StillRunning,
}

/// Calls by how they were charged and how they ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallCounts {
    pub placed: u64,
    pub online: u64,
    pub partial_cdr: u64,
    pub offline: u64,
    pub ended: BTreeMap<&'static str, u64>,
    /// Seconds used, over all calls.
    pub seconds: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub calls: CallCounts,
    pub data_sessions: u64,
    pub data_ended: BTreeMap<&'static str, u64>,
    /// CCRs by CC-Request-Type.
    pub ccr: BTreeMap<&'static str, u64>,
    /// Answers by Result-Code.
    pub answers: BTreeMap<u32, u64>,
    /// CCRs that got no answer (timeout across failovers).
    pub ccr_failed: u64,
    pub partial_cdrs: BTreeMap<&'static str, u64>,
    pub data_records: BTreeMap<&'static str, u64>,
    /// Times the Gy connection moved to another OCS address.
    pub failovers: u64,
    /// The OCS addresses the Gy connection was open to, in order.
    pub connected_to: Vec<String>,
    /// Calls and sessions still in progress when the drain time ran out (no CDR).
    pub dropped: u64,
    pub cdr_records: u64,
    pub cdr_files: Vec<PathBuf>,
}

struct Ctx {
    config: SimConfig,
    client: Client,
    list: RwLock<OnlineList>,
    cdrs: CdrSink,
    summary: Mutex<Summary>,
    /// Wall clock and simulated time (ms) at the start.
    started: Instant,
    sim_epoch_ms: i64,
    /// Tells this run's Session-Ids apart from an earlier run's.
    run: u32,
}

impl Ctx {
    fn count(&self, f: impl FnOnce(&mut Summary)) {
        f(&mut self.summary.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn sim_now_ms(&self) -> i64 {
        self.sim_epoch_ms + (self.started.elapsed().as_secs_f64() * self.config.speedup * 1000.0) as i64
    }

    /// Lets `seconds` of simulated time pass.
    async fn pass(&self, seconds: u64) {
        if seconds > 0 {
            tokio::time::sleep(Duration::from_secs_f64(seconds as f64 / self.config.speedup)).await;
        }
    }

    fn node(&self) -> &str {
        &self.config.identity.origin_host
    }

    async fn ask(&self, ccr: Ccr) -> Result<Cca, ClientError> {
        let kind = match ccr.request_type {
            CcRequestType::Initial => "initial",
            CcRequestType::Update => "update",
            CcRequestType::Termination => "termination",
            CcRequestType::Event => "event",
        };
        self.count(|s| *s.ccr.entry(kind).or_default() += 1);
        let answer = self.client.credit_control(ccr).await;
        match &answer {
            Ok(cca) => self.count(|s| *s.answers.entry(cca.result_code).or_default() += 1),
            Err(_) => self.count(|s| s.ccr_failed += 1),
        }
        answer
    }

    fn ccr(&self, session_id: &str, subscriber: &str, context: &str, kind: CcRequestType, number: u32) -> Ccr {
        Ccr {
            origin_state_id: Some(self.config.identity.origin_state_id),
            event_timestamp: Some(cc::ntp_seconds((self.sim_now_ms() / 1000) as u64)),
            termination_cause: (kind == CcRequestType::Termination).then_some(1),
            ..Ccr::new(session_id, context, kind, number, subscriber)
        }
    }

    fn record(&self, cdr: Cdr) {
        let (kind, cause, seconds) = (cdr.record_type, cdr.cause, cdr.duration_s);
        match self.cdrs.send(cdr) {
            Ok(()) => self.count(|s| {
                s.cdr_records += 1;
                match kind {
                    RecordType::Voice => {
                        *s.calls.ended.entry(cause.as_str()).or_default() += 1;
                        s.calls.seconds += seconds;
                    }
                    RecordType::Data => *s.data_ended.entry(cause.as_str()).or_default() += 1,
                }
            }),
            Err(e) => tracing::error!(error = %e, "CDR not written"),
        }
    }
}

fn seconds(s: u64) -> ServiceUnit {
    ServiceUnit { time: Some(u32::try_from(s).unwrap_or(u32::MAX)), ..ServiceUnit::default() }
}

/// A voice call over Gy.
async fn gy_call(ctx: &Ctx, plan: &CallPlan) -> Cdr {
    let start_ms = ctx.sim_now_ms();
    let session = format!("{};{};{};v", ctx.node(), ctx.run, plan.n);
    let mut call = GyCall::new(plan.duration_s);
    let mut last_code = None;
    let mut kind = CcRequestType::Initial;
    let (mut used, mut request) = (None, Some(ctx.config.quota_s as u64));
    let cause = loop {
        let mut ccr = ctx.ccr(&session, &plan.caller, cc::IMS_CONTEXT, kind, call.next_number());
        ccr.service_information = Some(ServiceInformation::ims_call(&plan.caller, &plan.called));
        ccr.mscc = vec![Mscc {
            rating_group: Some(VOICE_RATING_GROUP),
            requested: request.map(seconds),
            used: used.map(seconds).into_iter().collect(),
            ..Mscc::default()
        }];
        let answer = match ctx.ask(ccr).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%session, error = %e, "CCR unanswered");
                break call.on_failure(used.unwrap_or(0));
            }
        };
        last_code = Some(answer.result_code);
        if kind == CcRequestType::Termination {
            if answer.result_code != crate::charging::SUCCESS {
                call.on_failure(used.unwrap_or(0));
            }
            break call.cause.unwrap_or(Cause::Normal);
        }
        match call.on_grant(Grant::in_answer(&answer, VOICE_RATING_GROUP), kind == CcRequestType::Initial) {
            Next::Update { wait_s, used: u } => {
                ctx.pass(wait_s).await;
                (kind, used, request) = (CcRequestType::Update, Some(u), Some(ctx.config.quota_s as u64));
            }
            Next::Terminate { wait_s, used: u, .. } => {
                ctx.pass(wait_s).await;
                (kind, used, request) = (CcRequestType::Termination, Some(u), None);
            }
            Next::Released { cause } => break cause,
        }
    };
    voice_cdr(ctx, plan, start_ms, call.used_s, Charging::Online, cause, session, 0, last_code)
}

/// A voice call on partial CDRs (CN102083044A).
async fn partial_call(ctx: &Ctx, plan: &CallPlan) -> Cdr {
    let start_ms = ctx.sim_now_ms();
    let call_id = format!("{}-{}-{}", ctx.node(), ctx.run, plan.n);
    let mut call = PartialCall::new(plan.duration_s, ctx.config.partial_every_s);
    let partial = |seq, offset_s: u64, duration_s, last| PartialCdr {
        call_id: call_id.clone(),
        seq,
        caller: plan.caller.clone(),
        called: plan.called.clone(),
        start: start_ms + offset_s as i64 * 1000,
        duration_s,
        last,
    };
    let mut failed = false;
    'call: while let Some(p) = call.next_partial() {
        ctx.pass(p.duration_s).await;
        let mut next = Some(partial(p.seq, p.offset_s, p.duration_s, p.last));
        while let Some(cdr) = next.take() {
            match ctx.config.api.partial_cdr(&cdr).await {
                Ok(outcome) => {
                    let go_on = matches!(outcome.decision, PartialDecision::Continue { .. });
                    ctx.count(|s| *s.partial_cdrs.entry(if go_on { "continue" } else { "cut_off" }).or_default() += 1);
                    next = call.on_decision(go_on).map(|c| partial(c.seq, c.offset_s, c.duration_s, c.last));
                }
                Err(e) => {
                    tracing::warn!(%call_id, error = %e, "partial CDR not accepted");
                    ctx.count(|s| *s.partial_cdrs.entry("failed").or_default() += 1);
                    failed = true;
                    break 'call;
                }
            }
        }
    }
    let cause = if failed { Cause::Failure } else { call.cause.unwrap_or(Cause::Normal) };
    voice_cdr(ctx, plan, start_ms, call.elapsed_s, Charging::PartialCdr, cause, call_id, call.sent, None)
}

/// An offline call: the CDR file is its only record.
async fn offline_call(ctx: &Ctx, plan: &CallPlan) -> Cdr {
    let start_ms = ctx.sim_now_ms();
    ctx.pass(plan.duration_s).await;
    voice_cdr(ctx, plan, start_ms, plan.duration_s, Charging::Offline, Cause::Normal, String::new(), 0, None)
}

#[allow(clippy::too_many_arguments)]
fn voice_cdr(
    ctx: &Ctx,
    plan: &CallPlan,
    start_ms: i64,
    duration_s: u64,
    charging: Charging,
    cause: Cause,
    session_id: String,
    partials: u32,
    result_code: Option<u32>,
) -> Cdr {
    Cdr {
        record_type: RecordType::Voice,
        record_id: format!("{}-{}-v{}", ctx.node(), ctx.run, plan.n),
        served: plan.caller.clone(),
        other_party: plan.called.clone(),
        start_ms,
        duration_s,
        charging,
        cause,
        session_id,
        partials,
        result_code,
        services: Vec::new(),
    }
}

async fn call(ctx: Arc<Ctx>, plan: CallPlan) {
    let decision = ctx.list.read().unwrap_or_else(|p| p.into_inner()).decide(&plan.called);
    let cdr = match decision {
        ChargingDecision::Offline => {
            ctx.count(|s| s.calls.offline += 1);
            offline_call(&ctx, &plan).await
        }
        ChargingDecision::Online { .. } if plan.on_partial_cdrs => {
            ctx.count(|s| s.calls.partial_cdr += 1);
            partial_call(&ctx, &plan).await
        }
        ChargingDecision::Online { .. } => {
            ctx.count(|s| s.calls.online += 1);
            gy_call(&ctx, &plan).await
        }
    };
    ctx.record(cdr);
}

fn octets(up: u64, down: u64) -> ServiceUnit {
    ServiceUnit {
        total_octets: Some(up + down),
        input_octets: Some(up),
        output_octets: Some(down),
        ..ServiceUnit::default()
    }
}

/// A data session over Gy, then its usage record (CN102083042B).
async fn data_session(ctx: Arc<Ctx>, plan: DataPlan) {
    let start_ms = ctx.sim_now_ms();
    let session_id = format!("{};{};{};d", ctx.node(), ctx.run, plan.n);
    let mut s = DataSession::new(
        plan.uses.iter().map(|u| (u.service.rating_group, u.service.service_id, u.uplink_octets, u.downlink_octets)),
    );
    let quota = ctx.config.quota_octets;
    let mscc = |rg, sid, request: bool, report: Option<&Report>| Mscc {
        rating_group: Some(rg),
        service_identifiers: vec![sid],
        requested: request.then(|| ServiceUnit { total_octets: Some(quota), ..ServiceUnit::default() }),
        used: report.map(|r| octets(r.used_up, r.used_down)).into_iter().collect(),
        ..Mscc::default()
    };
    let mut requests: Vec<Mscc> = s.flows.iter().map(|f| mscc(f.rating_group, f.service_id, true, None)).collect();
    let mut kind = CcRequestType::Initial;
    let mut last_code = None;
    let mut failed = false;
    loop {
        let mut ccr = ctx.ccr(&session_id, &plan.subscriber, cc::PS_CONTEXT, kind, s.next_number());
        ccr.mscc = std::mem::take(&mut requests);
        ccr.service_information = Some(ServiceInformation {
            ps: Some(PsInformation { called_station_id: Some(APN.into()), ..PsInformation::default() }),
            ims: None,
        });
        let answer = match ctx.ask(ccr).await {
            Ok(a) => a,
            Err(_) => {
                failed = true;
                break;
            }
        };
        last_code = Some(answer.result_code);
        if kind == CcRequestType::Termination
            || (kind == CcRequestType::Initial && answer.result_code != crate::charging::SUCCESS)
        {
            break;
        }
        let before = s.progress();
        let (reports, done) = s.on_answer(&answer);
        let wait = (s.progress() - before) * plan.duration_s as f64;
        ctx.pass(wait.round() as u64).await;
        requests = reports.iter().map(|r| mscc(r.rating_group, r.service_id, r.request && !done, Some(r))).collect();
        kind = if done { CcRequestType::Termination } else { CcRequestType::Update };
    }
    let duration_s = (s.progress() * plan.duration_s as f64).round() as u64;
    let services: Vec<ServiceVolume> = s
        .flows
        .iter()
        .filter(|f| f.used_up + f.used_down > 0)
        .map(|f| ServiceVolume {
            rating_group: f.rating_group,
            service_id: f.service_id,
            uplink_octets: f.used_up,
            downlink_octets: f.used_down,
        })
        .collect();
    let record_id = format!("{}-{}-d{}", ctx.node(), ctx.run, plan.n);
    if !services.is_empty() {
        let record = DataUsageRecord {
            record_id: record_id.clone(),
            subscriber: plan.subscriber.clone(),
            start: start_ms,
            containers: services
                .iter()
                .map(|v| UsageContainer {
                    service_id: v.service_id,
                    uplink_octets: v.uplink_octets,
                    downlink_octets: v.downlink_octets,
                    duration_s,
                    events: 0,
                })
                .collect(),
        };
        let outcome = match ctx.config.api.data_record(&record).await {
            Ok(_) => "rated",
            Err(ApiError::Refused { .. }) => "refused",
            Err(_) => "failed",
        };
        ctx.count(|s| *s.data_records.entry(outcome).or_default() += 1);
    }
    ctx.record(Cdr {
        record_type: RecordType::Data,
        record_id,
        served: plan.subscriber.clone(),
        other_party: APN.into(),
        start_ms,
        duration_s,
        charging: Charging::Online,
        cause: if failed { Cause::Failure } else { s.cause() },
        session_id,
        partials: 0,
        result_code: last_code,
        services,
    });
}

/// Fetches the online-charging list into `ctx` every `list_refresh`.
async fn refresh_list(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(ctx.config.list_refresh).await;
        match ctx.config.api.online_list().await.map(OnlineList::new) {
            Ok(Ok(list)) => *ctx.list.write().unwrap_or_else(|p| p.into_inner()) = list,
            Ok(Err(e)) => tracing::warn!(error = %e, "invalid online-charging list"),
            Err(e) => tracing::warn!(error = %e, "online-charging list not refreshed"),
        }
    }
}

/// Counts the Gy connection's moves from one OCS to another.
async fn watch_failovers(ctx: Arc<Ctx>) {
    let mut current = None;
    loop {
        if let Some(addr) = ctx.client.connected()
            && current != Some(addr)
        {
            ctx.count(|s| {
                if current.is_some() {
                    s.failovers += 1;
                }
                s.connected_to.push(addr.to_string());
            });
            current = Some(addr);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An interval of `1 / per_s`, or none for a rate of 0.
fn period(per_s: f64) -> Option<Duration> {
    (per_s > 0.0).then(|| Duration::from_secs_f64(1.0 / per_s))
}

/// Runs the network for `config.duration`, then waits up to `config.drain` for the calls and
/// sessions in progress, and returns what happened.
pub async fn run(config: SimConfig) -> Result<Summary, SimError> {
    let entries = config.api.online_list().await.map_err(SimError::OnlineList)?;
    let list = OnlineList::new(entries).map_err(|e| SimError::BadList(e.to_string()))?;
    let mut gy = ClientConfig::new(config.identity.clone(), &config.destination_realm, config.ocs.clone());
    gy.request_timeout = config.request_timeout;
    let client = Client::start(gy);
    if client.wait_open(Duration::from_secs(10)).await.is_none() {
        client.stop().await;
        return Err(SimError::NoOcs(config.ocs.clone()));
    }
    let cdrs = CdrSink::start(CdrWriter::new(&config.cdr_dir, &config.identity.origin_host, config.rotation)?);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ctx = Arc::new(Ctx {
        list: RwLock::new(list),
        client,
        cdrs,
        summary: Mutex::new(Summary::default()),
        started: Instant::now(),
        sim_epoch_ms: now.as_millis() as i64,
        run: now.as_secs() as u32,
        config,
    });
    let background = [tokio::spawn(refresh_list(ctx.clone())), tokio::spawn(watch_failovers(ctx.clone()))];
    let mut traffic = Traffic::new(ctx.config.profile.clone(), ctx.config.seed);
    let mut tasks = JoinSet::new();
    let start = tokio::time::Instant::now();
    let end = start + ctx.config.duration;
    let (call_every, data_every) = (period(ctx.config.calls_per_s), period(ctx.config.data_per_s));
    let (mut next_call, mut next_data) = (start, start);
    loop {
        let due = [call_every.map(|_| next_call), data_every.map(|_| next_data)].into_iter().flatten().min();
        let Some(due) = due.filter(|d| *d < end) else { break };
        tokio::time::sleep_until(due).await;
        if let Some(every) = call_every.filter(|_| next_call <= due) {
            let plan = traffic.next_call();
            ctx.count(|s| s.calls.placed += 1);
            tasks.spawn(call(ctx.clone(), plan));
            next_call += every;
        }
        if let Some(every) = data_every.filter(|_| next_data <= due) {
            let plan = traffic.next_data();
            ctx.count(|s| s.data_sessions += 1);
            tasks.spawn(data_session(ctx.clone(), plan));
            next_data += every;
        }
        while tasks.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(ctx.config.drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        let dropped = tasks.len() as u64;
        tasks.shutdown().await;
        ctx.count(|s| s.dropped = dropped);
    }
    for b in background {
        b.abort();
        let _ = b.await;
    }
    let ctx = Arc::try_unwrap(ctx).map_err(|_| SimError::StillRunning)?;
    ctx.client.stop().await;
    let mut summary = ctx.summary.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.cdr_files = ctx.cdrs.finish()?;
    Ok(summary)
}
