//! `numport-fuzz <target>`: one fuzz target of `fuzz-targets` under AFL++, in persistent mode
//! (many inputs per process). The target names are those of `fuzz_targets::TARGETS`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(run) = fuzz_targets::target(&name) else {
        let names: Vec<&str> = fuzz_targets::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: numport-fuzz <target>; targets: {}", names.join(" "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| run(data));
}
