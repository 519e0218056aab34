//! `numport operator provisioning …`: the provisioning API of a running node from the command
//! line: how the device stands, and bulk changes from a CSV file with a progress bar.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use operator::OperatorConfig;
use provisioning::{Action, Order, Origin};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// The node's HTTP API; default: `http://` and the configuration's `listen`.
    #[arg(long)]
    url: Option<String>,
    /// The provisioning API's bearer token.
    #[arg(long, env = "NUMPORT_PROVISIONING_TOKEN", hide_env_values = true)]
    token: String,
    /// A CA certificate (PEM) to trust, for a node serving HTTPS.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Queue depths, protection states and recent transitions per category; element loads.
    Status {
        /// The API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Queue bulk changes from CSV lines `msisdn,action[,plan]` (`plan_change`, `bar`,
    /// `unbar`), in batches; a rerun of the same file queues nothing twice.
    Bulk {
        file: PathBuf,
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

pub async fn run(cfg: &OperatorConfig, args: Args) -> anyhow::Result<ExitCode> {
    let url = args.url.clone().unwrap_or_else(|| format!("http://{}", cfg.listen));
    let tls = args.ca.as_ref().map(|ca| numport_tls::ClientTls { ca: ca.clone(), cert: None, key: None });
    let client = numport_tls::http::client(tls.as_ref(), |b| b)?;
    match args.command {
        Command::Status { json } => status(&client, &url, &args.token, json).await,
        Command::Bulk { file, batch } => bulk(&client, &url, &args.token, &file, batch.clamp(1, 500)).await,
    }
}

async fn status(client: &reqwest::Client, url: &str, token: &str, raw: bool) -> anyhow::Result<ExitCode> {
    let resp = client.get(format!("{url}/v1/provisioning/status")).bearer_auth(token).send().await?;
    let code = resp.status();
    let body: Value = resp.json().await.context("reading the status")?;
    anyhow::ensure!(code.is_success(), "{code}: {}", body["message"].as_str().unwrap_or_default());
    if raw {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<11} {:<10} {:>8} {:>9} {:>10} {:>7} {:>8} {:>9}",
        "category", "state", "depth", "in flight", "executed", "dead", "retried", "pressure"
    );
    for c in body["categories"].as_array().into_iter().flatten() {
        println!(
            "{:<11} {:<10} {:>8} {:>9} {:>10} {:>7} {:>8} {:>9.2}",
            c["category"].as_str().unwrap_or("?"),
            c["state"].as_str().unwrap_or("?"),
            text(&c["depth"]),
            text(&c["in_flight"]),
            text(&c["executed"]),
            text(&c["dead"]),
            text(&c["retried"]),
            c["pressure"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
    println!("{:<9} {:<10} {:>9} {:>7} {:>12}", "element", "connected", "capacity", "depth", "utilisation");
    for e in body["elements"].as_array().into_iter().flatten() {
        let load = &e["load"];
        println!(
            "{:<9} {:<10} {:>9} {:>7} {:>12.3}",
            e["element"].as_str().unwrap_or("?"),
            text(&e["connected"]),
            text(&load["capacity"]),
            text(&load["depth"]),
            load["utilisation"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
    println!("dead letters: {}", body["dead_letters"]);
    let transitions = body["transitions"].as_array().cloned().unwrap_or_default();
    if !transitions.is_empty() {
        println!("recent transitions:");
        for t in transitions.iter().rev().take(10) {
            println!(
                "  {} {} {} -> {} ({})",
                t["at"],
                t["category"].as_str().unwrap_or("?"),
                t["from"].as_str().unwrap_or("?"),
                t["to"].as_str().unwrap_or("?"),
                t["cause"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON value as table text (`Value`'s own `Display` ignores widths); `-` for none.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One CSV line as an order.
fn bulk_order(line: u64, record: &csv::StringRecord) -> anyhow::Result<Order> {
    let field = |i: usize| record.get(i).map(str::trim).unwrap_or("");
    let msisdn = field(0).parse().with_context(|| format!("line {line}: number"))?;
    let action = match (field(1), field(2)) {
        ("plan_change", plan) if !plan.is_empty() => Action::PlanChange { plan: plan.to_owned() },
        ("bar", _) => Action::Bar,
        ("unbar", _) => Action::Unbar,
        (other, _) => anyhow::bail!("line {line}: action {other:?} (plan_change with a plan, bar, unbar)"),
    };
    let order = Order { origin: Origin::Bulk, ..Order::new(msisdn, action) };
    order.validate().with_context(|| format!("line {line}"))?;
    Ok(order)
}

async fn bulk(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    file: &PathBuf,
    batch: usize,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_slice());
    let mut orders = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("line {}", i + 1))?;
        orders.push(bulk_order(i as u64 + 1, &record)?);
    }
    // The key names the file's content and the batch, so a rerun queues nothing twice.
    let digest = {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        h.finish()
    };
    let bar = ProgressBar::new(orders.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} orders queued ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut queued, mut repeated) = (0, 0);
    for (n, chunk) in orders.chunks(batch).enumerate() {
        let resp = client
            .post(format!("{url}/v1/provisioning/orders"))
            .bearer_auth(token)
            .header("idempotency-key", format!("bulk-{digest:016x}-{batch}-{n}"))
            .json(&json!({ "orders": chunk }))
            .send()
            .await?;
        let code = resp.status();
        let body: Value = resp.json().await.context("reading the answer")?;
        anyhow::ensure!(code.is_success(), "batch {n}: {code}: {}", body["message"].as_str().unwrap_or_default());
        for o in body["orders"].as_array().into_iter().flatten() {
            if o["duplicate"] == true {
                repeated += 1;
            } else {
                queued += 1;
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    println!("{queued} orders queued, {repeated} already queued by an earlier run");
    Ok(ExitCode::SUCCESS)
}
