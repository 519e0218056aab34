//! The simulated elements over real sockets, and the dispatcher against them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use numport_core::{Msisdn, SystemClock};
use provisioning::dispatcher::{Dispatcher, DispatcherConfig, Journal, Outcome, Queued};
use provisioning::element::{ElementConfig, ElementServer};
use provisioning::{Action, Category, Element, Order, Origin, ProtectionState, Verb};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn element(config: ElementConfig, stop: &CancellationToken) -> ElementServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    ElementServer::spawn(config, listener, stop.clone()).unwrap()
}

struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(e: &ElementServer) -> Client {
        let (read, write) = TcpStream::connect(e.addr()).await.unwrap().into_split();
        Client { lines: BufReader::new(read).lines(), write }
    }

    /// Send `line`, return the next answer that is not a periodic report.
    async fn ask(&mut self, line: &str) -> String {
        self.write.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        loop {
            let l =
                tokio::time::timeout(Duration::from_secs(5), self.lines.next_line()).await.unwrap().unwrap().unwrap();
            if !l.starts_with("* LOAD") {
                return l;
            }
        }
    }
}

#[tokio::test]
async fn element_speaks_its_protocol_and_survives_garbage() {
    let stop = CancellationToken::new();
    let hlr = element(ElementConfig::new(Element::Hlr, 1_000), &stop).await;
    let mut c = Client::connect(&hlr).await;
    let first = tokio::time::timeout(Duration::from_secs(2), c.lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with("* LOAD depth=0 util=0.000 cap=1000"), "{first}");

    let ok = c.ask("1 CREATE 4791000001 imsi=242010000000001 services=voice").await;
    assert!(ok.starts_with("1 OK depth=") && ok.ends_with("cap=1000"), "{ok}");
    assert!(c.ask("2 BAR 4791000001").await.starts_with("2 OK "));
    assert!(hlr.subscriber(&"4791000001".parse().unwrap()).unwrap().barred);
    assert!(c.ask("3 SET 4791000002 plan=gold").await.starts_with("3 ERR unknown_subscriber "));
    assert!(c.ask("4 CREATE 4791000003").await.starts_with("4 ERR bad_command "), "an HLR record needs its IMSI");
    assert!(c.ask("5 DROP TABLE").await.starts_with("5 ERR bad_command "));
    assert!(c.ask("\u{0}\u{1}garbage").await.starts_with("0 ERR bad_command "));
    assert!(c.ask(&"9".repeat(10_000)).await.starts_with("0 ERR bad_command "));
    // Still in step after all that.
    assert!(c.ask("6 DELETE 4791000009").await.starts_with("6 OK "), "deleting an absent subscriber succeeds");
    let stats = c.ask("7 STATS").await;
    assert!(stats.starts_with("7 STATS received=5 violations=0 "), "{stats}");

    let smsc = element(ElementConfig::new(Element::Smsc, 1_000), &stop).await;
    let mut c = Client::connect(&smsc).await;
    assert!(c.ask("1 BAR 4791000001").await.starts_with("1 ERR unsupported "));
    stop.cancel();
}

#[tokio::test]
async fn element_counts_what_comes_beyond_its_capacity() {
    let stop = CancellationToken::new();
    // 100 commands/s, 50 ms of queue: room for 5 waiting.
    let hlr = element(ElementConfig { queue_ms: 50, ..ElementConfig::new(Element::Hlr, 100) }, &stop).await;
    let mut c = Client::connect(&hlr).await;
    let burst: String = (1..=20).map(|i| format!("{i} DELETE 4791000001\n")).collect();
    c.write.write_all(burst.as_bytes()).await.unwrap();
    let mut overloaded = 0;
    for _ in 0..20 {
        let l = loop {
            let l = c.lines.next_line().await.unwrap().unwrap();
            if !l.starts_with('*') {
                break l;
            }
        };
        overloaded += usize::from(l.contains(" ERR overloaded "));
    }
    assert_eq!(hlr.counts(), (20, overloaded as u64));
    assert!((14..=15).contains(&overloaded), "{overloaded} refused");
    stop.cancel();
}

/// Outcomes kept in memory, in the order recorded: the dispatcher's contract with its owner.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Outcome>>>);

impl Journal for Recorded {
    async fn record(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.0.lock().unwrap().extend_from_slice(outcomes);
        Ok(())
    }
}

impl Recorded {
    async fn wait_for(&self, n: usize) -> Vec<Outcome> {
        for _ in 0..3_000 {
            let got = self.0.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {} of {n} outcomes recorded", self.0.lock().unwrap().len());
    }
}

fn msisdn(i: u64) -> Msisdn {
    format!("47910{i:05}").parse().unwrap()
}

/// Commands for `orders`, numbered from `first`.
fn queued(first: i64, orders: &[Order]) -> Vec<Queued> {
    let mut id = first;
    let mut out = Vec::new();
    for o in orders {
        for command in o.commands() {
            out.push(Queued { id, category: o.category(), command });
            id += 1;
        }
    }
    out
}

async fn elements(capacity: u32, stop: &CancellationToken) -> (Vec<ElementServer>, DispatcherConfig) {
    let mut servers = Vec::new();
    let mut addrs = HashMap::new();
    for kind in Element::ALL {
        let e = element(ElementConfig { keep_log: true, ..ElementConfig::new(kind, capacity) }, stop).await;
        addrs.insert(kind, e.addr());
        servers.push(e);
    }
    (servers, DispatcherConfig::new(addrs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_goes_first_within_capacity() {
    let stop = CancellationToken::new();
    let (servers, config) = elements(2_000, &stop).await;
    servers[0].preload((0..1_500).map(msisdn));
    let journal = Recorded::default();
    let (d, _) = Dispatcher::start(config, journal.clone(), Arc::new(SystemClock), stop.clone());
    let bulk: Vec<Order> =
        (0..1_500).map(|i| Order { origin: Origin::Bulk, ..Order::new(msisdn(i), Action::Bar) }).collect();
    let port_ins: Vec<Order> = (0..100)
        .map(|i| {
            Order::new(msisdn(10_000 + i), Action::PortIn { imsi: format!("2420100{i:08}"), plan: "basic".into() })
        })
        .collect();
    // Bulk first, then the activations behind them.
    d.submit(queued(1, &bulk));
    tokio::time::sleep(Duration::from_millis(50)).await;
    d.submit(queued(10_001, &port_ins));
    let outcomes = journal.wait_for(1_800).await;
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Done { .. })),
        "{:?}",
        outcomes.iter().find(|o| !matches!(o, Outcome::Done { .. }))
    );
    // Every activation command is recorded before the bulk work queued ahead of it is through.
    let last_activation = outcomes.iter().rposition(|o| o.id() > 10_000).unwrap();
    let bulk_before = outcomes[..last_activation].iter().filter(|o| o.id() <= 10_000).count();
    assert!(bulk_before < 1_000, "{bulk_before} bulk commands went before the last activation");
    for e in &servers {
        assert_eq!(e.counts().1, 0, "{} pushed beyond its capacity", e.kind());
    }
    for _ in 0..300 {
        if d.status().categories[Category::Bulk.index()].executed == 1_500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = d.status();
    assert_eq!(status.categories[Category::Bulk.index()].executed, 1_500);
    assert_eq!(status.categories[Category::Activation.index()].executed, 300);
    stop.cancel();
}

/// Bulk yields to more important work the element cannot drain: with two seconds of the HLR's
/// capacity in service orders queued, the pressure on bulk is that work ahead of it, bulk is
/// suspended at once, and it goes again only once the work ahead has stayed drained for the
/// hold time. Service and activation keep sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_is_suspended_while_more_important_work_cannot_drain() {
    let stop = CancellationToken::new();
    let (servers, config) = elements(2_000, &stop).await;
    servers[0].preload((0..4_200).map(msisdn));
    let journal = Recorded::default();
    let (d, _) = Dispatcher::start(config, journal.clone(), Arc::new(SystemClock), stop.clone());
    let service: Vec<Order> = (0..4_000).map(|i| Order::new(msisdn(i), Action::Bar)).collect();
    let bulk: Vec<Order> =
        (4_000..4_200).map(|i| Order { origin: Origin::Bulk, ..Order::new(msisdn(i), Action::Bar) }).collect();
    d.submit(queued(1, &service));
    d.submit(queued(10_001, &bulk));
    let outcomes = journal.wait_for(4_200).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Done { .. })));

    let transitions = d.status().transitions;
    let bulk_changes: Vec<_> = transitions.iter().filter(|t| t.category == Category::Bulk).collect();
    let first = bulk_changes.first().unwrap_or_else(|| panic!("bulk never yielded: {transitions:?}"));
    assert_eq!(first.to, ProtectionState::Suspended, "{transitions:?}");
    assert!(first.cause.starts_with("hlr work ahead"), "suspended for {:?}, not the work ahead", first.cause);
    let resumed = bulk_changes.iter().find(|t| t.from == ProtectionState::Suspended).expect("bulk resumed");
    assert!(resumed.at - first.at >= 2_000, "bulk resumed before the hold time: {transitions:?}");
    assert!(
        transitions.iter().all(|t| t.category == Category::Bulk),
        "only bulk yields to work queued ahead of it: {transitions:?}"
    );
    // Nothing of bulk before the last service command; bulk after it only once resumed.
    let last_service = outcomes.iter().rposition(|o| o.id() <= 10_000).unwrap();
    assert!(outcomes[..last_service].iter().all(|o| o.id() <= 10_000), "bulk went while suspended");
    for e in &servers {
        assert_eq!(e.counts().1, 0, "{} pushed beyond its capacity", e.kind());
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_subscriber_holds_through_retries_and_concurrency() {
    let stop = CancellationToken::new();
    let (servers, mut config) = elements(3_000, &stop).await;
    config.backoff_base = Duration::from_millis(5);
    let journal = Recorded::default();
    let (d, _) = Dispatcher::start(config, journal.clone(), Arc::new(SystemClock), stop.clone());
    // Per subscriber: activate, change plan, bar, deactivate, activate again; from 4 tasks at
    // once, each submitting its subscribers' orders one by one in that sequence.
    let subscribers = 200u64;
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..5i64 {
                for s in (t..subscribers).step_by(4) {
                    let m = msisdn(s);
                    let imsi = format!("24201{s:010}");
                    let action = match step {
                        0 => Action::PortIn { imsi, plan: "basic".into() },
                        1 => Action::PlanChange { plan: "gold".into() },
                        2 => Action::Bar,
                        3 => Action::PortOut,
                        _ => Action::NewAccount { imsi, plan: "silver".into() },
                    };
                    let id = (s as i64 * 5 + step) * 3 + 1;
                    d.submit(queued(id, &[Order::new(m, action)]));
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Halfway, the HLR loses most of its capacity: answers `overloaded` until the dispatcher
    // follows, and those commands are retried.
    tokio::time::sleep(Duration::from_millis(30)).await;
    servers[0].set_capacity(300);
    tokio::time::sleep(Duration::from_millis(300)).await;
    servers[0].set_capacity(3_000);
    for t in tasks {
        t.await.unwrap();
    }
    // 200 × (3 + 2 + 1 + 3 + 3) commands.
    let outcomes = journal.wait_for(2_400).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Done { .. })));
    let hlr = &servers[0];
    let mut seen: HashMap<Msisdn, Vec<Verb>> = HashMap::new();
    for e in hlr.log() {
        seen.entry(e.msisdn).or_default().push(e.verb);
    }
    for s in 0..subscribers {
        let verbs = &seen[&msisdn(s)];
        // Retried commands may appear twice in a row; the sequence is never out of order.
        let mut collapsed = verbs.clone();
        collapsed.dedup();
        assert_eq!(
            collapsed,
            [Verb::Create, Verb::Set, Verb::Bar, Verb::Delete, Verb::Create],
            "subscriber {s}: {verbs:?}"
        );
        let r = hlr.subscriber(&msisdn(s)).unwrap();
        assert!(!r.barred, "re-created after the deactivation");
    }
    assert_eq!(servers[2].subscriber(&msisdn(7)).unwrap().attributes["plan"], "silver");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_are_dead_with_their_reason() {
    let stop = CancellationToken::new();
    let (_servers, config) = elements(2_000, &stop).await;
    let journal = Recorded::default();
    let (d, _) = Dispatcher::start(config, journal.clone(), Arc::new(SystemClock), stop.clone());
    // A plan change for a subscriber no element has: both commands refused.
    d.submit(queued(1, &[Order::new(msisdn(1), Action::PlanChange { plan: "gold".into() })]));
    let outcomes = journal.wait_for(2).await;
    for o in outcomes {
        match o {
            Outcome::Dead { reason, .. } => assert_eq!(reason, "unknown_subscriber"),
            other => panic!("{other:?}"),
        }
    }
    // The status counts an outcome once the dispatcher has heard it was recorded.
    for _ in 0..300 {
        if d.status().categories[Category::Service.index()].dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(d.status().categories[Category::Service.index()].dead, 2);
    stop.cancel();
}
