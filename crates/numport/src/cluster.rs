//! A whole portability system on one machine: a clearinghouse and three operator nodes as
//! separate processes on loopback, set up the way a portability center would set them up
//! (operators registered, ranges loaded, credentials issued, settlement accounts funded), and
//! over TLS the way a deployment runs: `numport pki` makes the certificates in `dir/pki`, the
//! clearinghouse asks every operator for its certificate (mutual TLS), and every node serves
//! HTTPS; every SMS center takes SMPP over TLS only, and the interconnects between them run
//! over TLS. [`ClusterSpec::tls`] off runs every link plain instead, so that a benchmark can
//! measure what TLS costs. The demo and the benchmarks both start one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clearinghouse::ClearinghouseConfig;
use clearinghouse::admin::{self, Credentials};
use clearinghouse_api::ClearinghouseClient;
use numport_core::proof::{PinStretch, PortKey};
use numport_core::{Clock, Millis, Money, Msisdn, OperatorName, SystemClock};
use numport_db::Db;
use numport_tls::pki::{Pki, PkiPlan};
use numport_tls::{ClientTls, ServerTls};
use operator::sealing::Sealer;
use operator::sms_center::authentication::{IssuedKey, SmsAuthConfig, issue_sim};
use operator::{OperatorConfig, OperatorStore, Subscriber};
use replica::{EnumConfig, ReplicaConfig};

use crate::handset_auth::SimKey;
use crate::launch::{Launched, launch};

/// The three operators of every cluster: name, routing number, number range prefix.
pub const OPERATORS: [(&str, &str, &str); 3] =
    [("opa", "D001", "4790"), ("opb", "D002", "4791"), ("opc", "D003", "4792")];

/// The enterprise every operator's SMS center lets bind (the bank of F1's story).
pub const BANK_SYSTEM_ID: &str = "bank";
pub const BANK_PASSWORD: &str = "bankpw";

/// Password of every interconnect account (`ic-<operator>`) in the cluster.
pub const INTERCONNECT_PASSWORD: &str = "icpw";

/// Settlement funds each operator starts with: 100,000,000.00 in minor units.
pub const INITIAL_FUNDS: Money = Money(10_000_000_000);

pub struct ClusterSpec {
    pub dir: PathBuf,
    /// The clearinghouse database; `None`: SQLite in `dir`.
    pub clearinghouse_db: Option<String>,
    /// Subscribers created at each operator, numbered from the start of its range.
    pub subscribers_per_operator: usize,
    pub pin_stretch: PinStretch,
    /// Clearinghouse settings; `listen`, `database_url` and `master_key_path` are set here.
    pub clearinghouse: ClearinghouseConfig,
    /// TLS on every link (HTTP APIs, callbacks, SMPP, interconnects), as a deployment runs;
    /// off: every link plain, for measuring the cost of TLS.
    pub tls: bool,
    /// SMS authentication at every SMS center (`[sms_auth] enabled`); the SIMs get their keys
    /// either way.
    pub sms_auth: bool,
}

impl ClusterSpec {
    /// A cluster for tests: `subscribers_per_operator` each, the PIN stretched at the cheapest
    /// cost, the clearinghouse on SQLite with its default settings, every link over TLS.
    pub fn for_tests(dir: PathBuf, subscribers_per_operator: usize) -> ClusterSpec {
        ClusterSpec {
            dir,
            clearinghouse_db: None,
            subscribers_per_operator,
            pin_stretch: PinStretch::FAST,
            clearinghouse: ClearinghouseConfig::default(),
            tls: true,
            sms_auth: true,
        }
    }
}

pub struct OperatorProc {
    pub name: OperatorName,
    pub proc: Launched,
    /// The operator's own API key at the clearinghouse.
    pub ch_client: ClearinghouseClient,
    /// That key as issued (`<key id>.<secret>`), for other processes of this operator
    /// (a standalone replica, say).
    pub api_token: String,
    pub db_url: String,
}

pub struct Cluster {
    pub dir: PathBuf,
    /// The certificates every role uses (`dir/pki`).
    pub pki: Pki,
    pub ch_config_path: PathBuf,
    pub ch: Launched,
    pub ch_db: Db,
    pub ops: Vec<OperatorProc>,
    /// Whether every link runs over TLS ([`ClusterSpec::tls`]).
    pub tls: bool,
    /// The SMS-authentication key each subscriber's SIM got from its operator, by number.
    pub sim_keys: HashMap<String, IssuedKey>,
}

/// Where an ESME binds to an operator's SMS center: over TLS, trusting the cluster's CA, or
/// plain in a cluster without TLS.
#[derive(Clone)]
pub struct SmscAccess {
    pub addr: SocketAddr,
    pub tls: Option<smsc::client::ClientTls>,
}

impl SmscAccess {
    /// Connects and binds as `system_id` in `mode`.
    pub async fn bind(
        &self,
        system_id: &str,
        password: &str,
        mode: smsc::BindMode,
    ) -> Result<(smsc::client::Client, tokio::sync::mpsc::Receiver<smsc::client::Incoming>), smsc::client::ClientError>
    {
        smsc::client::Client::bind_over(self.addr, self.tls.as_ref(), system_id, password, mode).await
    }
}

/// The PIN of a cluster subscriber, six digits derived from its number, so that a handset
/// can be given it.
pub fn pin_of(msisdn: &Msisdn) -> String {
    let h = msisdn.as_str().bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    format!("{:06}", h % 1_000_000)
}

/// A cluster subscriber's port key, from its SIM ([`sim_of`]) and PIN ([`pin_of`]), as the
/// handset and, once at provisioning, the home operator derive it ([`crate::handset`]).
pub fn terminal_key(msisdn: &Msisdn, stretch: PinStretch) -> anyhow::Result<PortKey> {
    let (imsi, k_sim) = sim_of(msisdn);
    Ok(crate::handset::port_key(&k_sim, &pin_of(msisdn), &imsi, stretch)?)
}

/// The SIM of a cluster subscriber: an IMSI made of a test network code and the number's last
/// ten digits, and a per-SIM secret.
pub fn sim_of(msisdn: &Msisdn) -> (String, Vec<u8>) {
    let digits = msisdn.as_str();
    let imsi = format!("24201{}", &digits[digits.len().saturating_sub(10)..]);
    (imsi, format!("k-sim-of-{msisdn}").into_bytes())
}

/// The `i`-th subscriber number of an operator's range.
pub fn subscriber_number(prefix: &str, i: usize) -> Msisdn {
    format!("{prefix}{:06}", i + 1)
        .parse()
        .unwrap_or_else(|_| unreachable!("prefix and index make a valid E.164 number"))
}

impl Cluster {
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        let dir = spec.dir.clone();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let pki = make_pki(&dir)?;
        let now = SystemClock.now_ms();
        let ch_cfg = ClearinghouseConfig {
            tls: spec.tls.then(|| ServerTls {
                cert: pki.clearinghouse.cert.clone(),
                key: pki.clearinghouse.key.clone(),
                client_ca: Some(pki.ca.clone()),
            }),
            plain_http: !spec.tls,
            callback_tls: spec.tls.then(|| ClientTls { ca: pki.ca.clone(), cert: None, key: None }),
            listen: "127.0.0.1:0".parse()?,
            database_url: spec
                .clearinghouse_db
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.join("clearinghouse.db").display())),
            master_key_path: dir.join("clearinghouse.key"),
            allow_private_callback_addresses: true,
            ..spec.clearinghouse.clone()
        };
        let ch_config_path = dir.join("clearinghouse.toml");
        std::fs::write(&ch_config_path, toml::to_string(&ch_cfg)?)?;
        let ch_db = clearinghouse::store::open(&ch_cfg.database()).await?;
        let creds = set_up_clearinghouse(&ch_db, &ch_cfg, now).await?;

        // Each operator's SMS center gets its port now (SMPP over TLS, or plain SMPP in a
        // cluster without TLS), so that every operator's interconnect to the others can be
        // configured before any starts. Each probe is closed just before its operator's launch,
        // so that no other socket (an outgoing connection's ephemeral port, say) takes the port
        // while the others start.
        let probes = OPERATORS
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let smpp_addrs = probes.iter().map(|l| l.local_addr()).collect::<std::io::Result<Vec<_>>>()?;
        let mut op_cfgs = Vec::new();
        let mut sim_keys = HashMap::new();
        for (i, ((name, _, prefix), cred)) in OPERATORS.iter().zip(&creds).enumerate() {
            let db_url = format!("sqlite://{}", dir.join(format!("operator-{name}.db")).display());
            let mut cfg = operator_config(name, cred, &db_url, &dir, i, &smpp_addrs)?;
            cfg.sms_auth.enabled = spec.sms_auth;
            let sealer = cfg.sealer()?.context("an operator without a key-encryption key")?;
            sim_keys.extend(seed_operator(&db_url, name, prefix, &spec, &sealer, now).await?);
            let cfg = if spec.tls { with_tls(cfg, &pki)? } else { OperatorConfig { plain_http: true, ..cfg } };
            op_cfgs.push((cfg, db_url));
        }

        let ch = launch(
            &["clearinghouse".into(), "--config".into(), path_arg(&ch_config_path)],
            &dir.join("clearinghouse.log"),
        )
        .await?;
        let mut ops = Vec::new();
        for (((cfg, db_url), cred), probe) in op_cfgs.into_iter().zip(&creds).zip(probes) {
            drop(probe);
            ops.push(launch_operator(cfg, db_url, cred, &ch, &dir).await?);
        }
        let cluster = Cluster { dir, pki, ch_config_path, ch, ch_db, ops, tls: spec.tls, sim_keys };
        cluster.wait_for_callbacks().await?;
        Ok(cluster)
    }

    /// Operators register their callback URLs as they start; wait until all three have.
    async fn wait_for_callbacks(&self) -> anyhow::Result<()> {
        for _ in 0..500 {
            let mut conn = self.ch_db.read().await?;
            let ops = clearinghouse::store::operators::list(&mut conn).await?;
            if ops.iter().all(|o| o.callback_url.is_some()) {
                return Ok(());
            }
            drop(conn);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        anyhow::bail!("operators did not register their callback URLs; see the logs in {}", self.dir.display())
    }

    /// An HTTP client builder for the nodes' and replicas' APIs: trusting the cluster's CA,
    /// or plain in a cluster without TLS.
    pub fn http(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        if !self.tls {
            return Ok(reqwest::Client::builder());
        }
        let config = numport_tls::client_config(&self.pki.ca, None)?;
        Ok(reqwest::Client::builder().use_preconfigured_tls(std::sync::Arc::unwrap_or_clone(config)))
    }

    /// `[clearinghouse_tls]` for another process of operator `name` (a standalone replica, say).
    pub fn clearinghouse_tls(&self, name: &str) -> anyhow::Result<ClientTls> {
        client_tls(&self.pki, name)
    }

    /// Where ESMEs bind to `op`'s SMS center, and how: over TLS, verified by the cluster's CA
    /// under the address's IP, or plain in a cluster without TLS.
    pub fn smsc(&self, op: &OperatorProc) -> anyhow::Result<SmscAccess> {
        if !self.tls {
            let addr = op.proc.smpp.with_context(|| format!("{} runs no SMPP server", op.name))?;
            return Ok(SmscAccess { addr, tls: None });
        }
        let addr = op.proc.smpp_tls.with_context(|| format!("{} runs no SMPP over TLS", op.name))?;
        let tls = smsc::client::ClientTls {
            config: numport_tls::client_config(&self.pki.ca, None)?,
            server_name: addr.ip().to_string().try_into()?,
        };
        Ok(SmscAccess { addr, tls: Some(tls) })
    }

    /// Writes the configuration of a standalone replica (`numport npdb --config`) that follows
    /// the clearinghouse as operator `name`: in a cluster with TLS, it serves HTTPS with the
    /// cluster's replica certificate and presents operator `name`'s to the clearinghouse.
    pub fn write_npdb_config(&self, path: &Path, name: &str) -> anyhow::Result<()> {
        let mut config = toml::Table::new();
        if self.tls {
            let own = self.pki.replica(STANDALONE_NPDB).context("no replica certificate")?;
            let tls = ServerTls { cert: own.cert.clone(), key: own.key.clone(), client_ca: None };
            let mut replica = toml::Table::new();
            replica.insert("clearinghouse_tls".into(), toml::Value::try_from(self.clearinghouse_tls(name)?)?);
            config.insert("tls".into(), toml::Value::try_from(tls)?);
            config.insert("replica".into(), replica.into());
        } else {
            config.insert("plain_http".into(), true.into());
        }
        std::fs::write(path, toml::to_string(&config)?)?;
        Ok(())
    }

    /// The SMS-authentication key of `msisdn`'s SIM, as `numport terminal --sms-auth-key` takes it.
    pub fn sms_auth_key(&self, msisdn: &Msisdn) -> anyhow::Result<SimKey> {
        let k = self.sim_keys.get(msisdn.as_str()).with_context(|| format!("no SIM key for {msisdn}"))?;
        Ok(SimKey { version: k.version, key: k.key })
    }

    /// A handset verifier holding `msisdn`'s SIM key.
    pub fn handset_verifier(&self, msisdn: &Msisdn) -> anyhow::Result<sms::auth::Verifier> {
        let k = self.sms_auth_key(msisdn)?;
        let key = sms::auth::SmsAuthKey::new(k.version, &k.key).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(sms::auth::Verifier { keys: vec![sms::auth::HeldKey { key, accepted_until: None }], ..Default::default() })
    }

    pub fn op(&self, name: &str) -> &OperatorProc {
        self.ops.iter().find(|o| o.name.as_str() == name).unwrap_or(&self.ops[0])
    }

    /// Restart the clearinghouse process on the same configuration (after a crash).
    pub async fn restart_clearinghouse(&mut self) -> anyhow::Result<()> {
        // Same address, so the operators' configured clearinghouse URL stays right.
        let args = [
            "clearinghouse".into(),
            "--config".into(),
            path_arg(&self.ch_config_path),
            "--listen".into(),
            self.ch.http.to_string(),
        ];
        self.ch = launch(&args, &self.dir.join("clearinghouse.log")).await?;
        Ok(())
    }

    /// Start an operator again on its configuration (after `kill -9`, say). Its SMPP address
    /// (over TLS or plain) is configured and stays; HTTP, ENUM and air addresses are new.
    pub async fn restart_operator(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.ops.iter().position(|o| o.name.as_str() == name).context("no such operator")?;
        let path = self.dir.join(format!("operator-{name}.toml"));
        let args = ["operator".into(), "--config".into(), path_arg(&path)];
        self.ops[i].proc = launch(&args, &self.dir.join(format!("operator-{name}.log"))).await?;
        Ok(())
    }

    pub async fn stop(mut self) {
        for op in &mut self.ops {
            op.proc.stop().await;
        }
        self.ch.stop().await;
        self.ch_db.close().await;
    }
}

/// The portability center's set-up, on its database: the operators registered with their
/// ranges, credentials issued (returned in [`OPERATORS`] order), settlement accounts funded.
async fn set_up_clearinghouse(
    ch_db: &Db,
    ch_cfg: &ClearinghouseConfig,
    now: Millis,
) -> anyhow::Result<Vec<Credentials>> {
    let master = admin::load_or_create_master_key(&ch_cfg.master_key_path)?;
    let mut ranges = String::from("prefix,operator\n");
    let mut creds = Vec::new();
    for (name, rn, prefix) in OPERATORS {
        admin::register_operator(ch_db, &name.parse()?, &rn.parse()?, None, now).await?;
        ranges.push_str(&format!("{prefix},{name}\n"));
    }
    admin::load_ranges_csv(ch_db, ranges.as_bytes(), now).await?;
    for (name, _, _) in OPERATORS {
        creds.push(admin::issue_credentials(ch_db, &master, name, 0, now).await?);
        admin::fund(ch_db, name, INITIAL_FUNDS, &format!("initial-{name}"), now).await?;
    }
    Ok(creds)
}

/// Fills operator `name`'s database at `db_url`: its subscribers (numbered from `prefix`), with
/// the port keys and SIMs they hold, and the SMPP accounts of the bank and of the other
/// operators' interconnects.
async fn seed_operator(
    db_url: &str,
    name: &str,
    prefix: &str,
    spec: &ClusterSpec,
    sealer: &Sealer,
    now: Millis,
) -> anyhow::Result<Vec<(String, IssuedKey)>> {
    let store = OperatorStore::connect(db_url).await?;
    let mut subs = Vec::with_capacity(spec.subscribers_per_operator);
    for i in 0..spec.subscribers_per_operator {
        let msisdn = subscriber_number(prefix, i);
        let mut s = Subscriber::new(msisdn.clone(), now);
        s.port_key = Some(terminal_key(&msisdn, spec.pin_stretch)?);
        // Some history to be compensated: 12.50 arrears, 3.20 unbilled, 120.00 of
        // contract left, 50.00 deposit held → compensation 85.70.
        s.arrears = "12.50".parse::<Money>()?;
        s.unbilled_usage = "3.20".parse::<Money>()?;
        s.contract_remaining = "120.00".parse::<Money>()?;
        s.deposit_held = "50.00".parse::<Money>()?;
        subs.push(s);
    }
    store.upsert_subscribers(&subs).await?;
    let mut keys = Vec::with_capacity(subs.len());
    let sms_auth = SmsAuthConfig::default();
    for sub in &subs {
        let (imsi, k_sim) = sim_of(&sub.msisdn);
        let number = sub.msisdn.as_str();
        if let Some(key) = issue_sim(&store, sealer, &sms_auth, &imsi, number, &k_sim, now).await? {
            keys.push((number.to_owned(), key));
        }
    }
    let bank = smsc::EsmeAccount::new(BANK_SYSTEM_ID, BANK_PASSWORD, 100_000)
        .map_err(|e| anyhow::anyhow!("hashing the bank's password: {e}"))?;
    store.upsert_esme(&bank, now).await?;
    for (peer, _, _) in OPERATORS.iter().filter(|(p, _, _)| p != &name) {
        let account = smsc::EsmeAccount::new(&format!("ic-{peer}"), INTERCONNECT_PASSWORD, 100_000)
            .map_err(|e| anyhow::anyhow!("hashing an interconnect password: {e}"))?;
        store.upsert_esme(&account, now).await?;
    }
    store.close().await;
    Ok(keys)
}

/// The configuration of operator `name`, the `index`-th of [`OPERATORS`], without TLS: its SMPP
/// server on `smpp_addrs[index]`, interconnects to the others' addresses; every other address
/// is chosen at launch. The clearinghouse URL is set at launch. [`with_tls`] moves the SMPP
/// server and the interconnects to TLS.
fn operator_config(
    name: &str,
    cred: &Credentials,
    db_url: &str,
    dir: &Path,
    index: usize,
    smpp_addrs: &[SocketAddr],
) -> anyhow::Result<OperatorConfig> {
    let prefix = OPERATORS[index].2;
    Ok(OperatorConfig {
        name: name.parse()?,
        listen: "127.0.0.1:0".parse()?,
        database_url: db_url.to_owned(),
        api_token: cred.api_token.clone(),
        callback_secret: cred.callback_secret.clone(),
        key_encryption_key: operator::sealing::Sealer::generate_hex(),
        npdb: ReplicaConfig {
            data_dir: Some(dir.join(format!("npdb-{name}"))),
            enum_dns: EnumConfig { listen: Some("127.0.0.1:0".parse()?), ..EnumConfig::default() },
            ..OperatorConfig::default().npdb
        },
        air_listen: Some("127.0.0.1:0".parse()?),
        // Self-service accounts (F7): numbers above the demo's subscribers, IMSIs in the
        // operator's own MNC (`sim_of`'s are in 24201 below 9…).
        accounts: operator::account_opening::AccountsConfig {
            msisdn_pool: vec![format!("{prefix}900000-{prefix}900999")],
            imsi_pool: vec![format!("2420{n}9000000000-2420{n}9000000999", n = index + 1)],
            ..Default::default()
        },
        ota: operator::ota::OtaConfig { sms_center_address: format!("+{prefix}999999"), ..Default::default() },
        smpp: operator::config::SmppSection {
            listen: Some(smpp_addrs[index]),
            ..operator::config::SmppSection::default()
        },
        interconnect: OPERATORS
            .iter()
            .zip(smpp_addrs)
            .filter(|((peer, _, _), _)| peer != &name)
            .map(|((peer, _, _), addr)| {
                Ok(operator::config::InterconnectPeer {
                    operator: peer.parse()?,
                    addr: *addr,
                    system_id: format!("ic-{name}"),
                    password: INTERCONNECT_PASSWORD.into(),
                    tls: None,
                    enquire_link_ms: operator::config::DEFAULT_ENQUIRE_LINK_MS,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        ..OperatorConfig::default()
    })
}

/// The cluster's CA and certificates: the clearinghouse, each operator, one standalone replica.
fn make_pki(dir: &Path) -> anyhow::Result<Pki> {
    let plan = PkiPlan {
        hosts: Vec::new(),
        operators: OPERATORS.iter().map(|(name, _, _)| name.to_string()).collect(),
        replicas: vec![STANDALONE_NPDB.into()],
        validity_days: 30,
    };
    Ok(numport_tls::pki::generate(&dir.join("pki"), &plan)?)
}

/// The name of the standalone replica's certificate.
pub const STANDALONE_NPDB: &str = "npdb";

/// Operator `name` presents its certificate to the clearinghouse and serves HTTPS with it;
/// its SMS center takes SMPP over TLS only, with the same certificate, on the port plain SMPP
/// would have had; its interconnects go over TLS, trusting the cluster's CA.
fn with_tls(cfg: OperatorConfig, pki: &Pki) -> anyhow::Result<OperatorConfig> {
    let own = pki.operator(cfg.name.as_str()).context("an operator without a certificate")?;
    let smpp_listen = cfg.smpp.listen.context("an operator without an SMPP address")?;
    let peer_tls = operator::config::PeerTls { ca: pki.ca.clone(), server_name: None };
    Ok(OperatorConfig {
        tls: Some(ServerTls { cert: own.cert.clone(), key: own.key.clone(), client_ca: None }),
        plain_http: false,
        clearinghouse_tls: Some(client_tls(pki, cfg.name.as_str())?),
        smpp: operator::config::SmppSection {
            listen: None,
            tls: Some(operator::config::SmppTls { listen: smpp_listen, cert: own.cert.clone(), key: own.key.clone() }),
            ..cfg.smpp
        },
        interconnect: cfg
            .interconnect
            .into_iter()
            .map(|peer| operator::config::InterconnectPeer { tls: Some(peer_tls.clone()), ..peer })
            .collect(),
        ..cfg
    })
}

fn client_tls(pki: &Pki, name: &str) -> anyhow::Result<ClientTls> {
    let own = pki.operator(name).with_context(|| format!("no certificate for operator {name}"))?;
    Ok(ClientTls { ca: pki.ca.clone(), cert: Some(own.cert.clone()), key: Some(own.key.clone()) })
}

/// Writes the operator's configuration, pointed at the running clearinghouse `ch`, and
/// starts the operator process on it.
async fn launch_operator(
    mut cfg: OperatorConfig,
    db_url: String,
    cred: &Credentials,
    ch: &Launched,
    dir: &Path,
) -> anyhow::Result<OperatorProc> {
    cfg.clearinghouse_url = ch.url();
    let path = dir.join(format!("operator-{}.toml", cfg.name));
    std::fs::write(&path, toml::to_string(&cfg)?)?;
    let proc = launch(
        &["operator".into(), "--config".into(), path_arg(&path)],
        &dir.join(format!("operator-{}.log", cfg.name)),
    )
    .await?;
    Ok(OperatorProc {
        name: cfg.name.clone(),
        proc,
        ch_client: ClearinghouseClient::with_tls(&ch.url(), &cred.api_token, cfg.clearinghouse_tls.as_ref())?,
        api_token: cred.api_token.clone(),
        db_url,
    })
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}
