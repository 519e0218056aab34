//! A private PKI for one numport deployment: a CA and one certificate per role.
//!
//! Every certificate names its holder in the subject: CN is the name (`clearinghouse`, the
//! operator's name, the replica's name) and OU the role (`clearinghouse`, `operator`, `npdb`). The
//! clearinghouse reads an operator's name from a client certificate whose OU is `operator`
//! ([`crate::PeerIdentity::operator`]), so the CA is what vouches for that name.
//!
//! Files written by [`generate`] (keys mode 0600):
//!
//! | file | what |
//! | --- | --- |
//! | `ca.pem`, `ca.key` | the CA; `ca.pem` is what every client and mutual-TLS server trusts |
//! | `clearinghouse.pem`, `.key` | the clearinghouse's server certificate |
//! | `operator-NAME.pem`, `.key` | operator NAME: client certificate for the clearinghouse, and server certificate for its node's HTTP API and SMPP |
//! | `npdb-NAME.pem`, `.key` | the standalone replica NAME's server certificate |

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::{TlsError, TlsFiles};

/// The OU of an operator's certificate.
pub const ROLE_OPERATOR: &str = "operator";
/// The OU of the clearinghouse's certificate.
pub const ROLE_CLEARINGHOUSE: &str = "clearinghouse";
/// The OU of a standalone replica's certificate.
pub const ROLE_NPDB: &str = "npdb";

/// The names every server certificate is valid for, so that a deployment on one host works
/// without `--host`.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

const DAY: Duration = Duration::from_secs(86_400);

/// What to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPlan {
    /// Host names and addresses the server certificates are valid for, besides loopback.
    pub hosts: Vec<String>,
    /// One certificate per operator.
    pub operators: Vec<String>,
    /// One certificate per standalone replica.
    pub replicas: Vec<String>,
    /// How long the role certificates are valid (the CA: ten times as long).
    pub validity_days: u32,
}

/// The files [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// `ca.pem`.
    pub ca: PathBuf,
    /// `ca.pem` and `ca.key`.
    pub authority: TlsFiles,
    pub clearinghouse: TlsFiles,
    /// By operator name, in the plan's order.
    pub operators: Vec<(String, TlsFiles)>,
    /// By replica name, in the plan's order.
    pub replicas: Vec<(String, TlsFiles)>,
}

impl Pki {
    /// Operator `name`'s certificate and key.
    pub fn operator(&self, name: &str) -> Option<&TlsFiles> {
        find(&self.operators, name)
    }

    /// Replica `name`'s certificate and key.
    pub fn replica(&self, name: &str) -> Option<&TlsFiles> {
        find(&self.replicas, name)
    }
}

fn find<'a>(files: &'a [(String, TlsFiles)], name: &str) -> Option<&'a TlsFiles> {
    files.iter().find(|(n, _)| n == name).map(|(_, f)| f)
}

/// Makes a CA and one certificate per role in `dir` (created if missing). Refuses to overwrite any
/// file, so an existing CA is never replaced by accident.
pub fn generate(dir: &Path, plan: &PkiPlan) -> Result<Pki, TlsError> {
    let ca = Authority::generate("numport CA", DAY * plan.validity_days * 10)?;
    generate_with(dir, plan, &ca)
}

/// As [`generate`], with the CA given (a test keeps it to issue more certificates).
pub fn generate_with(dir: &Path, plan: &PkiPlan, ca: &Authority) -> Result<Pki, TlsError> {
    let validity = DAY * plan.validity_days;
    let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
    hosts.extend(plan.hosts.iter().cloned());
    let server =
        |role: &'static str, name: &str| Leaf { client: false, ..Leaf::new(role, name, hosts.clone(), validity) };
    let mut issued = vec![("ca".to_owned(), ca.own.clone())];
    issued.push(("clearinghouse".to_owned(), ca.issue(&server(ROLE_CLEARINGHOUSE, "clearinghouse"))?));
    for name in &plan.operators {
        let leaf = Leaf::new(ROLE_OPERATOR, name, hosts.clone(), validity);
        issued.push((format!("operator-{name}"), ca.issue(&leaf)?));
    }
    for name in &plan.replicas {
        issued.push((format!("npdb-{name}"), ca.issue(&server(ROLE_NPDB, name))?));
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_owned(), source })?;
    for (stem, _) in &issued {
        for path in Issued::paths(dir, stem) {
            if path.exists() {
                return Err(TlsError::Exists { path });
            }
        }
    }
    let mut files = Vec::with_capacity(issued.len());
    for (stem, cert) in &issued {
        files.push(cert.write(dir, stem)?);
    }
    let named = |offset: usize, names: &[String]| -> Vec<(String, TlsFiles)> {
        names.iter().cloned().zip(files[offset..].iter().cloned()).collect()
    };
    Ok(Pki {
        ca: files[0].cert.clone(),
        authority: files[0].clone(),
        clearinghouse: files[1].clone(),
        operators: named(2, &plan.operators),
        replicas: named(2 + plan.operators.len(), &plan.replicas),
    })
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    fn paths(dir: &Path, stem: &str) -> [PathBuf; 2] {
        [dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key"))]
    }

    /// Writes `STEM.pem` and `STEM.key` (mode 0600) into `dir`, refusing to overwrite either.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<TlsFiles, TlsError> {
        let [cert, key] = Self::paths(dir, stem);
        write_new(&cert, &self.cert_pem, 0o644)?;
        write_new(&key, &self.key_pem, 0o600)?;
        Ok(TlsFiles { cert, key })
    }
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AlreadyExists => TlsError::Exists { path: path.to_owned() },
        _ => TlsError::Write { path: path.to_owned(), source },
    };
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(failed)?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)
}

/// A certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The subject's OU.
    pub role: &'static str,
    /// The subject's CN.
    pub name: String,
    /// DNS names and IP addresses (subject alternative names).
    pub hosts: Vec<String>,
    /// Usable by a TLS server.
    pub server: bool,
    /// Usable by a TLS client.
    pub client: bool,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Leaf {
    /// A server and client certificate valid from an hour ago (clocks differ) for `validity`.
    pub fn new(role: &'static str, name: &str, hosts: Vec<String>, validity: Duration) -> Self {
        let now = SystemTime::now();
        Leaf {
            role,
            name: name.to_owned(),
            hosts,
            server: true,
            client: true,
            not_before: now - Duration::from_secs(3600),
            not_after: now + validity,
        }
    }

    fn params(&self) -> Result<CertificateParams, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationalUnitName, self.role);
        params.distinguished_name.push(DnType::CommonName, self.name.as_str());
        params.subject_alt_names = self.hosts.iter().map(|host| san(host)).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if self.server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if self.client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }
}

fn san(host: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name =
        host.to_owned().try_into().map_err(|_| TlsError::BadName { name: host.to_owned(), what: "a host name" })?;
    Ok(SanType::DnsName(name))
}

/// A CA that issues certificates; held in memory while a PKI is made (and by tests that need a
/// second CA or an expired certificate).
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    own: Issued,
}

impl Authority {
    /// A self-signed CA named `name`, valid from now for `validity`.
    pub fn generate(name: &str, validity: Duration) -> Result<Self, TlsError> {
        let failed = |source| TlsError::Generate { what: format!("the CA {name:?}"), source };
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + validity).into();
        let cert = params.self_signed(&key).map_err(failed)?;
        let own = Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Authority { issuer: Issuer::new(params, key), own })
    }

    /// The CA's own certificate and key.
    pub fn own(&self) -> &Issued {
        &self.own
    }

    /// Issues `leaf` with a fresh key.
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued, TlsError> {
        let failed = |source| TlsError::Generate { what: format!("the certificate of {:?}", leaf.name), source };
        if leaf.name.is_empty() || leaf.name.contains(['/', '\\', '\0']) {
            return Err(TlsError::BadName { name: leaf.name.clone(), what: "a certificate's name" });
        }
        let key = KeyPair::generate().map_err(failed)?;
        let cert = leaf.params()?.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}
