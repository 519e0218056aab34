//! `numport pki`: the CA and the certificates of one deployment (see `numport_tls::pki` for the
//! files and what each certificate names).

use std::path::PathBuf;
use std::process::ExitCode;

use numport_core::OperatorName;
use numport_tls::pki::{self, PkiPlan};

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write into (created; existing files are never overwritten).
    #[arg(long)]
    dir: PathBuf,
    /// An operator to issue a certificate for (its client certificate at the clearinghouse,
    /// and its node's and SMPP server's certificate); repeat for each.
    #[arg(long = "operator")]
    operators: Vec<OperatorName>,
    /// A standalone replica (`numport npdb`) to issue a server certificate for; repeat for each.
    #[arg(long = "npdb")]
    replicas: Vec<String>,
    /// A host name or address the server certificates are valid for besides localhost,
    /// 127.0.0.1 and ::1; repeat for each.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Validity of the role certificates in days (the CA's: ten times as long).
    #[arg(long, default_value_t = 825)]
    days: u32,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = PkiPlan {
        hosts: args.hosts,
        operators: args.operators.iter().map(|o| o.to_string()).collect(),
        replicas: args.replicas,
        validity_days: args.days,
    };
    let made = pki::generate(&args.dir, &plan)?;
    println!(
        "CA              {}  (trusted by every client; keep {} offline)",
        made.ca.display(),
        made.authority.key.display()
    );
    println!("clearinghouse   {}  {}", made.clearinghouse.cert.display(), made.clearinghouse.key.display());
    for (name, files) in made.operators.iter().chain(&made.replicas) {
        println!("{name:<15} {}  {}", files.cert.display(), files.key.display());
    }
    Ok(ExitCode::SUCCESS)
}
