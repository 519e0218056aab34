//! `numport demo`: the heart of F1 on one machine. A clearinghouse and three operators start as
//! real processes on loopback; a subscriber of operator A ports to operator B from the handset
//! (`numport terminal port`: the authorisation by SMS to A's service number over the air, the
//! port-in request to B), first with a wrong PIN, then with the right one; the demo prints each
//! step with its time and checks the outcome. Then the bank's SMS, sent to A, reaches the
//! handset through B and is authentic; a pseudo base station's phishing SMS is flagged. Then
//! F7: the ported subscriber's card is re-written over the air by its new operator, and a new
//! subscriber opens an account at opb by self-service, whose blank card the terminal holds
//! (`numport terminal --card`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clearinghouse_api::model::Order;
use numport_core::porting::OrderState;
use numport_core::proof::PinStretch;
use numport_core::{Money, Msisdn};
use operator::{OperatorStore, SubscriberStatus};

use numport::cluster::{
    BANK_PASSWORD, BANK_SYSTEM_ID, Cluster, ClusterSpec, INITIAL_FUNDS, OperatorProc, pin_of, sim_of, subscriber_number,
};
use numport::fakebts::{Attacks, Network, capture};

#[derive(clap::Args)]
pub struct Args {
    /// Exit 0 only if every step was verified.
    #[arg(long)]
    check: bool,
    /// Where the databases, configurations and logs go (cleared first).
    #[arg(long, default_value = "data/demo")]
    dir: PathBuf,
}

struct Checks {
    failed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        println!("  {} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    println!("numport demo: a clearinghouse and operators opa, opb, opc on loopback (data in {})", args.dir.display());
    let started = Instant::now();
    let cluster = Cluster::start(ClusterSpec {
        dir: args.dir.clone(),
        clearinghouse_db: None,
        subscribers_per_operator: 1,
        pin_stretch: PinStretch::default(),
        clearinghouse: clearinghouse::ClearinghouseConfig::default(),
        tls: true,
        sms_auth: true,
    })
    .await?;
    println!("  clearinghouse   {}", cluster.ch.url());
    for op in &cluster.ops {
        println!("  operator {}    {}", op.name, op.proc.url());
    }
    println!("  started in {} ms\n", started.elapsed().as_millis());

    let result = port_a_to_b(&cluster).await;
    cluster.stop().await;
    let failed = result?;
    if failed == 0 {
        println!("\nall checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n{failed} check(s) failed");
        Ok(if args.check { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    }
}

/// Polls an operator's `GET /v1/lookup/{msisdn}` until it names `expected` (up to 5 s);
/// returns the last answer.
async fn wait_for_route(http: &reqwest::Client, base: &str, msisdn: &Msisdn, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = match http.get(format!("{base}/v1/lookup/{msisdn}")).send().await {
            Ok(r) => match r.json::<serde_json::Value>().await {
                Ok(v) if v["operator"].is_string() => format!(
                    "{} (rn {}, ported {})",
                    v["operator"].as_str().unwrap_or("?"),
                    v["routing_number"].as_str().unwrap_or("?"),
                    v["ported"]
                ),
                Ok(v) => format!("{}", v["error"]),
                Err(e) => format!("unreadable: {e}"),
            },
            Err(e) => format!("unreachable: {e}"),
        };
        if answer.starts_with(&format!("{expected} ")) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn port_a_to_b(cluster: &Cluster) -> anyhow::Result<usize> {
    let (a, b) = (cluster.op("opa"), cluster.op("opb"));
    let msisdn = subscriber_number("4790", 0);
    let mut c = Checks { failed: 0 };
    println!("subscriber {msisdn} of opa ports to opb from the handset, first with a wrong PIN:");
    let wrong = format!("{:06}", (pin_of(&msisdn).parse::<u32>()? + 1) % 1_000_000);
    let (ok, out, _) = handset_port(cluster, a, b, &msisdn, &wrong).await?;
    c.check(!ok && out.contains("verification failed: the PIN is wrong"), "a wrong PIN fails verification");

    println!(
        "
then with the subscriber's PIN:"
    );
    // The card opb issues for the ported number, with its OTA keys: re-written at the port-in.
    let ported_card = load_card(cluster, "opb", Some(&msisdn), 1).await?;
    let (ok, _, elapsed) = handset_port(cluster, a, b, &msisdn, &pin_of(&msisdn)).await?;
    c.check(ok, "the handset saw its port complete");
    let orders = b.ch_client.orders().await?.orders;
    let order =
        orders.into_iter().filter(|o| o.msisdn == msisdn).max_by_key(|o| o.id).context("no order for the number")?;
    let order = wait_finished(b, order.id).await?;
    show_steps(b, &order, elapsed).await?;

    check_clearinghouse(cluster, &order, &msisdn, &mut c).await?;
    let stores = (OperatorStore::connect(&a.db_url).await?, OperatorStore::connect(&b.db_url).await?);
    check_operator_records(&stores, &msisdn, &mut c).await?;
    check_provisioning(&stores, &msisdn, &mut c).await?;
    let http = cluster.http()?.build()?;
    check_lookups(cluster, &http, &msisdn, &mut c).await;
    let card = ported_card_rewritten(cluster, &stores.1, &msisdn, &ported_card, &mut c).await?;
    self_service(cluster, &http, &mut c).await?;
    let handset = Handset {
        imsi: ported_card.imsi.clone(),
        k_sim: ported_card.k_sim.clone(),
        card,
        state: cluster.dir.join("handset.state"),
    };
    check_sms(cluster, &stores, &msisdn, &handset, &mut c).await?;
    Ok(c.failed)
}

/// The subscriber's handset, attached to `a` by its SIM, ports its number to `b` with `pin`:
/// `numport terminal port` over HTTPS to `b`, whose steps are shown as it prints them. Whether it succeeded, its
/// output, and how long it ran (process start and PIN stretching included).
async fn handset_port(
    cluster: &Cluster,
    a: &OperatorProc,
    b: &OperatorProc,
    msisdn: &Msisdn,
    pin: &str,
) -> anyhow::Result<(bool, String, Duration)> {
    let (imsi, k_sim) = sim_of(msisdn);
    let air = a.proc.air.context("opa runs no air interface")?;
    let started = Instant::now();
    let handset = tokio::process::Command::new(numport::launch::numport_exe()?)
        .args(["terminal", "port", "--node", &air.to_string(), "--imsi", &imsi, "--k-sim", &hex::encode(&k_sim)])
        .args(["--to", b.name.as_str(), "--recipient-url", &b.proc.url(), "--pin", pin])
        .arg("--ca")
        .arg(&cluster.pki.ca)
        .env("NUMPORT_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), handset).await.context("the handset did not finish")??;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !stderr.trim().is_empty() {
        println!("  handset: {}", stderr.trim());
    }
    Ok((out.status.success(), stdout, elapsed))
}

/// Waits (up to 20 s) for the order to finish; the operators answer on their own.
async fn wait_finished(b: &OperatorProc, id: i64) -> anyhow::Result<Order> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = b.ch_client.order(id).await?;
        if o.state.is_terminal() || Instant::now() > deadline {
            return Ok(o);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Prints the order's steps as the clearinghouse's audit trail times them, and the handset's
/// end-to-end time.
async fn show_steps(b: &OperatorProc, order: &Order, elapsed: Duration) -> anyhow::Result<()> {
    let trail = b.ch_client.audit(order.id).await?;
    let first_at = trail.entries.first().map(|e| e.at).unwrap_or(0);
    let step = |to: &str| trail.entries.iter().find(|e| e.to_state.as_deref() == Some(to)).map(|e| e.at - first_at);
    let show = |label: &str, at: Option<i64>| match at {
        Some(ms) => println!("  +{ms:>4} ms  {label}"),
        None => println!("     --     {label} (not reached)"),
    };
    println!("\nporting order {} (clearinghouse times):", order.id);
    show("1  terminal verification request from opb accepted, awaiting the donor's deposit", step("awaiting_deposit"));
    show("2  opa's deposit matches the terminal's proof; 3  credit query sent to opa", step("awaiting_credit_info"));
    if let Some(c) = &order.credit {
        show(
            &format!(
                "4  opa's credit information: arrears {}, unbilled {}, contract {}, deposit {} → compensation {}",
                c.arrears,
                c.unbilled_usage,
                c.contract_remaining,
                c.deposit_held,
                c.compensation()
            ),
            step("awaiting_decision"),
        );
    }
    show("5  opb accepts the compensation; the order is settling", step("settling"));
    show("6  settled: opb paid opa, number routed to opb, change logged", step("completed"));
    println!(
        "  the handset's port took {:.1} ms, process start and PIN stretching included\n",
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// The clearinghouse's side: the order, the route, the compensation paid, the ledger, the
/// change log, and no deadline violations.
async fn check_clearinghouse(cluster: &Cluster, order: &Order, msisdn: &Msisdn, c: &mut Checks) -> anyhow::Result<()> {
    let (a, b) = (cluster.op("opa"), cluster.op("opb"));
    c.check(order.state == OrderState::Completed, &format!("order completed (state {})", order.state));
    let status = cluster.op("opc").ch_client.number(msisdn).await?;
    c.check(
        status.serving_operator.as_str() == "opb" && status.routing_number == "D002",
        &format!("clearinghouse routes {msisdn} to {} (rn {})", status.serving_operator, status.routing_number),
    );
    let comp = order.compensation.unwrap_or_default();
    c.check(comp == "85.70".parse::<Money>()?, &format!("compensation {comp} as the credit information implies"));
    let a_bal = a.ch_client.account().await?.balance;
    let b_bal = b.ch_client.account().await?.balance;
    c.check(
        a_bal.0 == INITIAL_FUNDS.0 + comp.0 && b_bal.0 == INITIAL_FUNDS.0 - comp.0,
        &format!("opa's account {a_bal} (+{comp}), opb's {b_bal} (-{comp})"),
    );
    let mut conn = cluster.ch_db.read().await?;
    let ledger = clearinghouse::store::ledger::check(&mut conn).await?;
    c.check(ledger.is_sound(), "ledger balanced: all accounts sum to zero, each matches its postings");
    let changes = clearinghouse::store::routing::changes_after(&mut conn, 0, 10).await?.changes;
    c.check(changes.len() == 1 && &changes[0].msisdn == msisdn, "routing change log holds the port as seq 1");
    drop(conn);
    c.check(a.ch_client.violations().await?.violations.is_empty(), "no deadline violations");
    Ok(())
}

/// The operators' own records (opa's store, opb's), once their last messages have arrived.
async fn check_operator_records(
    (a_store, b_store): &(OperatorStore, OperatorStore),
    msisdn: &Msisdn,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let mut settled = (false, false);
    for _ in 0..200 {
        let out = a_store.subscriber(msisdn).await?.map(|s| s.status);
        let inn = b_store.subscriber(msisdn).await?.map(|s| s.status);
        settled = (out == Some(SubscriberStatus::PortedOut), inn == Some(SubscriberStatus::Active));
        if settled.0 && settled.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.check(settled.0, "opa marked the subscriber ported out on the compensation confirmation");
    c.check(settled.1, "opb opened the subscriber's account on port completion");
    Ok(())
}

/// F6: the port provisions the subscriber on every network element of opb (the recipient) and
/// deprovisions it at opa (the donor), through each node's provisioning queues.
async fn check_provisioning(
    (a_store, b_store): &(OperatorStore, OperatorStore),
    msisdn: &Msisdn,
    c: &mut Checks,
) -> anyhow::Result<()> {
    println!("\nprovisioning of {msisdn} on the operators' network elements (F6):");
    for (store, op, action) in [(b_store, "opb", "port_in"), (a_store, "opa", "port_out")] {
        let mut executed = None;
        for _ in 0..300 {
            let orders = store.provisioning_orders_of(msisdn).await?;
            let order = orders.into_iter().find(|o| o.order.action.name() == action);
            if let Some(o) = order.filter(|o| !o.commands.is_empty() && o.commands.iter().all(|k| k.state == "done")) {
                executed = Some(o);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let commands = executed.as_ref().map_or(String::new(), |o| {
            let each = o.commands.iter().map(|k| format!("{} {}", k.command.element.as_str(), k.command.verb.as_str()));
            each.collect::<Vec<_>>().join(", ")
        });
        println!("  {op}: {action} order, commands executed: {commands}");
        let provisioned =
            if action == "port_in" { "provisioned the subscriber" } else { "deprovisioned the subscriber" };
        c.check(executed.is_some(), &format!("{op} {provisioned} on its network elements"));
    }
    Ok(())
}

/// F2: every operator's replica answers the new route, over HTTP and ENUM.
async fn check_lookups(cluster: &Cluster, http: &reqwest::Client, msisdn: &Msisdn, c: &mut Checks) {
    println!("\nlookups of {msisdn} at every operator's replica (F2):");
    for op in &cluster.ops {
        let http_answer = wait_for_route(http, &op.proc.url(), msisdn, "opb").await;
        let uri = match op.proc.dns {
            Some(dns) => match replica::dns::query_naptr(dns, msisdn, "e164.arpa.").await {
                Ok(replica::dns::EnumAnswer::Uri(u)) => u,
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("no answer: {e}"),
            },
            None => "no ENUM server".into(),
        };
        println!("  {}: HTTP → {http_answer}; ENUM NAPTR → {uri}", op.name);
        c.check(
            http_answer.starts_with("opb ") && uri.ends_with(";npdi;rn=D002;rn-context=+47"),
            &format!("{}'s replica routes {msisdn} to opb over HTTP and ENUM", op.name),
        );
    }
}

/// F3: the bank still sends its one-time codes to the old operator's SMS center (opa, over
/// SMPP/TLS), which routes them over the interconnect (SMPP/TLS too) to opb, whose
/// subscriber's handset shows them; the delivery receipt comes back to the bank.
async fn check_sms(
    cluster: &Cluster,
    (a_store, _): &(OperatorStore, OperatorStore),
    msisdn: &Msisdn,
    handset: &Handset,
    c: &mut Checks,
) -> anyhow::Result<()> {
    let (a, b) = (cluster.op("opa"), cluster.op("opb"));
    let smsc = cluster.smsc(a)?;
    println!("\nthe bank submits an SMS for {msisdn} to opa's SMS center over SMPP/TLS at {} (F3):", smsc.addr);
    // A transceiver bind: the delivery receipt comes back on the same session.
    let (bank, mut receipts) = smsc.bind(BANK_SYSTEM_ID, BANK_PASSWORD, smsc::BindMode::Transceiver).await?;
    let id = bank.submit("MyBank", msisdn.as_str(), b"Your code is 123456").await?;
    let stored = a_store.sms(id.parse()?).await?;
    let route = stored.as_ref().map(|m| format!("{} to {}", m.route, m.serving_operator)).unwrap_or_default();
    println!("  submit_sm_resp message id {id}; opa routed it: {route}");
    c.check(
        stored.is_some_and(|m| m.route == "interconnect" && m.serving_operator == "opb"),
        "opa's SMS center routes the bank's SMS to opb, which serves the number now",
    );
    let shown = handset.receive(b.proc.air.context("opb runs no air interface")?).await?;
    println!(
        "  the handset on opb shows: {} from {}: {}  [{}]",
        shown["time"].as_str().unwrap_or("-"),
        shown["from"].as_str().unwrap_or("-"),
        shown["text"].as_str().unwrap_or("-"),
        shown["verdict_detail"].as_str().unwrap_or("-")
    );
    c.check(
        shown["from"] == "MyBank" && shown["text"] == "Your code is 123456",
        "the bank's SMS went over the interconnect to opb and reached the subscriber's handset",
    );
    c.check(
        shown["verdict"] == "authentic",
        "the handset finds the bank's SMS authentic: opb tagged it with the key it wrote into the SIM at the port-in",
    );
    c.check(
        b.proc.smpp.is_none() && b.proc.smpp_tls.is_some(),
        "opb's SMS center takes SMPP over TLS only: the interconnect ran over TLS",
    );
    // opb's receipt goes back over the interconnect to opa, and from opa to the bank.
    let receipt = tokio::time::timeout(Duration::from_secs(20), receipts.recv()).await.ok().flatten();
    let receipt = receipt.map(|incoming| {
        let text = String::from_utf8_lossy(incoming.deliver.short_message().as_ref()).into_owned();
        incoming.answer(smsc::rusmpp::CommandStatus::EsmeRok);
        text
    });
    println!("  the bank receives the delivery receipt: {}", receipt.as_deref().unwrap_or("none"));
    let parsed = receipt.as_deref().and_then(|r| smsc::receipt::Receipt::parse(r).ok());
    c.check(
        parsed.is_some_and(|r| r.message_id == id && r.state == smsc::receipt::ReceiptState::Delivered),
        "the bank gets a DELIVRD receipt for its message id, relayed from opb through opa",
    );
    bank.unbind().await?;
    fake_base_station(handset, msisdn, c).await
}

/// F3's other half: a pseudo base station takes the handset's radio link (the handset attaches
/// to it as to its network) and sends a phishing SMS in the bank's name; the handset flags it.
async fn fake_base_station(handset: &Handset, msisdn: &Msisdn, c: &mut Checks) -> anyhow::Result<()> {
    println!("\na pseudo base station near the subscriber sends an SMS in the bank's name (F3):");
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = fake.local_addr()?;
    let text = crate::fakebts_cmd::PHISHING_TEXT;
    let attacks = Attacks { spoof: Some(("MyBank".into(), text.into())), ..Attacks::default() };
    let number = msisdn.as_str().to_owned();
    let bts = tokio::spawn(async move {
        let (link, _) = fake.accept().await?;
        capture(link, &Network::Alone { msisdn: number }, &attacks).await
    });
    let shown = handset.receive(addr).await?;
    bts.await??;
    println!(
        "  the handset shows: from {}: {}  [{}]",
        shown["from"].as_str().unwrap_or("-"),
        shown["text"].as_str().unwrap_or("-"),
        shown["verdict_detail"].as_str().unwrap_or("-")
    );
    c.check(
        shown["text"] == text && shown["verdict"] == "forged",
        "the fake base station's phishing SMS is flagged: sent by a pseudo base station",
    );
    Ok(())
}

/// The subscriber's handset after the port: the card opb issued for the ported number and
/// re-wrote over the air at the port-in (its SMS-authentication key among what it wrote), and
/// a state file that keeps its verdicts and replay window.
struct Handset {
    imsi: String,
    /// Hex.
    k_sim: String,
    card: PathBuf,
    state: PathBuf,
}

impl Handset {
    /// Attaches `numport terminal` to the network at `air` and returns the first message it
    /// shows, as the terminal's JSON, with its verdict.
    async fn receive(&self, air: std::net::SocketAddr) -> anyhow::Result<serde_json::Value> {
        let terminal = tokio::process::Command::new(numport::launch::numport_exe()?)
            .args(["terminal", "--node", &air.to_string(), "--imsi", &self.imsi, "--card"])
            .arg(&self.card)
            .args(["--count", "1", "--json", "--state"])
            .arg(&self.state)
            .env("NUMPORT_K_SIM", &self.k_sim)
            .env("NUMPORT_LOG", "warn")
            .kill_on_drop(true)
            .output();
        let out =
            tokio::time::timeout(Duration::from_secs(20), terminal).await.context("the handset received nothing")??;
        Ok(serde_json::from_slice(&out.stdout).unwrap_or_default())
    }
}

/// Loads card `n` into `operator`'s stock (IMSI from its pool, random OTA keys); for a ported
/// number, the SIM the demo's handset already has (`sim_of`), now issued by `operator`.
async fn load_card(
    cluster: &Cluster,
    operator: &str,
    msisdn: Option<&Msisdn>,
    n: u32,
) -> anyhow::Result<operator::ota::stock::LoadedCard> {
    let config: operator::OperatorConfig =
        toml::from_str(&std::fs::read_to_string(cluster.dir.join(format!("operator-{operator}.toml")))?)?;
    let store = OperatorStore::connect(&cluster.op(operator).db_url).await?;
    let (imsi, k_sim) = match msisdn {
        Some(m) => {
            let (imsi, k_sim) = sim_of(m);
            (Some(imsi), Some(k_sim))
        }
        None => (None, None),
    };
    let card = operator::ota::stock::NewCard {
        iccid: operator::account_opening::identity::with_luhn_digit(&format!("89470{:013}", n)),
        imsi,
        k_sim,
        algorithm: sim::Algorithm::Aes,
        key_len: 16,
        kic: None,
        kid: None,
        key_index: 1,
        msisdn: msisdn.cloned(),
    };
    let now = numport_core::Clock::now_ms(&numport_core::SystemClock);
    let loaded = operator::ota::stock::load(&store, &config, card, now).await?;
    store.close().await;
    Ok(loaded)
}

/// `numport terminal sim new`: the card file the manufacturer makes from `card`.
async fn card_file(
    cluster: &Cluster,
    card: &operator::ota::stock::LoadedCard,
    extra: &[&str],
) -> anyhow::Result<PathBuf> {
    let file = cluster.dir.join(format!("card-{}.json", card.iccid));
    let out = tokio::process::Command::new(numport::launch::numport_exe()?)
        .args(["terminal", "sim", "new", "--card"])
        .arg(&file)
        .args(["--imsi", &card.imsi, "--k-sim", &card.k_sim, "--kic", &card.kic, "--kid", &card.kid])
        .args(extra)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "sim new: {}", String::from_utf8_lossy(&out.stderr));
    Ok(file)
}

/// `numport terminal --card` on `operator`'s air interface until it has taken one SIM data
/// download; then `sim show`'s JSON.
async fn card_written(
    op: &OperatorProc,
    card: &operator::ota::stock::LoadedCard,
    file: &Path,
) -> anyhow::Result<serde_json::Value> {
    let air = op.proc.air.context("no air interface")?;
    let terminal = tokio::process::Command::new(numport::launch::numport_exe()?)
        .args(["terminal", "--node", &air.to_string(), "--imsi", &card.imsi, "--card"])
        .arg(file)
        .args(["--count", "1"])
        .env("NUMPORT_K_SIM", &card.k_sim)
        .env("NUMPORT_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), terminal).await.context("the card took no packet")??;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  terminal: {line}");
    }
    let show = tokio::process::Command::new(numport::launch::numport_exe()?)
        .args(["terminal", "sim", "show", "--json", "--card"])
        .arg(file)
        .output()
        .await?;
    Ok(serde_json::from_slice(&show.stdout).unwrap_or_default())
}

/// F7 at the port-in: opb re-writes the ported subscriber's card over the air (its SPN, SMS
/// center address and keys), through its SMS center, and collects the proof of receipt, which
/// makes the SMS-authentication key it wrote the one its SMS center tags with. The card file.
async fn ported_card_rewritten(
    cluster: &Cluster,
    b_store: &OperatorStore,
    msisdn: &Msisdn,
    card: &operator::ota::stock::LoadedCard,
    c: &mut Checks,
) -> anyhow::Result<PathBuf> {
    println!(
        "
opb re-writes the ported subscriber's SIM over the air (F7):"
    );
    let before = ["--msisdn", &format!("+{msisdn}"), "--spn", "opa", "--smsc", "+4790999999"];
    let file = card_file(cluster, card, &before).await?;
    let shown = card_written(cluster.op("opb"), card, &file).await?;
    println!("  the SIM now reads: number {}, SPN {}, SMS center {}", shown["msisdn"], shown["spn"], shown["smsc"]);
    c.check(
        shown["spn"] == "opb" && shown["smsc"] == "+4791999999",
        "the ported subscriber's SIM shows opb's SPN and SMS center",
    );
    let now = numport_core::Clock::now_ms(&numport_core::SystemClock);
    let keys = b_store.sms_auth_keys(&card.imsi, now).await?;
    let active = keys.iter().find(|k| k.activated_at.is_some() && k.retired_at.is_none()).map(|k| k.version);
    let active_text = active.map_or_else(|| "none".to_owned(), |v| v.to_string());
    println!(
        "  SMS-authentication key: version {} in the SIM, {active_text} active at opb",
        shown["sms_auth_key"]["version"]
    );
    c.check(
        active.is_some_and(|v| shown["sms_auth_key"]["version"] == u64::from(v)),
        "opb collected the card's proof of receipt: the key written into the SIM is the one its SMS center tags with",
    );
    Ok(file)
}

/// F7: a new subscriber opens an account at opb on its self-service API with the blank card
/// in hand; opb assigns a number, provisions it and writes the card over the air.
async fn self_service(cluster: &Cluster, http: &reqwest::Client, c: &mut Checks) -> anyhow::Result<()> {
    let b = cluster.op("opb");
    println!(
        "
a new subscriber opens an account at opb by self-service ({}/self-service, F7):",
        b.proc.url()
    );
    let card = load_card(cluster, "opb", None, 2).await?;
    let file = card_file(cluster, &card, &[]).await?;
    let body = serde_json::json!({
        "given_name": "Kari", "family_name": "Nordmann", "date_of_birth": "1990-04-17",
        "id_document": "P1234567", "email": "kari@example.no", "iccid": card.iccid,
    });
    let resp = http
        .post(format!("{}/v1/accounts", b.proc.url()))
        .header("idempotency-key", "demo-1")
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let opened: serde_json::Value = resp.json().await?;
    println!("  POST /v1/accounts → {status}: number {}", opened["msisdn"]);
    c.check(status == reqwest::StatusCode::ACCEPTED, "opb opened the account and assigned a number from its pool");
    let shown = card_written(b, &card, &file).await?;
    println!("  the SIM now reads: number {}, SPN {}, SMS center {}", shown["msisdn"], shown["spn"], shown["smsc"]);
    c.check(
        shown["msisdn"].as_str() == opened["msisdn"].as_str().map(|m| format!("+{m}")).as_deref()
            && shown["spn"] == "opb",
        "the terminal's SIM holds the new number and opb's SPN, written over the air",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let id = opened["id"].as_str().unwrap_or_default();
        let view: serde_json::Value =
            http.get(format!("{}/v1/accounts/{id}", b.proc.url())).send().await?.json().await?;
        if view["state"] == "sim_written" || Instant::now() > deadline {
            break view["state"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("  GET /v1/accounts/{{id}} → {state}");
    c.check(state == "sim_written", "the account reads sim_written: provisioned and the card confirmed");
    Ok(())
}
