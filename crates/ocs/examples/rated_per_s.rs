//! `cargo run --release -p ocs --example rated_per_s`: the rating function alone on one core
//! (`ocs::bench::rated_per_s`), five runs of two seconds, printed as JSON with the median.

fn main() {
    let mut runs: Vec<f64> = (0..5).map(|_| ocs::bench::rated_per_s(std::time::Duration::from_secs(2))).collect();
    runs.sort_by(f64::total_cmp);
    let median = runs[runs.len() / 2];
    println!(
        "{{\"rated_per_s\": {median:.0}, \"runs\": [{}]}}",
        runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
    );
}
