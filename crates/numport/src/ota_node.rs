//! One operator node with self-service account opening and its OTA server, started as a
//! process on loopback with blank cards in its stock: what `numport bench ota` and the
//! end-to-end tests of F7 run against.

use std::path::{Path, PathBuf};

use operator::ota::stock::{self, LoadedCard, NewCard};

use crate::launch::{Launched, launch};

/// The key-encryption key the node seals its card keys with.
const KEK: [u8; 32] = [0x5c; 32];

/// The node `opa` in `dir`: its configuration (`opa.toml`, SQLite, the air interface, number
/// pool 4790500000-4790599999, IMSIs from 242010000100000, `[ota] retry_initial_ms` as given)
/// and its replica's data (4790 served by opa). The configuration's path.
pub fn configure(dir: &Path, retry_initial_ms: u64) -> anyhow::Result<PathBuf> {
    let npdb = dir.join("npdb");
    let ops = [npdb::Operator { name: "opa".parse()?, routing_number: "D001".parse()? }];
    let index = npdb::Index::new(ops, [("4790".parse()?, "opa".parse()?)])?;
    replica::disk::install_index(&npdb, &index, 0, 0)?;
    let config = format!(
        "name = \"opa\"\nlisten = \"127.0.0.1:0\"\nplain_http = true\nair_listen = \"127.0.0.1:0\"\n\
         database_url = \"sqlite://{db}\"\nclearinghouse_url = \"http://127.0.0.1:9\"\napi_token = \"local.token\"\n\
         key_encryption_key = \"{kek}\"\n[smpp]\nlisten = \"none\"\n[npdb]\ndata_dir = \"{npdb}\"\n[npdb.enum_dns]\nlisten = \"127.0.0.1:0\"\n\
         [accounts]\nmsisdn_pool = [\"4790500000-4790599999\"]\nimsi_pool = [\"242010000100000-242010000199999\"]\n\
         [ota]\nspn = \"Operator A\"\nsms_center_address = \"+4790000000\"\nretry_initial_ms = {retry_initial_ms}\n",
        db = dir.join("opa.db").display(),
        kek = hex::encode(KEK),
        npdb = npdb.display(),
    );
    let path = dir.join("opa.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// The ICCID of stock card `n`.
pub fn iccid(n: u32) -> String {
    operator::account_opening::identity::with_luhn_digit(&format!("8947000001{n:08}"))
}

/// Loads cards `0..cards` into the stock of the node configured at `config` (before it runs),
/// with the IMSIs from its pool and random keys: what each card is personalised with.
pub async fn load_cards(config: &Path, cards: u32) -> anyhow::Result<Vec<LoadedCard>> {
    let cfg: operator::OperatorConfig = toml::from_str(&std::fs::read_to_string(config)?)?;
    let store = operator::OperatorStore::open(&cfg.database()).await?;
    let mut loaded = Vec::new();
    for n in 0..cards {
        let card = NewCard {
            iccid: iccid(n),
            imsi: None,
            k_sim: None,
            algorithm: sim::Algorithm::Aes,
            key_len: 16,
            kic: None,
            kid: None,
            key_index: 1,
            msisdn: None,
        };
        loaded.push(stock::load(&store, &cfg, card, numport_core::Clock::now_ms(&numport_core::SystemClock)).await?);
    }
    store.close().await;
    Ok(loaded)
}

/// Starts the node configured at `config`, its log in `opa.log` beside it.
pub async fn start(config: &Path) -> anyhow::Result<Launched> {
    let log = config.with_file_name("opa.log");
    launch(&["operator".into(), "--config".into(), config.display().to_string()], &log).await
}

/// The card the manufacturer makes from `loaded`.
pub fn card_of(loaded: &LoadedCard) -> anyhow::Result<sim::Card> {
    let keys = sim::OtaKeys::aes(&hex::decode(&loaded.kic)?, &hex::decode(&loaded.kid)?)?;
    Ok(sim::Card::personalise(&sim::Personalisation {
        imsi: loaded.imsi.clone(),
        k_sim: hex::decode(&loaded.k_sim)?,
        ota_keys: vec![(loaded.key_index, keys)],
        msisdn: None,
        spn: None,
        smsc: None,
        sms_auth: None,
    })?)
}
