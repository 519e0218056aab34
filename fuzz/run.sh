#!/usr/bin/env bash
# Builds the fuzz binaries with afl.rs and fuzzes one target for about N executions with AFL++,
# one instance, starting from fuzz/corpus/<target> (or at most S seconds, if given); then prints
# the executions done, the time and what was found (fuzz/out/<target>/default/{crashes,hangs}).
#
#   fuzz/run.sh <target> <executions> [<seconds>]     e.g. fuzz/run.sh smpp 10000000
#
# Needs cargo-afl (`cargo install cargo-afl`, which builds its AFL++ on first use). Targets:
# smpp tpdu dns_fast dns_general feed csv sim. CARGO_TARGET_DIR and FUZZ_OUT (default fuzz/out)
# say where the build and the findings go; a second run of a target resumes from its findings.
set -euo pipefail
cd "$(dirname "$0")"

target=${1:?usage: fuzz/run.sh <target> <executions>}
execs=${2:?usage: fuzz/run.sh <target> <executions>}
limit=()
[ -n "${3:-}" ] && limit=(-V "$3")
out=${FUZZ_OUT:-out}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

mkdir -p "$out"
cargo afl build --release --quiet
binary=$CARGO_TARGET_DIR/release/$target

# A resumed run keeps its queue; a new one starts from the seeds.
input=corpus/$target
[ -f "$out/$target/default/fuzzer_stats" ] && input=-

# No terminal UI; the kernel's core_pattern and CPU governor are the machine's business.
# `-c -`: no CmpLog stage (cargo afl asks for one, but a stable build has no CmpLog
# instrumentation, so the stage would only cost executions). AFL_FAST_CAL: the targets that
# build hash maps (random iteration order) are never fully stable, and a full calibration of
# every unstable input costs more executions than it tells.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_FAST_CAL=1
start=$(date +%s)
cargo afl fuzz -c - -i "$input" -o "$out/$target" -E "$execs" "${limit[@]}" -t 1000 -- "$binary" >"$out/$target.log" 2>&1 \
    || { tail -n 30 "$out/$target.log" >&2; exit 1; }
seconds=$(($(date +%s) - start))

stats=$out/$target/default/fuzzer_stats
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
crashes=$(find "$out/$target/default/crashes" -type f -name 'id:*' | wc -l)
hangs=$(find "$out/$target/default/hangs" -type f -name 'id:*' | wc -l)
echo "target $target: $(stat execs_done) executions in ${seconds} s ($(stat execs_per_sec) per second)," \
    "corpus $(stat corpus_count), edges $(stat edges_found), crashes $crashes, hangs $hangs"
[ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ] || ls "$out/$target/default/crashes" "$out/$target/default/hangs"
