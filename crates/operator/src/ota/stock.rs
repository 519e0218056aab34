//! The operator's card stock: the cards it holds the keys of, loaded from the card
//! manufacturer's personalisation data (`numport operator sim-stock add`).
//!
//! A card's IMSI is taken from `[accounts] imsi_pool` unless the data names one; keys not
//! given are generated (what the operator then sends the manufacturer to personalise the
//! card with). K_sim, KIc and KID are sealed under the node's key-encryption key, each for its
//! own context ([`Context`]), before they reach the database.

use numport_core::Millis;

use crate::OperatorConfig;
use crate::store::OperatorStore;
use crate::store::accounts::SimCard;

/// What a sealed key is for; the card's ICCID completes it, so a sealed key opens only as the
/// key it is and only for its card.
#[derive(Debug, Clone, Copy)]
pub struct Context(&'static str);

impl Context {
    pub fn context(self, iccid: &str) -> String {
        format!("{}:{iccid}", self.0)
    }
}

pub const K_SIM_CONTEXT: Context = Context("k-sim");
pub const KIC_CONTEXT: Context = Context("ota-kic");
pub const KID_CONTEXT: Context = Context("ota-kid");

/// A card to load.
#[derive(Debug, Clone)]
pub struct NewCard {
    pub iccid: String,
    /// `None`: one from the IMSI pool.
    pub imsi: Option<String>,
    /// `None`: generated (32 bytes; 16 to 32 given).
    pub k_sim: Option<Vec<u8>>,
    pub algorithm: sim::Algorithm,
    /// Length of generated KIc and KID: 16, 24 or 32 for AES (triple DES: 16 with two keys,
    /// 24 with three, as the algorithm says).
    pub key_len: usize,
    /// `None`: generated, of `key_len`.
    pub kic: Option<Vec<u8>>,
    pub kid: Option<Vec<u8>>,
    /// The key version number of KIc and KID on the card (1 to 15).
    pub key_index: u8,
    /// Load it as already serving this number (a card issued for a ported-in number).
    pub msisdn: Option<numport_core::Msisdn>,
}

/// A card as loaded: what the manufacturer personalises it with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadedCard {
    pub iccid: String,
    pub imsi: String,
    pub k_sim: String,
    pub algorithm: String,
    pub kic: String,
    pub kid: String,
    pub key_index: u8,
}

/// Why a card was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("iccid: {0}")]
    Iccid(&'static str),
    #[error("imsi: 15 digits")]
    Imsi,
    #[error("k_sim: 16 to 32 bytes")]
    KSim,
    #[error("{0}")]
    Key(String),
    #[error("key index: 1 to 15")]
    KeyIndex,
    #[error("the IMSI pool is exhausted or empty")]
    PoolExhausted,
    #[error("a card with this ICCID or IMSI is loaded already")]
    Duplicate,
    #[error(transparent)]
    Node(#[from] crate::OperatorError),
}

fn random(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

/// Loads `card` into the stock of the node configured by `config`.
pub async fn load(
    store: &OperatorStore,
    config: &OperatorConfig,
    card: NewCard,
    now: Millis,
) -> Result<LoadedCard, StockError> {
    crate::account_opening::identity::check_iccid(&card.iccid).map_err(StockError::Iccid)?;
    if !(1..=15).contains(&card.key_index) {
        return Err(StockError::KeyIndex);
    }
    let sealer = config.sealer()?.ok_or_else(|| {
        crate::OperatorError::Config("key_encryption_key is not set: card keys cannot be sealed".into())
    })?;
    let k_sim = card.k_sim.unwrap_or_else(|| random(32));
    if !(16..=32).contains(&k_sim.len()) {
        return Err(StockError::KSim);
    }
    let key_len = match card.algorithm {
        sim::Algorithm::Aes => card.key_len,
        sim::Algorithm::TripleDes2Key => 16,
        sim::Algorithm::TripleDes3Key => 24,
    };
    let kic = card.kic.unwrap_or_else(|| random(key_len));
    let kid = card.kid.unwrap_or_else(|| random(key_len));
    for (name, key) in [("kic", &kic), ("kid", &kid)] {
        sim::Key::new(card.algorithm, key).map_err(|e| StockError::Key(format!("{name}: {e}")))?;
    }
    let imsi = match card.imsi {
        Some(i) if i.len() == 15 && i.bytes().all(|b| b.is_ascii_digit()) => i,
        Some(_) => return Err(StockError::Imsi),
        None => {
            let pool = config.accounts.imsis()?;
            store.allocate_imsi(&pool, now).await?.ok_or(StockError::PoolExhausted)?
        }
    };
    let iccid = card.iccid;
    let record = SimCard {
        iccid: iccid.clone(),
        imsi: imsi.clone(),
        k_sim_sealed: sealer.seal(K_SIM_CONTEXT.context(&iccid).as_bytes(), &k_sim),
        kic_sealed: sealer.seal(KIC_CONTEXT.context(&iccid).as_bytes(), &kic),
        kid_sealed: sealer.seal(KID_CONTEXT.context(&iccid).as_bytes(), &kid),
        algorithm: algorithm_name(card.algorithm).to_owned(),
        kic_key_index: card.key_index,
        kid_key_index: card.key_index,
        state: "blank".into(),
        account_id: None,
        ota_counter: 0,
    };
    let serving = card.msisdn.as_ref().map(|m| (m.as_str(), k_sim.as_slice()));
    store.insert_sim_card(&record, serving, now).await.map_err(|e| match e {
        crate::OperatorError::Store(s) if s.is_duplicate() => StockError::Duplicate,
        e => StockError::Node(e),
    })?;
    Ok(LoadedCard {
        iccid,
        imsi,
        k_sim: hex::encode(&k_sim),
        algorithm: algorithm_name(card.algorithm).to_owned(),
        kic: hex::encode(&kic),
        kid: hex::encode(&kid),
        key_index: card.key_index,
    })
}

/// The stored name of an OTA algorithm.
pub fn algorithm_name(a: sim::Algorithm) -> &'static str {
    match a {
        sim::Algorithm::Aes => "aes",
        sim::Algorithm::TripleDes2Key => "3des2",
        sim::Algorithm::TripleDes3Key => "3des3",
    }
}

/// The OTA algorithm of a stored or given name.
pub fn parse_algorithm(name: &str) -> Option<sim::Algorithm> {
    match name {
        "aes" => Some(sim::Algorithm::Aes),
        "3des2" => Some(sim::Algorithm::TripleDes2Key),
        "3des3" => Some(sim::Algorithm::TripleDes3Key),
        _ => None,
    }
}
