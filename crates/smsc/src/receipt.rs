//! SMPP delivery receipts in the customary text format (SMPP 3.4 Appendix B), carried in the
//! short_message of a deliver_sm with esm_class "SMSC delivery receipt":
//!
//! ```text
//! id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...
//! ```
//!
//! The SMS center writes them for its ESMEs, and reads those of the next SMS center on an
//! interconnect, to relay the final state back to the ESME that submitted.

use std::fmt;

/// The final (or current) state a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptState {
    Delivered,
    Expired,
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
    Enroute,
}

impl ReceiptState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "DELIVRD",
            ReceiptState::Expired => "EXPIRED",
            ReceiptState::Deleted => "DELETED",
            ReceiptState::Undeliverable => "UNDELIV",
            ReceiptState::Accepted => "ACCEPTD",
            ReceiptState::Unknown => "UNKNOWN",
            ReceiptState::Rejected => "REJECTD",
            ReceiptState::Enroute => "ENROUTE",
        }
    }

    fn parse(s: &str) -> Option<ReceiptState> {
        [
            ReceiptState::Delivered,
            ReceiptState::Expired,
            ReceiptState::Deleted,
            ReceiptState::Undeliverable,
            ReceiptState::Accepted,
            ReceiptState::Unknown,
            ReceiptState::Rejected,
            ReceiptState::Enroute,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// The `message_state` TLV value (SMPP 5.0 §4.8.4.37) of this state.
    pub fn message_state(self) -> u8 {
        match self {
            ReceiptState::Enroute => 1,
            ReceiptState::Delivered => 2,
            ReceiptState::Expired => 3,
            ReceiptState::Deleted => 4,
            ReceiptState::Undeliverable => 5,
            ReceiptState::Accepted => 6,
            ReceiptState::Unknown => 7,
            ReceiptState::Rejected => 8,
        }
    }
}

/// A time as receipts carry it: `YYMMDDhhmm`, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptTime {
    pub year: u8,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
}

impl ReceiptTime {
    /// From Unix milliseconds (UTC).
    pub fn from_unix_ms(ms: i64) -> ReceiptTime {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil from days (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        ReceiptTime {
            year: year.rem_euclid(100) as u8,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
        }
    }
}

impl fmt::Display for ReceiptTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}{:02}{:02}{:02}{:02}", self.year, self.month, self.day, self.hour, self.minute)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub submitted: u16,
    pub delivered: u16,
    pub submit_date: ReceiptTime,
    pub done_date: ReceiptTime,
    pub state: ReceiptState,
    /// Network-specific error code, 0 for none.
    pub error: u16,
    /// The first 20 characters of the message.
    pub text: String,
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: String = self.text.chars().take(20).collect();
        write!(
            f,
            "id:{} sub:{:03} dlvrd:{:03} submit date:{} done date:{} stat:{} err:{:03} text:{}",
            self.message_id,
            self.submitted,
            self.delivered,
            self.submit_date,
            self.done_date,
            self.state.as_str(),
            self.error,
            text
        )
    }
}

/// Why a short message is no receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a delivery receipt: {0}")]
pub struct ReceiptError(&'static str);

impl Receipt {
    /// Reads a receipt. Field names are matched case-insensitively and `text:` may be absent,
    /// as SMS centers differ in both.
    pub fn parse(s: &str) -> Result<Receipt, ReceiptError> {
        let lower = s.to_ascii_lowercase();
        let field = |name: &str| -> Option<&str> {
            let key = format!("{name}:");
            let start = lower.find(&key)? + key.len();
            let end = s[start..].find(' ').map_or(s.len(), |e| start + e);
            Some(&s[start..end])
        };
        let num = |name, what| field(name).and_then(|v| v.parse::<u16>().ok()).ok_or(ReceiptError(what));
        let time = |name, what| {
            let v = field(name).ok_or(ReceiptError(what))?;
            let d = |i: usize| v.get(i..i + 2).and_then(|x| x.parse::<u8>().ok()).ok_or(ReceiptError(what));
            if v.len() < 10 {
                return Err(ReceiptError(what));
            }
            Ok(ReceiptTime { year: d(0)?, month: d(2)?, day: d(4)?, hour: d(6)?, minute: d(8)? })
        };
        let text = lower.find("text:").map(|i| s[i + 5..].to_owned()).unwrap_or_default();
        Ok(Receipt {
            message_id: field("id").filter(|v| !v.is_empty()).ok_or(ReceiptError("id"))?.to_owned(),
            submitted: num("sub", "sub")?,
            delivered: num("dlvrd", "dlvrd")?,
            submit_date: time("submit date", "submit date")?,
            done_date: time("done date", "done date")?,
            state: field("stat").and_then(ReceiptState::parse).ok_or(ReceiptError("stat"))?,
            error: num("err", "err")?,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_the_customary_format() {
        let t = ReceiptTime::from_unix_ms(1_795_453_500_000); // 2026-11-23 17:05 UTC
        assert_eq!(t.to_string(), "2611231705");
        let r = Receipt {
            message_id: "1f3a".into(),
            submitted: 1,
            delivered: 1,
            submit_date: t,
            done_date: t,
            state: ReceiptState::Delivered,
            error: 0,
            text: "Your code is 123456, valid 5 min".into(),
        };
        let s = r.to_string();
        assert_eq!(
            s,
            "id:1f3a sub:001 dlvrd:001 submit date:2611231705 done date:2611231705 stat:DELIVRD err:000 text:Your code is 123456,"
        );
        let back = Receipt::parse(&s).unwrap();
        assert_eq!((back.message_id.as_str(), back.state, back.done_date), ("1f3a", ReceiptState::Delivered, t));
        // Other centers' variations: upper-case names, no text.
        let other =
            Receipt::parse("ID:77 SUB:001 DLVRD:000 SUBMIT DATE:2611231700 DONE DATE:2611231800 STAT:EXPIRED ERR:000")
                .unwrap();
        assert_eq!((other.message_id.as_str(), other.state), ("77", ReceiptState::Expired));
        assert_eq!(ReceiptState::Expired.message_state(), 3);
        assert!(Receipt::parse("hello").is_err());
        assert!(Receipt::parse("id:1 sub:1 dlvrd:1 submit date:26 done date:2611231705 stat:DELIVRD err:0").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,120}", prefix in "(id:|sub:|stat:|done date:|text:|ÄÖ )*") {
            let _ = Receipt::parse(&(prefix + &s));
        }
    }

    #[test]
    fn dates() {
        assert_eq!(ReceiptTime::from_unix_ms(0).to_string(), "7001010000");
        assert_eq!(ReceiptTime::from_unix_ms(951_782_400_000).to_string(), "0002290000"); // 2000-02-29
    }
}
