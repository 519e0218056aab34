//! `numport bench enum`: NAPTR answers per second from a replica's ENUM server, driven by
//! `dnsperf` (DNS-OARC) over UDP on loopback.
//!
//! The replica runs as its own process (`numport npdb`) on a snapshot of `--numbers` ported
//! numbers built in place (the `npdb::bench` data set); its clearinghouse URL points nowhere,
//! so it serves its snapshot, stale, which costs a lookup exactly what a current one costs.
//! The query file holds `--queries` names, half ported numbers and half never-ported ones.
//!
//! Saturation runs (`dnsperf` with many outstanding queries, no rate limit; the median counts)
//! give `answers_per_s`; then a run at half that rate with per-query reporting (`-v`) gives the
//! latency percentiles. Both processes share the machine's cores, as they would on one box.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use numport_core::Msisdn;
use serde::Serialize;

use numport::launch::{Launched, launch};

#[derive(clap::Args)]
pub struct Args {
    /// Ported numbers in the replica.
    #[arg(long, default_value_t = 1_000_000)]
    numbers: usize,
    /// Distinct query names in the dnsperf input.
    #[arg(long, default_value_t = 200_000)]
    queries: usize,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Queries dnsperf keeps outstanding in the saturation runs.
    #[arg(long, default_value_t = 1000)]
    outstanding: u32,
    /// Saturation runs; the median is reported (the machine is noisy).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "data/bench-enum")]
    dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    numbers: usize,
    /// Median of the saturation runs.
    answers_per_s: f64,
    /// Every saturation run's answers/s.
    runs_answers_per_s: Vec<f64>,
    queries_sent: u64,
    queries_completed: u64,
    queries_lost: u64,
    /// The latency run: its offered rate and percentiles.
    latency_rate_qps: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// What one dnsperf run printed.
#[derive(Debug, Default)]
struct DnsperfRun {
    sent: u64,
    completed: u64,
    lost: u64,
    qps: f64,
    noerror: u64,
    /// Per-query latencies in seconds (only with `-v`).
    latencies: Vec<f64>,
}

fn parse_dnsperf(out: &str) -> DnsperfRun {
    let mut r = DnsperfRun::default();
    let first_number = |s: &str| -> Option<f64> {
        s.split_whitespace().find_map(|w| w.trim_matches(|c: char| !c.is_ascii_digit() && c != '.').parse().ok())
    };
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Queries sent:") {
            r.sent = first_number(v).unwrap_or(0.0) as u64;
        } else if let Some(v) = l.strip_prefix("Queries completed:") {
            r.completed = first_number(v).unwrap_or(0.0) as u64;
        } else if let Some(v) = l.strip_prefix("Queries lost:") {
            r.lost = first_number(v).unwrap_or(0.0) as u64;
        } else if let Some(v) = l.strip_prefix("Queries per second:") {
            r.qps = first_number(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("Response codes:") {
            r.noerror =
                v.split(',').find_map(|p| p.trim().strip_prefix("NOERROR")).and_then(first_number).unwrap_or(0.0)
                    as u64;
        } else if l.starts_with('>') {
            // -v: "> NOERROR 1.0.…e164.arpa. NAPTR 0.000123"
            if let Some(s) = l.split_whitespace().last().and_then(|s| s.parse::<f64>().ok()) {
                r.latencies.push(s);
            }
        }
    }
    r
}

async fn dnsperf(args: &[String]) -> anyhow::Result<DnsperfRun> {
    let out = tokio::process::Command::new("dnsperf")
        .args(args)
        .output()
        .await
        .context("running dnsperf (apt-get install dnsperf)")?;
    if !out.status.success() {
        bail!("dnsperf failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(parse_dnsperf(&String::from_utf8_lossy(&out.stdout)))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    let data = args.dir.join("npdb");
    std::fs::create_dir_all(&data)?;
    let query_file = prepare(&args, &data).await?;
    let proc = launch_replica(&args, &data).await?;
    let dns = proc.dns.context("the replica announced no ENUM address")?;
    let runner = Dnsperf { server: dns, query_file, seconds: args.seconds };

    let outstanding = args.outstanding.to_string();
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        let run = runner.run(&["-c", "8", "-q", &outstanding]).await?;
        anyhow::ensure!(run.completed > 0, "dnsperf got no answers: {run:?}");
        runs.push(run);
    }
    runs.sort_by(|a, b| a.answers_per_s().total_cmp(&b.answers_per_s()));
    let runs_answers_per_s: Vec<f64> = runs.iter().map(DnsperfRun::answers_per_s).collect();
    let sat = &runs[runs.len() / 2];
    let rate = ((sat.qps / 2.0) as u64).max(1);
    let mut lat = runner.run(&["-c", "8", "-Q", &rate.to_string(), "-v"]).await?;
    lat.latencies.sort_by(f64::total_cmp);
    let report = Report {
        numbers: args.numbers,
        answers_per_s: sat.answers_per_s(),
        runs_answers_per_s,
        queries_sent: sat.sent,
        queries_completed: sat.completed,
        queries_lost: sat.lost,
        latency_rate_qps: rate,
        p50_ms: lat.percentile_ms(0.50),
        p99_ms: lat.percentile_ms(0.99),
        max_ms: lat.percentile_ms(1.0),
    };
    drop(proc);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print(args.outstanding);
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds the replica's snapshot of `--numbers` ported numbers in `data` and writes the
/// dnsperf query file; returns its path.
async fn prepare(args: &Args, data: &Path) -> anyhow::Result<PathBuf> {
    let (numbers, queries) = (args.numbers, args.queries);
    let data_dir = data.to_owned();
    let pool = tokio::task::spawn_blocking(move || {
        let index = npdb::bench::build_index(numbers);
        replica::disk::install_index(&data_dir, &index, 0, 0)?;
        Ok::<_, anyhow::Error>(npdb::bench::query_pool(numbers, queries, 7))
    })
    .await??;
    let query_file = args.dir.join("queries.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&query_file)?);
    for key in pool {
        let msisdn: Msisdn = key.to_string().parse()?;
        writeln!(f, "{} NAPTR", replica::dns::name_of(&msisdn, "e164.arpa."))?;
    }
    f.flush()?;
    Ok(query_file)
}

/// Starts `numport npdb` on the snapshot in `data`, its HTTP over TLS as deployed (with a
/// certificate from a PKI made in `args.dir`).
async fn launch_replica(args: &Args, data: &Path) -> anyhow::Result<Launched> {
    let plan = numport_tls::pki::PkiPlan {
        hosts: Vec::new(),
        operators: Vec::new(),
        replicas: vec!["npdb".into()],
        validity_days: 30,
    };
    let pki = numport_tls::pki::generate(&args.dir.join("pki"), &plan)?;
    let own = pki.replica("npdb").context("the replica's certificate")?;
    let tls = numport_tls::ServerTls { cert: own.cert.clone(), key: own.key.clone(), client_ca: None };
    let mut config = toml::Table::new();
    config.insert("tls".into(), toml::Value::try_from(tls)?);
    let config_path = args.dir.join("npdb.toml");
    std::fs::write(&config_path, toml::to_string(&config)?)?;
    launch(
        &[
            "npdb".into(),
            "--config".into(),
            config_path.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--enum-listen".into(),
            "127.0.0.1:0".into(),
            // Nothing listens there, so no key is ever checked: the replica serves its snapshot.
            "--clearinghouse-url".into(),
            "http://127.0.0.1:9".into(),
            "--api-token".into(),
            "bench.unused".into(),
        ],
        &args.dir.join("npdb.log"),
    )
    .await
}

/// dnsperf against one server with one query file.
struct Dnsperf {
    server: SocketAddr,
    query_file: PathBuf,
    seconds: u64,
}

impl Dnsperf {
    /// One run of `seconds`, with `extra` arguments.
    async fn run(&self, extra: &[&str]) -> anyhow::Result<DnsperfRun> {
        let mut v: Vec<String> = vec![
            "-s".into(),
            self.server.ip().to_string(),
            "-p".into(),
            self.server.port().to_string(),
            "-d".into(),
            self.query_file.display().to_string(),
            "-l".into(),
            self.seconds.to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        dnsperf(&v).await
    }
}

impl DnsperfRun {
    /// Answers with a NAPTR record per second: NOERROR share of the completed rate.
    fn answers_per_s(&self) -> f64 {
        self.noerror as f64 / self.completed.max(1) as f64 * self.qps
    }

    /// The latency at quantile `p` in ms (`latencies` sorted), or 0 without latencies.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i] * 1000.0
    }
}

impl Report {
    fn print(&self, outstanding: u32) {
        println!("ported numbers      {}", self.numbers);
        println!(
            "NAPTR answers       {:.0}/s (median of {:?}; {} outstanding)",
            self.answers_per_s, self.runs_answers_per_s, outstanding
        );
        println!(
            "queries             {} sent, {} completed, {} lost",
            self.queries_sent, self.queries_completed, self.queries_lost
        );
        println!(
            "latency at {}/s    p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.latency_rate_qps, self.p50_ms, self.p99_ms, self.max_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dnsperf_output() {
        let out = "\
> NOERROR 1.0.0.0.0.0.0.9.7.4.e164.arpa NAPTR 0.000150
> NOERROR 2.0.0.0.0.0.0.9.7.4.e164.arpa NAPTR 0.000250
Statistics:

  Queries sent:         1000
  Queries completed:    998 (99.80%)
  Queries lost:         2 (0.20%)

  Response codes:       NOERROR 990 (99.20%), NXDOMAIN 8 (0.80%)
  Average packet size:  request 45, response 130
  Run time (s):         1.000
  Queries per second:   998.000000
";
        let r = parse_dnsperf(out);
        assert_eq!((r.sent, r.completed, r.lost, r.noerror), (1000, 998, 2, 990));
        assert_eq!(r.qps, 998.0);
        assert_eq!(r.latencies, vec![0.000150, 0.000250]);
    }
}
