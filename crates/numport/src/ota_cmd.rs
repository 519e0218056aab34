//! `numport operator ota …` and `numport operator sim-stock …` (F7): the OTA server of a
//! running node (jobs by state, recent jobs, a failed job retried), and the card stock loaded
//! into the node's database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use operator::OperatorConfig;
use operator::ota::stock::{self, NewCard};
use serde_json::Value;

#[derive(clap::Args)]
pub struct OtaArgs {
    /// The node's HTTP API; default: `http://` and the configuration's `listen`.
    #[arg(long)]
    url: Option<String>,
    /// The node's back-office bearer token (the provisioning API's).
    #[arg(long, env = "NUMPORT_PROVISIONING_TOKEN", hide_env_values = true)]
    token: String,
    /// A CA certificate (PEM) to trust, for a node serving HTTPS.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: OtaCommand,
}

#[derive(Subcommand)]
enum OtaCommand {
    /// Jobs by state, cards in stock, and the recent jobs with their proofs of receipt.
    Status {
        /// The API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed job again from its first attempt.
    Retry { id: i64 },
}

pub async fn ota(cfg: &OperatorConfig, args: OtaArgs) -> anyhow::Result<ExitCode> {
    let url = args.url.clone().unwrap_or_else(|| format!("http://{}", cfg.listen));
    let tls = args.ca.as_ref().map(|ca| numport_tls::ClientTls { ca: ca.clone(), cert: None, key: None });
    let client = numport_tls::http::client(tls.as_ref(), |b| b)?;
    let (path, post) = match args.command {
        OtaCommand::Status { .. } => ("/v1/ota/status".to_owned(), false),
        OtaCommand::Retry { id } => (format!("/v1/ota/jobs/{id}/retry"), true),
    };
    let request = if post { client.post(format!("{url}{path}")) } else { client.get(format!("{url}{path}")) };
    let resp = request.bearer_auth(&args.token).send().await?;
    let code = resp.status();
    let body: Value = resp.json().await.context("reading the answer")?;
    anyhow::ensure!(code.is_success(), "{code}: {}", body["message"].as_str().unwrap_or_default());
    match args.command {
        OtaCommand::Status { json: true } => println!("{body}"),
        OtaCommand::Status { json: false } => print_status(&body),
        OtaCommand::Retry { id } => println!("job {id} queued again"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(body: &Value) {
    println!(
        "jobs: {} queued, {} sent, {} done, {} failed; cards: {} blank, {} assigned",
        body["queued"], body["sent"], body["done"], body["failed"], body["cards_blank"], body["cards_assigned"]
    );
    println!(
        "{:>6} {:<16} {:<14} {:<7} {:>8} {:>8}  proof of receipt / reason",
        "job", "kind", "msisdn", "state", "attempts", "counter"
    );
    for j in body["recent"].as_array().into_iter().flatten() {
        let outcome = j["reason"].as_str().or(j["por_status_text"].as_str()).unwrap_or("-");
        println!(
            "{:>6} {:<16} {:<14} {:<7} {:>8} {:>8}  {outcome}",
            j["id"],
            j["kind"].as_str().unwrap_or("?"),
            j["msisdn"].as_str().unwrap_or("?"),
            j["state"].as_str().unwrap_or("?"),
            j["attempts"],
            j["counter"],
        );
    }
}

#[derive(clap::Args)]
pub struct StockArgs {
    #[command(subcommand)]
    command: StockCommand,
}

#[derive(Subcommand)]
enum StockCommand {
    /// Load a card: its ICCID, and the IMSI and keys it is personalised with. What is not
    /// given is made (the IMSI from `[accounts] imsi_pool`, random keys) and printed as JSON:
    /// the personalisation data for the card (`numport terminal sim new`).
    Add {
        #[arg(long)]
        iccid: String,
        #[arg(long)]
        imsi: Option<String>,
        /// K_sim, hex (16 to 32 bytes).
        #[arg(long, env = "NUMPORT_K_SIM", hide_env_values = true)]
        k_sim: Option<String>,
        /// `aes`, `3des2` or `3des3`.
        #[arg(long, default_value = "aes")]
        algorithm: String,
        /// Length of generated AES keys: 16, 24 or 32.
        #[arg(long, default_value_t = 16)]
        key_len: usize,
        /// KIc (ciphering), hex.
        #[arg(long, env = "NUMPORT_KIC", hide_env_values = true)]
        kic: Option<String>,
        /// KID (checksum), hex.
        #[arg(long, env = "NUMPORT_KID", hide_env_values = true)]
        kid: Option<String>,
        /// Key version number of KIc and KID on the card.
        #[arg(long, default_value_t = 1)]
        key_index: u8,
        /// The card already serves this number (issued for a ported-in number).
        #[arg(long)]
        msisdn: Option<numport_core::Msisdn>,
    },
}

pub async fn stock(cfg: &OperatorConfig, args: StockArgs) -> anyhow::Result<ExitCode> {
    let StockCommand::Add { iccid, imsi, k_sim, algorithm, key_len, kic, kid, key_index, msisdn } = args.command;
    let hex_key = |name: &str, v: Option<String>| -> anyhow::Result<Option<Vec<u8>>> {
        v.map(|k| hex::decode(k.trim()).with_context(|| format!("--{name} must be hex"))).transpose()
    };
    let card = NewCard {
        iccid,
        imsi,
        k_sim: hex_key("k-sim", k_sim)?,
        algorithm: stock::parse_algorithm(&algorithm).context("--algorithm: aes, 3des2 or 3des3")?,
        key_len,
        kic: hex_key("kic", kic)?,
        kid: hex_key("kid", kid)?,
        key_index,
        msisdn,
    };
    let store = operator::OperatorStore::open(&cfg.database()).await?;
    let loaded = stock::load(&store, cfg, card, numport_core::Clock::now_ms(&numport_core::SystemClock)).await?;
    println!("{}", serde_json::to_string(&loaded)?);
    Ok(ExitCode::SUCCESS)
}
