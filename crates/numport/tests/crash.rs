//! `kill -9` of the clearinghouse while ports are in flight.
//!
//! A clearinghouse and three operator nodes run as real processes on loopback. 150 handsets
//! port, each the way `numport bench porting` does: the port-out authorisation by SMS to its
//! donor node's service number over the air interface, and the port-in request to its
//! recipient node. The first half arrive spread out, so
//! that ports complete; the second half arrive in a burst faster than any build settles them.
//! While orders of the burst are open, the clearinghouse is killed with SIGKILL, then restarted
//! on the same database and address. Handsets whose request failed retry the very same request
//! (same nonce), as a handset would.
//!
//! Afterwards (bounded waits):
//! - every port-in the recipient node acknowledged (2xx) has its order in the database;
//! - every order is terminal, and completed (all the information for completing is there, so
//!   an order ending any other way means a step's message was lost or stuck);
//! - the ledger is sound and the operators hold exactly their initial funding in total;
//! - each completed order has exactly one compensation journal, and its number is routed to
//!   the recipient;
//! - the routing change log is gap-free (seq 1..=n) with one change per completed order;
//! - the operator nodes saw the outcome (donor: ported out; recipient: active subscriber), so
//!   no message to them was lost either.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearinghouse::ClearinghouseConfig;
use clearinghouse::config::DispatcherConfig;
use clearinghouse::store::{ledger, operators, orders, routing};
use clearinghouse_api::model::{Order, PortingRequest};
use numport::cluster::{Cluster, ClusterSpec, INITIAL_FUNDS, OPERATORS, sim_of, subscriber_number, terminal_key};
use numport_core::porting::OrderState;
use numport_core::proof::{Nonce, PinStretch};
use numport_core::{Clock, Msisdn, SystemClock};
use numport_db::sql;
use operator::{OperatorStore, PortOutText, SubscriberStatus};

const PORTS: usize = 150;
/// The first half of the handsets start `STAGGER` apart, slower than ports complete.
const STAGGER: Duration = Duration::from_millis(6);
/// The second half start `BURST_STAGGER` apart from `BURST_AT`: a thousand a second, more than
/// the cluster settles, so orders pile up open.
const BURST_AT: Duration = Duration::from_millis(450);
const BURST_STAGGER: Duration = Duration::from_millis(1);
/// The kill comes once at least `KILL_OPEN` orders are open, the burst has begun and ports have
/// completed; at `KILL_BY` at the latest, while a third of the burst has yet to start (and
/// will meet the dead clearinghouse).
const KILL_OPEN: i64 = 3;
const KILL_BY: Duration = Duration::from_millis(500);

/// When handset `i` starts, after the first.
fn start_of(i: usize) -> Duration {
    match i.checked_sub(PORTS / 2) {
        None => STAGGER * i as u32,
        Some(j) => BURST_AT + BURST_STAGGER * j as u32,
    }
}

/// One handset's port, with the request it sends (and re-sends unchanged).
struct Handset {
    msisdn: Msisdn,
    donor: usize,
    recipient: usize,
    auth: PortOutText,
    req: PortingRequest,
}

/// What a handset saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The order of the first 2xx answer to the port-in.
    acknowledged: Option<Order>,
    /// Port-in attempts, and the failed ones' answers.
    attempts: usize,
    failures: Vec<String>,
}

fn handsets() -> Vec<Handset> {
    let expiry = SystemClock.now_ms() + 300_000;
    (0..PORTS)
        .map(|i| {
            let donor = i % 3;
            let recipient = (donor + 1) % 3;
            let msisdn = subscriber_number(OPERATORS[donor].2, i / 3);
            let key = terminal_key(&msisdn, PinStretch::FAST).expect("port key");
            let nonce = Nonce(rand::random());
            let to: numport_core::OperatorName = OPERATORS[recipient].0.parse().expect("operator name");
            let auth = PortOutText { recipient: to.clone(), nonce, expiry, msisdn: None };
            let req = PortingRequest {
                msisdn: msisdn.clone(),
                nonce: nonce.to_hex(),
                expiry,
                proof: key.prove(&nonce, &msisdn, &to, expiry).to_hex(),
            };
            Handset { msisdn, donor, recipient, auth, req }
        })
        .collect()
}

/// Port from the handset, starting after `delay`; on failure retry the same requests until
/// acknowledged or the retry budget runs out.
async fn port(http: reqwest::Client, nodes: Arc<Nodes>, h: Arc<Handset>, delay: Duration) -> Seen {
    tokio::time::sleep(delay).await;
    let mut seen = Seen::default();
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        seen.attempts += 1;
        let to_recipient =
            http.post(format!("{}/v1/self-service/port-in", nodes.http[h.recipient])).json(&h.req).send();
        let (_, r) = tokio::join!(authorise(nodes.air[h.donor], &h), to_recipient);
        match r {
            Ok(resp) if resp.status().is_success() => match resp.json::<Order>().await {
                Ok(order) => {
                    seen.acknowledged = Some(order);
                    return seen;
                }
                Err(e) => seen.failures.push(format!("unreadable 2xx answer: {e}")),
            },
            Ok(resp) => {
                let status = resp.status();
                seen.failures.push(format!("{status} {}", resp.text().await.unwrap_or_default()));
            }
            Err(e) => seen.failures.push(format!("transport: {e}")),
        }
        if Instant::now() > give_up {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn head(db: &numport_db::Db) -> i64 {
    let mut conn = db.acquire().await.expect("connection");
    routing::head(&mut conn).await.expect("feed head")
}

/// Everything the database says about an order, for a failure report.
async fn evidence(cluster: &Cluster, order_id: i64) -> String {
    let mut conn = cluster.ch_db.acquire().await.expect("connection");
    let mut out = String::new();
    let order = orders::get(&mut conn, order_id).await.ok().flatten();
    out.push_str(&format!("order {order_id}: {order:?}\n"));
    let rows: Vec<(i64, i64, String, Option<i64>)> =
        sql::query_as("SELECT id, operator_id, kind, delivered_at FROM messages WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let tries: Vec<(i64, i64, Option<String>)> =
        sql::query_as("SELECT attempts, next_attempt_at, last_error FROM messages WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for ((id, operator, kind, delivered_at), (attempts, next_attempt_at, last_error)) in rows.iter().zip(&tries) {
        out.push_str(&format!(
            "  message {id} to operator {operator} {kind}: delivered_at {delivered_at:?}, attempts {attempts}, next_attempt_at {next_attempt_at}, last_error {last_error:?}\n",
        ));
    }
    for e in clearinghouse::store::audit::for_order(&mut conn, order_id).await.unwrap_or_default() {
        out.push_str(&format!("  audit {} {} {:?} -> {:?} {}\n", e.at, e.actor, e.from_state, e.to_state, e.detail));
    }
    for op in &cluster.ops {
        let log = std::fs::read_to_string(cluster.dir.join(format!("operator-{}.log", op.name))).unwrap_or_default();
        let needle = format!("order_id={order_id}");
        for line in log.lines().filter(|l| l.contains(&needle)) {
            out.push_str(&format!("  {} log: {line}\n", op.name));
        }
    }
    out
}

#[test]
fn clearinghouse_killed_while_ports_are_in_flight() {
    // SAFETY: set before any other thread of this test binary exists.
    unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let tmp = tempfile::tempdir().expect("temp dir");
    let ok = rt.block_on(scenario(tmp.path()));
    if !ok {
        let kept = tmp.keep();
        panic!("crash test failed; databases and logs kept in {}", kept.display());
    }
}

/// What failed, printed as it is found.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn fail(&mut self, what: String) {
        eprintln!("FAIL: {what}");
        self.0.push(what);
    }
}

/// Runs the scenario; prints what failed and returns false if anything did.
async fn scenario(tmp: &std::path::Path) -> bool {
    let started = Instant::now();
    let mut f = Failures::default();
    let mut cluster = start_cluster(tmp).await;
    let handsets: Vec<Arc<Handset>> = handsets().into_iter().map(Arc::new).collect();
    let fired = Instant::now();
    let tasks = fire(&cluster, &handsets);
    kill_mid_burst(&mut cluster, fired, &mut f).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart_clearinghouse().await.expect("restart the clearinghouse");
    eprintln!("clearinghouse restarted after {:?}", started.elapsed());

    let mut seen: Vec<Seen> = Vec::new();
    for t in tasks {
        seen.push(t.await.expect("handset task"));
    }
    check_handsets(&handsets, &seen, started, &mut f);
    wait_terminal(&cluster, started).await;
    let orders = check_orders_completed(&cluster, &mut f).await;
    let (op_ids, order_of) = check_acknowledged(&cluster, &handsets, &seen, &mut f).await;
    let completed = check_money(&cluster, &op_ids, &mut f).await;
    let changes = check_change_log(&cluster, &completed, &mut f).await;
    check_operators_saw(&cluster, &handsets, &order_of, &mut f).await;
    eprintln!(
        "checked after {:?}: {orders} orders, {} completed, {changes} routing changes",
        started.elapsed(),
        completed.len(),
    );
    cluster.stop().await;
    f.0.is_empty()
}

/// The cluster, its clearinghouse retrying undelivered messages quickly.
async fn start_cluster(tmp: &std::path::Path) -> Cluster {
    let config = ClearinghouseConfig {
        dispatcher: DispatcherConfig {
            lease_ms: 1_000,
            base_backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..DispatcherConfig::default()
        },
        ..ClearinghouseConfig::default()
    };
    Cluster::start(ClusterSpec { clearinghouse: config, ..ClusterSpec::for_tests(tmp.join("cluster"), PORTS / 3) })
        .await
        .expect("cluster starts")
}

/// The operator nodes' HTTP APIs and air interfaces, in [`OPERATORS`] order.
struct Nodes {
    http: Vec<String>,
    air: Vec<std::net::SocketAddr>,
}

/// The handset's authorisation by SMS to its donor's service number; its outcome does not
/// matter here (the donor deposits when the clearinghouse asks, too). Bounded like the HTTP
/// requests, so that a handset never waits on it for good.
async fn authorise(air: std::net::SocketAddr, h: &Handset) {
    let (imsi, k_sim) = sim_of(&h.msisdn);
    let attempt = async {
        let Ok(mut s) = tokio::net::TcpStream::connect(air).await else { return };
        if let Ok(Ok(_)) = operator::air::attach_terminal(&mut s, &imsi, &k_sim).await {
            let _ =
                operator::air::send_authorisation(&mut s, operator::config::DEFAULT_SERVICE_NUMBER, &h.auth, 1).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), attempt).await;
}

/// Starts every handset's port, each at its [`start_of`].
fn fire(cluster: &Cluster, handsets: &[Arc<Handset>]) -> Vec<tokio::task::JoinHandle<Seen>> {
    let nodes = Arc::new(Nodes {
        http: cluster.ops.iter().map(|o| o.proc.url()).collect(),
        air: cluster.ops.iter().map(|o| o.proc.air.expect("air interface")).collect(),
    });
    let http = cluster
        .http()
        .expect("the cluster's CA")
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    handsets
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (http, nodes, h) = (http.clone(), nodes.clone(), h.clone());
            tokio::spawn(port(http, nodes, h, start_of(i)))
        })
        .collect()
}

/// Kills the clearinghouse while orders of the burst are open, with more handsets to come
/// (handsets started at `fired`), and checks that something was caught mid-way. Counting open
/// orders is a read on the test's own connection; the kill follows at once.
async fn kill_mid_burst(cluster: &mut Cluster, fired: Instant, f: &mut Failures) {
    loop {
        let mut conn = cluster.ch_db.read().await.expect("connection");
        let open = orders::count_open(&mut conn).await.expect("count open");
        let completed = routing::head(&mut conn).await.expect("feed head");
        drop(conn);
        let since = fired.elapsed();
        if since >= KILL_BY || since >= BURST_AT && open >= KILL_OPEN && completed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cluster.ch.kill_hard().await.expect("kill -9 the clearinghouse");
    let at_kill = head(&cluster.ch_db).await;
    let (open_at_kill, undelivered_at_kill) = {
        let mut conn = cluster.ch_db.acquire().await.expect("connection");
        let open = orders::count_open(&mut conn).await.expect("count open");
        let undelivered = clearinghouse::store::outbox::pending_count(&mut conn).await.expect("pending");
        (open, undelivered)
    };
    eprintln!(
        "clearinghouse killed after {:?}: {at_kill} ports completed, {open_at_kill} orders open, {undelivered_at_kill} messages undelivered",
        fired.elapsed()
    );
    if open_at_kill == 0 {
        f.fail("no order was open at the kill; nothing was caught mid-way".into());
    }
    if at_kill >= PORTS as i64 {
        f.fail(format!("every port had completed before the kill ({at_kill}); nothing was in flight"));
    }
}

/// Every handset's port-in was acknowledged, and some needed a retry.
fn check_handsets(handsets: &[Arc<Handset>], seen: &[Seen], started: Instant, f: &mut Failures) {
    let acked = seen.iter().filter(|s| s.acknowledged.is_some()).count();
    let retried = seen.iter().filter(|s| s.attempts > 1).count();
    eprintln!("handsets done after {:?}: {acked} acknowledged, {retried} needed a retry", started.elapsed());
    if retried == 0 {
        f.fail("no handset met the dead clearinghouse; the kill came too late to test retries".into());
    }
    for (h, s) in handsets.iter().zip(seen) {
        if s.acknowledged.is_none() {
            f.fail(format!(
                "port-in of {} never acknowledged after {} attempts: {:?}",
                h.msisdn, s.attempts, s.failures
            ));
        }
    }
}

/// Waits (up to 60 s) until no order is open.
async fn wait_terminal(cluster: &Cluster, started: Instant) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = loop {
        let mut conn = cluster.ch_db.acquire().await.expect("connection");
        let open = orders::count_open(&mut conn).await.expect("count open");
        drop(conn);
        if open == 0 || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("orders terminal after {:?} ({open} still open)", started.elapsed());
}

/// Every order completed; returns how many orders there are.
async fn check_orders_completed(cluster: &Cluster, f: &mut Failures) -> usize {
    let mut conn = cluster.ch_db.acquire().await.expect("connection");
    let by_state = orders::count_by_state(&mut conn).await.expect("count by state");
    eprintln!("orders by state: {by_state:?}");
    let all: Vec<(i64, String)> =
        sql::query_as("SELECT id, state FROM porting_orders ORDER BY id").fetch_all(&mut conn).await.expect("orders");
    drop(conn);
    for (id, state) in &all {
        if state != OrderState::Completed.as_str() {
            f.fail(format!("order {id} ended {state}, not completed:\n{}", evidence(cluster, *id).await));
        }
    }
    all.len()
}

/// Acknowledged port-ins are in the database as answered, and no number has a second order.
/// Returns the operators' ids (in [`OPERATORS`] order) and each acknowledged number's order.
async fn check_acknowledged(
    cluster: &Cluster,
    handsets: &[Arc<Handset>],
    seen: &[Seen],
    f: &mut Failures,
) -> (Vec<i64>, HashMap<Msisdn, i64>) {
    let mut conn = cluster.ch_db.acquire().await.expect("connection");
    let mut op_ids = Vec::new();
    for (name, _, _) in OPERATORS {
        op_ids.push(operators::by_name(&mut conn, name).await.expect("operator").expect("registered").id);
    }
    let mut order_of: HashMap<Msisdn, i64> = HashMap::new();
    for (h, s) in handsets.iter().zip(seen) {
        let Some(ack) = &s.acknowledged else { continue };
        match orders::get(&mut conn, ack.id).await.expect("order") {
            Some(o) if o.msisdn == h.msisdn && o.recipient_id == op_ids[h.recipient] => {
                order_of.insert(h.msisdn.clone(), o.id);
            }
            other => f.fail(format!(
                "acknowledged order {} of {} is not in the database as answered: {other:?}",
                ack.id, h.msisdn
            )),
        }
    }
    let per_number: Vec<(String, i64)> =
        sql::query_as("SELECT msisdn, COUNT(*) AS n FROM porting_orders GROUP BY msisdn HAVING COUNT(*) > 1")
            .fetch_all(&mut conn)
            .await
            .expect("orders per number");
    if !per_number.is_empty() {
        f.fail(format!("numbers with more than one order (a retry opened a second one): {per_number:?}"));
    }
    (op_ids, order_of)
}

/// A completed order: id, number, recipient's id.
type Completed = (i64, String, i64);

/// The ledger is sound and the operators (`op_ids`) hold what was paid in; each completed
/// order has exactly one compensation journal and its number is routed to the recipient.
/// Returns the completed orders.
async fn check_money(cluster: &Cluster, op_ids: &[i64], f: &mut Failures) -> Vec<Completed> {
    let mut conn = cluster.ch_db.acquire().await.expect("connection");
    let check = ledger::check(&mut conn).await.expect("ledger check");
    if !check.is_sound() {
        f.fail(format!("ledger unsound: {check:?}"));
    }
    let mut total = 0;
    for id in op_ids {
        total += ledger::operator_account(&mut conn, *id).await.expect("account").1.0;
    }
    if total != 3 * INITIAL_FUNDS.0 {
        f.fail(format!("operators hold {total}, not the {} paid in", 3 * INITIAL_FUNDS.0));
    }
    let journals: BTreeMap<i64, i64> = sql::query_as::<(i64, i64)>(
        "SELECT order_id, COUNT(*) AS n FROM journals WHERE kind = 'compensation' GROUP BY order_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("journals")
    .into_iter()
    .collect();
    let completed: Vec<Completed> =
        sql::query_as("SELECT id, msisdn, recipient_id FROM porting_orders WHERE state = 'completed' ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .expect("completed orders");
    for (id, msisdn, recipient) in &completed {
        if journals.get(id) != Some(&1) {
            f.fail(format!("completed order {id} has {:?} compensation journals, not exactly one", journals.get(id)));
        }
        let m: Msisdn = msisdn.parse().expect("stored number");
        let routed = routing::ported_to(&mut conn, &m).await.expect("ported_to");
        if routed != Some(*recipient) {
            f.fail(format!("{msisdn} (order {id}) routed to {routed:?}, not to its recipient {recipient}"));
        }
    }
    if let Some((id, n)) = journals.iter().find(|(id, _)| !completed.iter().any(|(c, _, _)| c == *id)) {
        f.fail(format!("order {id} is not completed but has {n} compensation journals"));
    }
    completed
}

/// The routing change log is gap-free, with one change per completed order; returns its
/// length.
async fn check_change_log(cluster: &Cluster, completed: &[Completed], f: &mut Failures) -> usize {
    let mut conn = cluster.ch_db.acquire().await.expect("connection");
    let changes = routing::changes_after(&mut conn, 0, 10_000).await.expect("changes").changes;
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    if seqs != (1..=changes.len() as i64).collect::<Vec<_>>() {
        f.fail(format!("routing change log has gaps or disorder: {seqs:?}"));
    }
    if changes.len() != completed.len() {
        f.fail(format!("{} routing changes for {} completed orders", changes.len(), completed.len()));
    }
    let mut logged: Vec<i64> = changes.iter().filter_map(|c| c.order_id).collect();
    logged.sort_unstable();
    if logged != completed.iter().map(|(id, _, _)| *id).collect::<Vec<_>>() {
        f.fail("routing change log does not name exactly the completed orders".into());
    }
    changes.len()
}

/// The operators saw every outcome (donor: ported out; recipient: active subscriber), within
/// 20 s: no message to them was lost across the crash.
async fn check_operators_saw(
    cluster: &Cluster,
    handsets: &[Arc<Handset>],
    order_of: &HashMap<Msisdn, i64>,
    f: &mut Failures,
) {
    let mut stores = Vec::new();
    for op in &cluster.ops {
        stores.push(OperatorStore::connect(&op.db_url).await.expect("operator database"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut behind = Vec::new();
    loop {
        behind.clear();
        for h in handsets {
            let out = stores[h.donor].subscriber(&h.msisdn).await.expect("donor's subscriber").map(|s| s.status);
            let inn =
                stores[h.recipient].subscriber(&h.msisdn).await.expect("recipient's subscriber").map(|s| s.status);
            if out != Some(SubscriberStatus::PortedOut) || inn != Some(SubscriberStatus::Active) {
                behind.push((h.msisdn.clone(), out, inn));
            }
        }
        if behind.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (msisdn, out, inn) in &behind {
        let detail = match order_of.get(msisdn) {
            Some(&id) => evidence(cluster, id).await,
            None => String::new(),
        };
        f.fail(format!(
            "operators did not record the port of {msisdn} (donor: {out:?}, recipient: {inn:?}):\n{detail}"
        ));
    }
    for s in stores {
        s.close().await;
    }
}
