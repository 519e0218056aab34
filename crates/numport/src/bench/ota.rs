//! `numport bench ota`: the OTA server and self-service account opening (F7).
//!
//! 1. **packets_per_s**, on one core in this process: the server builds a job's script and
//!    secured command packet for a card (AES-128 ciphering and CMAC, a fresh counter each),
//!    the card (`sim::Card`) verifies, deciphers and executes it and answers with its PoR,
//!    and the server checks the PoR; `--packets` of them, one after the other.
//! 2. **open_to_written_p99_ms**, over the real path: an operator node (`numport operator`, a
//!    process of its own on SQLite) with `--accounts` blank cards in stock. At `--rate`
//!    accounts a second, a person's request goes to `POST /v1/accounts` over HTTP; as soon as
//!    it is answered the person's handset (with that card) attaches over the air interface;
//!    the node's OTA server sends the secured packet through its SMS center to it, and the
//!    card's PoR comes back as an SMS-SUBMIT. The time counted is from the request to the
//!    node's acknowledgement of the PoR (its `SubmitAck`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use numport::ota_node;
use operator::ota::OpenedCard;
use operator::ota::script::{self, CardWrites};
use operator::ota::stock::LoadedCard;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct Args {
    /// Packets built and verified in the first phase.
    #[arg(long, default_value_t = 100_000)]
    packets: u64,
    /// Accounts opened in the second phase.
    #[arg(long, default_value_t = 300)]
    accounts: u32,
    /// Accounts opened per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "data/bench-ota")]
    dir: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let packets = packets(args.packets)?;
    let opening = opening(&args).await?;
    let out = serde_json::json!({
        "packets_per_s": packets,
        "open_to_written_p50_ms": opening.p50,
        "open_to_written_p99_ms": opening.p99,
        "open_to_written_max_ms": opening.max,
        "accounts": args.accounts,
        "accounts_written": opening.written,
        "rate_per_s": args.rate,
    });
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The card and the server's view of its keys, made alike.
fn card_pair() -> anyhow::Result<(sim::Card, OpenedCard)> {
    let (kic, kid, k_sim) = ([0x11u8; 16], [0x22u8; 16], [0x33u8; 32]);
    let keys = sim::OtaKeys::aes(&kic, &kid)?;
    let card = sim::Card::personalise(&sim::Personalisation {
        imsi: "242010000000001".into(),
        k_sim: k_sim.to_vec(),
        ota_keys: vec![(1, keys.clone())],
        msisdn: None,
        spn: None,
        smsc: None,
        sms_auth: None,
    })?;
    let opened = OpenedCard { k_sim: zeroize::Zeroizing::new(k_sim.to_vec()), keys, kic_index: 1, kid_index: 1 };
    Ok((card, opened))
}

/// Phase 1: packets built by the server, verified and executed by the card, PoR checked, on
/// this thread.
fn packets(n: u64) -> anyhow::Result<f64> {
    eprintln!("packets: {n} command packets built, verified by the card, PoR checked (one core) ...");
    let (mut card, opened) = card_pair()?;
    let tar = sim::Tar::RFM_SIM;
    let sms_auth_key = zeroize::Zeroizing::new(rand::random::<[u8; sms::auth::KEY_LEN]>());
    let started = Instant::now();
    for counter in 1..=n {
        let writes = CardWrites {
            msisdn: "+4790500000".into(),
            spn: "Operator A".into(),
            sms_center: "+4790000000".into(),
            k_sim: opened.k_sim.to_vec(),
            sms_auth_version: 1,
            sms_auth_key: sms_auth_key.clone(),
        };
        let script = writes.script()?;
        let packet = script::command_packet(&opened, tar, counter, &script)?;
        let outcome = card.receive_command_packet(&packet);
        let por = script::read_por(&opened, outcome.por.as_deref().context("the card answered nothing")?)?;
        anyhow::ensure!(
            por.status == sim::PorStatus::Ok && por.counter == counter,
            "packet {counter}: {:?}",
            por.status
        );
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("  {rate:.0} packets/s");
    Ok(rate)
}

struct Opening {
    p50: f64,
    p99: f64,
    max: f64,
    written: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Phase 2: self-service request to the card's PoR, through a node process.
async fn opening(args: &Args) -> anyhow::Result<Opening> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let config = ota_node::configure(&dir, 10_000)?;
    let cards = ota_node::load_cards(&config, args.accounts).await?;
    let mut node = ota_node::start(&config).await?;
    let air = node.air.context("the node's air interface")?;
    let url = node.url();
    eprintln!(
        "opening: {} accounts at {:.0}/s on one node (SQLite), request to the card's proof of receipt ...",
        args.accounts, args.rate
    );
    let http = reqwest::Client::new();
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, card) in cards.into_iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let (http, url, hist, stop) = (http.clone(), url.clone(), hist.clone(), stop.clone());
        tasks.spawn(async move { open_one(&http, &url, air, card, i, hist, stop).await });
    }
    let mut written = 0;
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(()) => written += 1,
            Err(e) => eprintln!("  an account was not written: {e:#}"),
        }
    }
    stop.cancel();
    node.stop().await;
    let hist = hist.lock().unwrap_or_else(|e| e.into_inner());
    let o = Opening {
        p50: ms(hist.value_at_quantile(0.5)),
        p99: ms(hist.value_at_quantile(0.99)),
        max: ms(hist.max()),
        written,
    };
    eprintln!("  {written} written; request to PoR p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", o.p50, o.p99, o.max);
    Ok(o)
}

/// One person: the request, then the handset with the card, until its PoR is acknowledged.
async fn open_one(
    http: &reqwest::Client,
    url: &str,
    air: std::net::SocketAddr,
    loaded: LoadedCard,
    i: usize,
    hist: Arc<Mutex<Histogram<u64>>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let card = ota_node::card_of(&loaded)?;
    let body = serde_json::json!({
        "given_name": "Kari", "family_name": "Nordmann", "date_of_birth": "1990-04-17",
        "id_document": format!("P{i:07}"), "iccid": loaded.iccid,
    });
    let t0 = Instant::now();
    let resp = http
        .post(format!("{url}/v1/accounts"))
        .header("idempotency-key", format!("bench-{i}"))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == reqwest::StatusCode::ACCEPTED, "{}: {}", resp.status(), resp.text().await?);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handset_stop = stop.child_token();
    let handset = tokio::spawn(operator::ota::handset::serve_card(
        air,
        Arc::new(std::sync::Mutex::new(card)),
        tx,
        handset_stop.clone(),
    ));
    let por = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
    let elapsed = t0.elapsed();
    handset_stop.cancel();
    let _ = handset.await;
    match por {
        Ok(Some(p)) if p.cause == sms::air::CAUSE_OK => {
            hist.lock().unwrap_or_else(|e| e.into_inner()).record(elapsed.as_micros() as u64)?;
            Ok(())
        }
        other => anyhow::bail!("card {}: no accepted PoR ({other:?})", loaded.iccid),
    }
}
