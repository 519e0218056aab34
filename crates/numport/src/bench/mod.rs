//! `numport bench`: the figures docs/BENCHMARKS.md quotes.

mod porting;

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
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.which {
        Which::Porting(a) => porting::run(a).await,
    }
}
