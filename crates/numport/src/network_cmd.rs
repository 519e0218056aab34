//! `numport network`: a simulated switching centre and packet gateway (crate `network`) that
//! places calls and data sessions for a range of subscribers against an OCS, over Diameter Gy
//! and the OCS's HTTP API, writes the offline CDR files, and prints what happened as JSON.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use diameter::base::Identity;
use network::cdr_file::Rotation;
use network::ocs_api::OcsApi;
use network::sim::{SimConfig, run as run_network};
use network::traffic::{Profile, Subscribers};

#[derive(clap::Args)]
pub struct Args {
    /// An OCS's Diameter address; repeat it for the addresses to fail over to, in order.
    #[arg(long = "ocs", required = true)]
    ocs: Vec<SocketAddr>,
    /// The OCS's HTTP API (online-charging list, partial CDRs, data usage records).
    #[arg(long)]
    api_url: String,
    /// The OCS API's bearer token.
    #[arg(long, env = "NUMPORT_OCS_API_TOKEN", hide_env_values = true)]
    api_token: String,
    /// Subscribers, as `first-last` MSISDNs.
    #[arg(long, default_value = "4790000000-4790000999", value_parser = parse_subscribers)]
    subscribers: Subscribers,
    /// Called-number prefixes (each completed with random digits to 10 digits); repeatable.
    #[arg(long = "called-prefix")]
    called_prefixes: Vec<String>,
    /// Calls started per second.
    #[arg(long, default_value_t = 20.0)]
    calls_per_s: f64,
    /// Data sessions started per second.
    #[arg(long, default_value_t = 5.0)]
    data_per_s: f64,
    /// Seconds during which calls and sessions are started.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds to wait for the calls still in progress after that.
    #[arg(long, default_value_t = 60.0)]
    drain: f64,
    /// Simulated time runs this many times faster than the wall clock.
    #[arg(long, default_value_t = 60.0)]
    speedup: f64,
    /// Mean duration of an ordinary call, seconds.
    #[arg(long, default_value_t = 90.0)]
    mean_call_s: f64,
    /// Share of calls that last 10 to 40 minutes.
    #[arg(long, default_value_t = 0.05)]
    long_call_share: f64,
    /// Share of online calls charged on partial CDRs instead of Gy.
    #[arg(long, default_value_t = 0.2)]
    partial_cdr_share: f64,
    /// A partial CDR every this many minutes of a call.
    #[arg(long, default_value_t = 5)]
    partial_every_min: u64,
    /// Seconds asked for in each voice CCR.
    #[arg(long, default_value_t = 300)]
    quota_s: u32,
    /// Octets asked for per data Rating-Group in each CCR.
    #[arg(long, default_value_t = 10_000_000)]
    quota_octets: u64,
    /// Where the CDR files are written.
    #[arg(long, default_value = "data/network/cdr")]
    cdr_dir: PathBuf,
    /// Close a CDR file after this many records.
    #[arg(long, default_value_t = 100_000)]
    cdr_max_records: u64,
    /// Close a CDR file after this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    cdr_max_bytes: u64,
    /// Close a CDR file after it has been open this many seconds.
    #[arg(long, default_value_t = 300.0)]
    cdr_max_age_s: f64,
    #[arg(long, default_value = "msc.numport.local")]
    origin_host: String,
    #[arg(long, default_value = "numport.local")]
    origin_realm: String,
    /// The OCS's realm.
    #[arg(long, default_value = "numport.local")]
    destination_realm: String,
    /// Seed of the traffic: the same seed places the same calls.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_subscribers(s: &str) -> Result<Subscribers, String> {
    Subscribers::parse(s).ok_or_else(|| "expected first-last, like 4790000000-4790000999".into())
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{what} {s}"))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.speedup >= 1.0, "--speedup must be at least 1");
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let identity = Identity {
        origin_host: args.origin_host.clone(),
        origin_realm: args.origin_realm.clone(),
        host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        vendor_id: 0,
        product_name: "numport-network".into(),
        origin_state_id: started.as_secs() as u32,
    };
    let mut profile = Profile {
        subscribers: args.subscribers,
        mean_call_s: args.mean_call_s,
        long_call_share: args.long_call_share,
        partial_cdr_share: args.partial_cdr_share,
        ..Profile::default()
    };
    if !args.called_prefixes.is_empty() {
        profile.called_prefixes = args.called_prefixes;
    }
    let config = SimConfig {
        identity,
        destination_realm: args.destination_realm,
        ocs: args.ocs,
        api: OcsApi::new(&args.api_url, &args.api_token),
        profile,
        seed: args.seed,
        calls_per_s: args.calls_per_s,
        data_per_s: args.data_per_s,
        duration: seconds(args.duration, "duration")?,
        drain: seconds(args.drain, "drain")?,
        speedup: args.speedup,
        quota_s: args.quota_s,
        quota_octets: args.quota_octets,
        partial_every_s: args.partial_every_min.max(1) * 60,
        list_refresh: Duration::from_secs(2),
        cdr_dir: args.cdr_dir,
        rotation: Rotation {
            max_records: args.cdr_max_records.max(1),
            max_bytes: args.cdr_max_bytes.max(1),
            max_age: seconds(args.cdr_max_age_s, "cdr-max-age-s")?,
        },
        request_timeout: Duration::from_secs(5),
    };
    let summary = run_network(config).await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}
