//! The port-out authorisation a subscriber sends from the handset (F1 step 2, donor side): a
//! short message to the donor's service number ([`crate::OperatorConfig::service_number`]),
//! submitted over the air interface by a terminal attached with its SIM key, so the node knows
//! whose number it authorises.
//!
//! The text, one line, fields separated by spaces (the keyword in any case):
//!
//! ```text
//! PORT <recipient> <nonce> <expiry> [<msisdn>]
//! PORT opb 00112233445566778899aabbccddeeff 1795453800000
//! ```
//!
//! `recipient` is the operator the subscriber ports to, `nonce` the terminal's 16 random bytes
//! in hex (the ones its port-in request carries), `expiry` the end of the proof's validity in
//! Unix ms. A number, if given, must be the attached terminal's own: a terminal authorises no
//! number but its own. The donor computes the expected proof from the subscriber's stored port
//! key and deposits it at the clearinghouse; the proof itself never travels back to the
//! terminal.

use std::fmt;
use std::str::FromStr;

use clearinghouse_api::ClientError;
use clearinghouse_api::model::{DepositAccepted, DepositRequest};
use numport_core::proof::Nonce;
use numport_core::{Millis, Msisdn, OperatorName};
use serde_json::json;

use crate::store::{EventKind, NewPortEvent, SubscriberStatus};
use crate::{Node, OperatorError};

/// The keyword that opens an authorisation.
pub const KEYWORD: &str = "PORT";

/// A parsed authorisation text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOutText {
    pub recipient: OperatorName,
    pub nonce: Nonce,
    pub expiry: Millis,
    /// The number authorised, if the text names it; it must be the sender's.
    pub msisdn: Option<Msisdn>,
}

/// Why a text is no authorisation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortTextError {
    #[error("the text does not start with {KEYWORD}")]
    Keyword,
    #[error("the {0} is missing")]
    Missing(&'static str),
    #[error("{0:?} is no operator name")]
    Recipient(String),
    #[error("the nonce must be 16 bytes in hex")]
    Nonce,
    #[error("{0:?} is no expiry in Unix milliseconds")]
    Expiry(String),
    #[error("{0:?} is no number")]
    Number(String),
    #[error("unexpected text after the fields: {0:?}")]
    Trailing(String),
}

impl FromStr for PortOutText {
    type Err = PortTextError;

    fn from_str(text: &str) -> Result<PortOutText, PortTextError> {
        let mut fields = text.split_ascii_whitespace();
        if !fields.next().is_some_and(|k| k.eq_ignore_ascii_case(KEYWORD)) {
            return Err(PortTextError::Keyword);
        }
        let mut next = |what| fields.next().ok_or(PortTextError::Missing(what));
        let recipient = next("recipient")?;
        let recipient = recipient.parse().map_err(|_| PortTextError::Recipient(recipient.into()))?;
        let nonce = Nonce::from_hex(next("nonce")?).map_err(|_| PortTextError::Nonce)?;
        let expiry = next("expiry")?;
        let expiry = expiry.parse::<Millis>().ok().filter(|e| *e > 0).ok_or(PortTextError::Expiry(expiry.into()))?;
        let msisdn = match fields.next() {
            None => None,
            Some(n) => Some(n.trim_start_matches('+').parse().map_err(|_| PortTextError::Number(n.into()))?),
        };
        match fields.next() {
            Some(extra) => Err(PortTextError::Trailing(extra.into())),
            None => Ok(PortOutText { recipient, nonce, expiry, msisdn }),
        }
    }
}

impl fmt::Display for PortOutText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEYWORD} {} {} {}", self.recipient, self.nonce.to_hex(), self.expiry)?;
        match &self.msisdn {
            Some(m) => write!(f, " {m}"),
            None => Ok(()),
        }
    }
}

/// Why the donor refused an authorisation.
#[derive(Debug, thiserror::Error)]
pub enum AuthorisationRefusal {
    #[error("malformed authorisation: {0}")]
    Text(#[from] PortTextError),
    #[error("a terminal may authorise its own number only")]
    OtherNumber,
    #[error("the number is not an active subscriber here")]
    NotSubscriber,
    #[error("the subscriber has no port key")]
    NoPortKey,
    #[error("the clearinghouse refused the deposit: {0}")]
    Refused(ClientError),
    #[error("not recorded: {0}")]
    NotRecorded(OperatorError),
}

impl From<OperatorError> for AuthorisationRefusal {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::Clearinghouse(e @ ClientError::Api { .. }) => AuthorisationRefusal::Refused(e),
            other => AuthorisationRefusal::NotRecorded(other),
        }
    }
}

impl Node {
    /// Takes the authorisation `text` that the attached terminal of `sender` sent to the
    /// service number: checks the subscriber, deposits the expected proof computed from its
    /// port key, and records the deposit. The idempotency key is derived from the number and
    /// the nonce, so a terminal that sends again after a lost answer deposits once.
    pub async fn authorise_port_out(
        &self,
        sender: &Msisdn,
        text: &str,
    ) -> Result<DepositAccepted, AuthorisationRefusal> {
        let auth: PortOutText = text.parse()?;
        if auth.msisdn.as_ref().is_some_and(|m| m != sender) {
            return Err(AuthorisationRefusal::OtherNumber);
        }
        let sub = self.inner.store.subscriber(sender).await?;
        let sub = sub.filter(|s| s.status == SubscriberStatus::Active).ok_or(AuthorisationRefusal::NotSubscriber)?;
        let key = sub.port_key.ok_or(AuthorisationRefusal::NoPortKey)?;
        let proof = key.prove(&auth.nonce, sender, &auth.recipient, auth.expiry);
        let deposit = DepositRequest { msisdn: sender.clone(), nonce: auth.nonce.to_hex(), proof: proof.to_hex() };
        // At most 32 + 6 + 15 + 1 + 32 characters: within the clearinghouse's 128. Reusing the
        // nonce for another recipient or expiry changes the body, which the clearinghouse
        // refuses under the same key, as it should.
        let idem = format!("{}-auth-{}-{}", self.name(), sender, deposit.nonce);
        let accepted = self.inner.client.deposit(&deposit, &idem).await.map_err(|e| {
            self.inner.metrics.clearinghouse_failure("deposit");
            OperatorError::from(e)
        })?;
        tracing::info!(node = %self.name(), msisdn = %sender, recipient = %auth.recipient, "port-out authorised, proof deposited");
        self.inner
            .store
            .record_event(&NewPortEvent {
                message_id: None,
                kind: EventKind::Deposit,
                order_id: accepted.order_id,
                msisdn: sender.clone(),
                counterpart: Some(auth.recipient.clone()),
                detail: json!({ "matched_order": accepted.order_id, "expiry": auth.expiry, "channel": "service_number" }),
                at: self.now(),
            })
            .await?;
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn a_text_reads_back_as_written() {
        let t: PortOutText = format!("PORT opb {NONCE} 1795453800000").parse().unwrap();
        assert_eq!(
            (t.recipient.as_str(), t.nonce.to_hex().as_str(), t.expiry, &t.msisdn),
            ("opb", NONCE, 1795453800000, &None)
        );
        assert_eq!(t.to_string().parse::<PortOutText>().unwrap(), t);
        let with_number: PortOutText = format!("  port opb {NONCE}  1795453800000 +4790000001 ").parse().unwrap();
        assert_eq!(with_number.msisdn.as_ref().map(Msisdn::as_str), Some("4790000001"));
        assert_eq!(with_number.to_string(), format!("PORT opb {NONCE} 1795453800000 4790000001"));
    }

    #[test]
    fn every_malformed_text_has_its_cause() {
        let cases = [
            ("", PortTextError::Keyword),
            ("Hello", PortTextError::Keyword),
            ("PORTopb", PortTextError::Keyword),
            ("PORT", PortTextError::Missing("recipient")),
            ("PORT opb", PortTextError::Missing("nonce")),
            ("PORT OP B", PortTextError::Recipient("OP".into())),
            ("PORT opb abcd", PortTextError::Nonce),
            (&format!("PORT opb {NONCE}"), PortTextError::Missing("expiry")),
            (&format!("PORT opb {NONCE} soon"), PortTextError::Expiry("soon".into())),
            (&format!("PORT opb {NONCE} -5"), PortTextError::Expiry("-5".into())),
            (&format!("PORT opb {NONCE} 99999999999999999999"), PortTextError::Expiry("99999999999999999999".into())),
            (&format!("PORT opb {NONCE} 1 47x"), PortTextError::Number("47x".into())),
            (&format!("PORT opb {NONCE} 1 4790000001 please"), PortTextError::Trailing("please".into())),
        ];
        for (text, cause) in cases {
            assert_eq!(text.parse::<PortOutText>(), Err(cause), "{text:?}");
        }
    }
}
