//! `numport bench smsauth`: what SMS authentication (F3) costs.
//!
//! - `tag_us`, `verify_us`: the SMS center tagging one SMS-DELIVER and the handset verifying
//!   one (`sms::auth`), on one core: a bank's one-part SMS in the 7-bit alphabet, as most SMS
//!   are, and the median over `--rounds` rounds of `--per-round` each, so a round the machine
//!   spent elsewhere does not count. Verification includes the replay window.
//! - `sms_throughput_ratio`: the SMS benchmark's throughput phase (`numport bench sms`:
//!   messages from ESMEs over SMPP to terminals over the air, a share across the interconnect)
//!   run in pairs in this one run, on clusters alike but for `[sms_auth] enabled`: tagging on
//!   (and every handset verifying, every message found authentic) and off. The pairs alternate
//!   which goes first, so a machine that grows busier or quieter during the run favours
//!   neither; the figure is the median over `--pairs` of each pair's ratio of end-to-end rates.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sms::address::Address;
use sms::auth::{HeldKey, SmsAuthKey, Verifier};
use sms::tpdu::{DataCoding, SmsDeliver, Timestamp, UserData};

#[derive(clap::Args)]
pub struct Args {
    /// Rounds of the one-core timings (the median is reported).
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// Messages tagged and verified per round.
    #[arg(long, default_value_t = 20_000)]
    per_round: usize,
    /// Pairs of throughput runs, with and without authentication (the median ratio is
    /// reported).
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// Messages of each throughput run (0 skips the throughput runs).
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// SMPP connections submitting (each with its own window).
    #[arg(long, default_value_t = 8)]
    esmes: usize,
    /// Submits outstanding per connection.
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Attached terminals at each of opa and opb.
    #[arg(long, default_value_t = 200)]
    terminals: usize,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "data/bench-smsauth")]
    dir: PathBuf,
}

const SUBSCRIBER: &str = "4790000001";

fn sample() -> SmsDeliver {
    SmsDeliver {
        more_messages: false,
        status_report_indication: false,
        reply_path: false,
        originator: Address::alphanumeric("MyBank"),
        pid: 0,
        dcs: DataCoding::GSM7,
        scts: Timestamp { year: 26, month: 12, day: 7, hour: 14, minute: 5, second: 9, tz_quarters: 4 },
        user_data: UserData::gsm7("MyBank: 2 500,00 NOK paid to Kiwi 0417 on card *1234. Not you? Call 915 03 000.")
            .unwrap_or_else(|_| unreachable!("the sample text is in the 7-bit alphabet")),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (tag_us, verify_us): medians over the rounds of the mean per message.
fn one_core(rounds: usize, per_round: usize) -> anyhow::Result<(f64, f64)> {
    let key = SmsAuthKey::new(1, &[0x5A; sms::auth::KEY_LEN]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plain = sample();
    let (mut tag, mut verify) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut counter = 1u32;
    for _ in 0..rounds.max(1) {
        // Tag: a copy of the message as the center has it, tagged.
        let mut tagged = Vec::with_capacity(per_round);
        let started = Instant::now();
        for _ in 0..per_round {
            let mut d = plain.clone();
            key.tag(&mut d, SUBSCRIBER, counter);
            counter += 1;
            tagged.push(d);
        }
        tag.push(started.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        // Verify: each once, in order, through the replay window.
        let mut handset =
            Verifier { keys: vec![HeldKey { key: key.clone(), accepted_until: None }], ..Verifier::default() };
        let started = Instant::now();
        let mut authentic = 0usize;
        for d in &tagged {
            authentic += usize::from(black_box(handset.verify(black_box(d), SUBSCRIBER, 0)).is_authentic());
        }
        verify.push(started.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        anyhow::ensure!(authentic == per_round, "{} of {per_round} verified", authentic);
    }
    Ok((median(tag), median(verify)))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    eprintln!("one core: {} rounds of {} messages tagged and verified ...", args.rounds, args.per_round);
    let (tag_us, verify_us) = one_core(args.rounds, args.per_round)?;
    eprintln!("  tag {tag_us:.3} µs, verify {verify_us:.3} µs (medians)");
    let pairs = if args.messages > 0 { throughput_pairs(&args).await? } else { Vec::new() };
    let ratios: Vec<f64> = pairs.iter().map(|(on, off)| on / off).collect();
    let ratio = (!ratios.is_empty()).then(|| median(ratios.clone()));
    let throughput = (!pairs.is_empty())
        .then(|| (median(pairs.iter().map(|p| p.0).collect()), median(pairs.iter().map(|p| p.1).collect())));
    let result = serde_json::json!({
        "bench": "smsauth",
        "mac": "AES-256-CMAC, 64 bits",
        "tag_us": tag_us,
        "verify_us": verify_us,
        "rounds": args.rounds,
        "per_round": args.per_round,
        "messages": args.messages,
        "sms_per_s_with_auth": throughput.map(|t| t.0),
        "sms_per_s_without_auth": throughput.map(|t| t.1),
        "sms_throughput_ratio": ratio,
        "pair_ratios": ratios,
    });
    if args.json {
        println!("{result}");
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `(with, without)` end-to-end rates of each pair; odd pairs run without authentication first.
async fn throughput_pairs(args: &Args) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut pairs = Vec::with_capacity(args.pairs);
    for pair in 0..args.pairs.max(1) {
        let run = |on: bool| {
            let dir = format!("{pair}-{}", if on { "on" } else { "off" });
            async move { super::sms::throughput_only(&sms_args(args, &dir), on).await }
        };
        let (on, off) = if pair % 2 == 0 {
            let on = run(true).await?;
            (on, run(false).await?)
        } else {
            let off = run(false).await?;
            (run(true).await?, off)
        };
        eprintln!("  pair {pair}: {on:.0}/s with authentication, {off:.0}/s without: ratio {:.3}", on / off);
        pairs.push((on, off));
    }
    Ok(pairs)
}

fn sms_args(args: &Args, run: &str) -> super::sms::Args {
    super::sms::Args::throughput(args.messages, args.esmes, args.window, args.terminals, args.dir.join(run))
}
