//! The `sim` target of `fuzz-targets` under AFL++, in persistent mode (many inputs per
//! process). One binary a target, so that its coverage map holds only the code it can reach.

fn main() {
    afl::fuzz!(|data: &[u8]| fuzz_targets::sim::run(data));
}
