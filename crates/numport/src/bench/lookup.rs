//! `numport bench lookup`: in-process lookups over an index of ported numbers (F2).
//!
//! Builds the index of `npdb::bench` (`--numbers` ported numbers over a few ranges of three
//! operators), then times single-core lookups, half of them ported numbers and half numbers
//! answered by their range holder. Reports the build time, memory per ported number (the
//! index's own heap accounting and the resident-set growth across the build) and lookups/s.
//! The run is single-threaded; run it on an otherwise idle machine.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Ported numbers in the index (at most 50 million).
    #[arg(long, default_value_t = 10_000_000)]
    numbers: usize,
    /// Lookups to time.
    #[arg(long, default_value_t = 50_000_000)]
    lookups: usize,
    /// Seed of the query mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.numbers <= npdb::bench::MAX_NUMBERS, "--numbers at most {}", npdb::bench::MAX_NUMBERS);
    let r = npdb::bench::bench_lookup(args.numbers, args.lookups, args.seed);
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("ported numbers     {}", r.numbers);
        println!("build              {:.2} s", r.build_s);
        println!("snapshot load      {:.2} s ({} MiB)", r.snapshot_load_s, r.snapshot_bytes >> 20);
        println!(
            "memory (index)     {} bytes, {:.1} bytes per ported number",
            r.memory_bytes, r.bytes_per_ported_number
        );
        println!("memory (RSS delta) {:.1} bytes per ported number", r.rss_bytes_per_ported_number);
        println!("huge pages         {} MiB", r.huge_page_bytes >> 20);
        println!("lookups            {} in one thread", r.lookups);
        println!("single lookups     {:.1} M/s", r.lookups_per_s / 1e6);
        println!("batched lookups    {:.1} M/s", r.batch_lookups_per_s / 1e6);
    }
    Ok(ExitCode::SUCCESS)
}
