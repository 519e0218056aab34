//! Operator authentication: `Authorization: Bearer <key id>.<secret>`.
//!
//! The database keeps only SHA-256 of the secret (a 256-bit random value, so a fast hash is
//! enough; a slow password hash would protect nothing more and cost every request). Verified
//! keys are cached for [`CACHE_TTL_MS`], so a rotation or revocation takes effect within it.
//! Each cached key carries its operator's rate-limit bucket ([`crate::rate`]): a request that
//! passes authentication takes a token from it, or is refused with 429.
//!
//! Under mutual TLS (`[tls] client_ca`) the caller's certificate names an operator too, and it
//! must be the key's: a stolen key is of no use without that operator's certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use numport_core::{Millis, OperatorName};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use numport_tls::PeerIdentity;
use numport_tls::http::ClientCertificate;

use crate::Clearinghouse;
use crate::error::{Error, Result};
use crate::rate::Bucket;

pub const CACHE_TTL_MS: Millis = 2_000;

/// The authenticated operator making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub operator_id: i64,
    pub name: OperatorName,
}

impl Caller {
    pub fn actor(&self) -> String {
        format!("operator:{}", self.name)
    }
}

/// A freshly issued API key: shown once, never stored whole.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key_id: String,
    pub token: String,
    pub secret_hash: String,
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn new_key() -> IssuedKey {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let key_id = format!("k{}", hex::encode(id));
    let secret = hex::encode(secret);
    IssuedKey { token: format!("{key_id}.{secret}"), secret_hash: hash_secret(&secret), key_id }
}

/// A verified token: its operator, when the cache forgets it, and its operator's bucket.
type Entry = (Caller, Millis, Arc<Bucket>);

/// Verified tokens by hash of the whole token, with their expiry in the cache.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl AuthCache {
    fn get(&self, token_hash: &[u8; 32], now: Millis) -> Option<(Caller, Arc<Bucket>)> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token_hash).filter(|(_, exp, _)| *exp > now).map(|(c, _, b)| (c.clone(), b.clone()))
    }

    fn put(&self, token_hash: [u8; 32], entry: Entry) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            let expires = entry.1;
            map.retain(|_, (_, exp, _)| *exp > expires - CACHE_TTL_MS);
        }
        map.insert(token_hash, entry);
    }
}

impl Clearinghouse {
    /// Check a bearer token against the stored key hashes.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        Ok(self.verify(token).await?.0)
    }

    /// [`Clearinghouse::authenticate`], then take a token from the operator's bucket: 429
    /// `rate_limited` when it is empty.
    pub async fn admit(&self, token: &str) -> Result<Caller> {
        let (caller, bucket) = self.verify(token).await?;
        let now_us = self.clock.now_ms().saturating_mul(1000);
        match self.rate.take(&bucket, now_us) {
            Ok(()) => Ok(caller),
            Err(wait_us) => Err(Error::RateLimited { retry_after_s: (wait_us as u64).div_ceil(1_000_000).max(1) }),
        }
    }

    /// The operator a token belongs to, and its bucket.
    async fn verify(&self, token: &str) -> Result<(Caller, Arc<Bucket>)> {
        let now = self.clock.now_ms();
        let token_hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.auth_cache.get(&token_hash, now) {
            return Ok(hit);
        }
        let (key_id, secret) = token.split_once('.').ok_or(Error::Unauthorized)?;
        if key_id.len() > 64 || secret.len() > 128 {
            return Err(Error::Unauthorized);
        }
        let mut conn = self.db.read().await?;
        let key = crate::store::operators::api_key(&mut conn, key_id).await?.ok_or(Error::Unauthorized)?;
        let hash_ok: bool = hash_secret(secret).as_bytes().ct_eq(key.secret_hash.as_bytes()).into();
        if !hash_ok || key.revoked_at.is_some_and(|at| at <= now) {
            return Err(Error::Unauthorized);
        }
        let op = crate::store::operators::by_id(&mut conn, key.operator_id).await?;
        let caller = Caller { operator_id: op.id, name: op.name };
        let mut expires = now + CACHE_TTL_MS;
        if let Some(at) = key.revoked_at {
            expires = expires.min(at);
        }
        let bucket = self.rate.bucket(caller.operator_id);
        self.auth_cache.put(token_hash, (caller.clone(), expires, bucket.clone()));
        Ok((caller, bucket))
    }
}

impl FromRequestParts<Clearinghouse> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, ch: &Clearinghouse) -> Result<Caller> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::Unauthorized)?;
        let token = header.strip_prefix("Bearer ").ok_or(Error::Unauthorized)?.trim();
        let caller = ch.admit(token).await?;
        if let Some(ClientCertificate(peer)) = parts.extensions.get::<ClientCertificate>() {
            check_certificate(&caller, peer)?;
        }
        Ok(caller)
    }
}

/// The operator a client certificate names must be the one the API key belongs to.
fn check_certificate(caller: &Caller, peer: &PeerIdentity) -> Result<()> {
    match peer.operator() {
        Some(name) if name == caller.name.as_str() => Ok(()),
        Some(name) => Err(Error::Forbidden(format!(
            "the client certificate is operator {name}'s, the API key operator {}'s",
            caller.name
        ))),
        None => Err(Error::Forbidden("the client certificate names no operator".into())),
    }
}
