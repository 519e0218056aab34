//! `numport bench`: the figures docs/BENCHMARKS.md quotes.

mod enum_dns;
mod lookup;
mod ocs;
mod ota;
mod porting;
mod propagation;
mod provisioning;
mod sms;
mod smsauth;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// Complete ports through the real HTTP API, three operator processes auto-answering.
    Porting(porting::Args),
    /// In-process portability lookups over an index of ported numbers (one core).
    Lookup(lookup::Args),
    /// NAPTR answers per second from a replica's ENUM server, driven by dnsperf.
    Enum(enum_dns::Args),
    /// Time from settlement until every replica (three operator nodes and a standalone one)
    /// answers the new route.
    Propagation(propagation::Args),
    /// Provisioning under overload: throughput, then mixed load while the HLR drops to a
    /// fifth of its capacity and recovers; priority latency, capacity kept, nothing lost.
    Provisioning(provisioning::Args),
    /// Short messages end to end: ESMEs submit to opa's SMS center over SMPP, terminals
    /// attached at opa and opb receive them; then a fixed-rate latency run and a `kill -9`.
    Sms(sms::Args),
    /// The OTA server (F7): secured packets built and verified per second on one core, and
    /// self-service request to the card's proof of receipt through a node, under load.
    Ota(ota::Args),
    /// What SMS authentication costs: tagging and verifying one SMS on one core, and the SMS
    /// benchmark's end-to-end throughput with it on divided by the same with it off.
    Smsauth(smsauth::Args),
    /// The OCS (F4) as its own process, driven over loopback Diameter Gy by the network
    /// simulator: CCRs per second, CCA latency at a fixed rate, rating alone, and the books.
    Ocs(ocs::Args),
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.which {
        Which::Porting(a) => porting::run(a).await,
        Which::Lookup(a) => lookup::run(a),
        Which::Enum(a) => enum_dns::run(a).await,
        Which::Propagation(a) => propagation::run(a).await,
        Which::Sms(a) => sms::run(a).await,
        Which::Smsauth(a) => smsauth::run(a).await,
        Which::Provisioning(a) => provisioning::run(a).await,
        Which::Ota(a) => ota::run(a).await,
        Which::Ocs(a) => ocs::run(a).await,
    }
}
