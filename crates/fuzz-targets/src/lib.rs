//! The fuzz targets: one function per parser of outside input, which takes arbitrary bytes,
//! runs them through the parser exactly as the server or importer does, and panics only when
//! an invariant breaks (a round trip that does not hold, two paths that disagree) or when the
//! parser itself panics.
//!
//! The functions are plain Rust so that two harnesses share them: the afl.rs binaries in
//! `fuzz/` (instrumented, outside the workspace; see `docs/FUZZING.md`), and this crate's test,
//! which runs every target over its seed corpus in `fuzz/corpus/<target>/` so the targets keep
//! compiling and passing with the normal test suite.

pub mod csv;
pub mod dns;
pub mod feed;
pub mod sim;
pub mod smpp;
pub mod tpdu;

/// A target: panics on an input that breaks it.
pub type Target = fn(&[u8]);

/// Every target by the name its afl binary and corpus directory carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("smpp", smpp::run),
    ("tpdu", tpdu::run),
    ("dns_fast", dns::run_fast),
    ("dns_general", dns::run_general),
    ("feed", feed::run),
    ("csv", csv::run),
    ("sim", sim::run),
];
