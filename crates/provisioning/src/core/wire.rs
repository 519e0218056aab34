//! The network elements' protocol: one line of ASCII text per message over TCP.
//!
//! ```text
//! request   <tag> <VERB> <msisdn> [key=value ...]      VERB: CREATE DELETE SET BAR UNBAR
//!           <tag> STATS
//! answer    <tag> OK depth=<n> util=<f> cap=<n>
//!           <tag> ERR <reason> depth=<n> util=<f> cap=<n>
//!           <tag> STATS received=<n> violations=<n> depth=<n> util=<f> cap=<n>
//! report    * LOAD depth=<n> util=<f> cap=<n>             (unsolicited, periodic)
//! ```
//!
//! The tag is the device's command id (decimal, up to 19 digits); answers may come in any order
//! and are matched by it, so one connection carries many commands at once. Every answer carries
//! the element's load, which is how the device learns it without asking. Lines end in `\n`, are
//! at most [`MAX_LINE`] bytes, and anything else is a typed [`WireError`].
//!
//! Why not an industry provisioning interface: the HSS's LDAP (a BER codec and a directory
//! model for five verbs) and SOAP/SPML (an XML envelope per command, which would cost more CPU
//! than the rest of the device at ten thousand commands a second) both lack what this interface
//! exists for, the element's load on every answer; a gateway in front of a real element would
//! translate these lines to its LDAP or SPML and add the load it measures. Text lines can be
//! typed by hand (`nc`) and read in a capture.

use std::fmt::Write;

use numport_core::Msisdn;

use super::order::Verb;
use super::protection::ElementLoad;

/// Longest line either side sends or accepts, `\n` excluded.
pub const MAX_LINE: usize = 512;

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty line")]
    Empty,
    #[error("bad tag {0:?}")]
    Tag(String),
    #[error("unknown verb {0:?}")]
    Verb(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("bad number: {0}")]
    Msisdn(String),
    #[error("bad field {0:?}")]
    Field(String),
}

/// Why an element refused a command; the device retries the transient ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The element's queue is full (the device went beyond its capacity). Transient.
    Overloaded,
    /// SET, BAR or UNBAR for a subscriber the element does not have.
    UnknownSubscriber,
    /// A line the element could not parse.
    BadCommand,
    /// A verb or attribute this element does not take.
    Unsupported,
    /// A reason from an element of another build, kept verbatim.
    Other(String),
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match self {
            Reason::Overloaded => "overloaded",
            Reason::UnknownSubscriber => "unknown_subscriber",
            Reason::BadCommand => "bad_command",
            Reason::Unsupported => "unsupported",
            Reason::Other(s) => s,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Reason::Overloaded)
    }

    fn parse(s: &str) -> Reason {
        match s {
            "overloaded" => Reason::Overloaded,
            "unknown_subscriber" => Reason::UnknownSubscriber,
            "bad_command" => Reason::BadCommand,
            "unsupported" => Reason::Unsupported,
            other => Reason::Other(other.chars().take(64).collect()),
        }
    }
}

/// A line from the device to an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Command { tag: u64, verb: Verb, msisdn: Msisdn, params: Vec<(String, String)> },
    Stats { tag: u64 },
}

/// A line from an element to the device.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok { tag: u64, load: ElementLoad },
    Err { tag: u64, reason: Reason, load: ElementLoad },
    Stats { tag: u64, received: u64, violations: u64, load: ElementLoad },
    Load(ElementLoad),
}

fn tag(s: Option<&str>) -> Result<u64, WireError> {
    let s = s.ok_or(WireError::Missing("tag"))?;
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WireError::Tag(s.chars().take(20).collect()));
    }
    s.parse().map_err(|_| WireError::Tag(s.to_owned()))
}

fn key_value(s: &str) -> Result<(&str, &str), WireError> {
    let (k, v) = s.split_once('=').ok_or_else(|| WireError::Field(s.chars().take(40).collect()))?;
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !word(k) || !(word(v) || v.parse::<f64>().is_ok()) {
        return Err(WireError::Field(s.chars().take(40).collect()));
    }
    Ok((k, v))
}

impl Request {
    /// Parse one line (without its `\n`).
    pub fn parse(line: &str) -> Result<Request, WireError> {
        let mut words = line.split(' ');
        let tag = tag(words.next().filter(|w| !w.is_empty()).ok_or(WireError::Empty).map(Some)?)?;
        let verb = words.next().ok_or(WireError::Missing("verb"))?;
        if verb == "STATS" {
            return match words.next() {
                None => Ok(Request::Stats { tag }),
                Some(w) => Err(WireError::Field(w.chars().take(40).collect())),
            };
        }
        let verb: Verb = verb.parse().map_err(|_| WireError::Verb(verb.chars().take(20).collect()))?;
        let msisdn = words.next().ok_or(WireError::Missing("msisdn"))?;
        let msisdn = msisdn.parse().map_err(|e: numport_core::msisdn::NumberError| WireError::Msisdn(e.to_string()))?;
        let params =
            words.map(|w| key_value(w).map(|(k, v)| (k.to_owned(), v.to_owned()))).collect::<Result<_, _>>()?;
        Ok(Request::Command { tag, verb, msisdn, params })
    }

    /// The line, `\n` included.
    pub fn encode(&self, out: &mut String) {
        match self {
            Request::Command { tag, verb, msisdn, params } => {
                let _ = write!(out, "{tag} {} {}", verb.as_str(), msisdn.as_str());
                for (k, v) in params {
                    let _ = write!(out, " {k}={v}");
                }
            }
            Request::Stats { tag } => {
                let _ = write!(out, "{tag} STATS");
            }
        }
        out.push('\n');
    }
}

fn encode_load(out: &mut String, l: &ElementLoad) {
    let _ = write!(out, " depth={} util={:.3} cap={}", l.depth, l.utilisation, l.capacity);
}

/// The load fields at the end of an answer, and the numbers before them (STATS).
fn parse_load<'a>(words: impl Iterator<Item = &'a str>) -> Result<(ElementLoad, u64, u64), WireError> {
    let (mut load, mut received, mut violations) = (ElementLoad::default(), 0, 0);
    let mut seen = 0;
    for w in words {
        let (k, v) = key_value(w)?;
        let bad = || WireError::Field(w.chars().take(40).collect());
        match k {
            "depth" => load.depth = v.parse().map_err(|_| bad())?,
            "util" => {
                load.utilisation = v.parse().map_err(|_| bad())?;
                if !load.utilisation.is_finite() || load.utilisation < 0.0 {
                    return Err(bad());
                }
            }
            "cap" => load.capacity = v.parse().map_err(|_| bad())?,
            "received" => received = v.parse().map_err(|_| bad())?,
            "violations" => violations = v.parse().map_err(|_| bad())?,
            _ => continue,
        }
        seen += 1;
    }
    if seen < 3 {
        return Err(WireError::Missing("load"));
    }
    Ok((load, received, violations))
}

impl Reply {
    pub fn parse(line: &str) -> Result<Reply, WireError> {
        let mut words = line.split(' ');
        let first = words.next().filter(|w| !w.is_empty()).ok_or(WireError::Empty)?;
        if first == "*" {
            return match words.next() {
                Some("LOAD") => Ok(Reply::Load(parse_load(words)?.0)),
                _ => Err(WireError::Missing("LOAD")),
            };
        }
        let tag = tag(Some(first))?;
        match words.next() {
            Some("OK") => Ok(Reply::Ok { tag, load: parse_load(words)?.0 }),
            Some("ERR") => {
                let reason = Reason::parse(words.next().ok_or(WireError::Missing("reason"))?);
                Ok(Reply::Err { tag, reason, load: parse_load(words)?.0 })
            }
            Some("STATS") => {
                let (load, received, violations) = parse_load(words)?;
                Ok(Reply::Stats { tag, received, violations, load })
            }
            Some(other) => Err(WireError::Verb(other.chars().take(20).collect())),
            None => Err(WireError::Missing("status")),
        }
    }

    pub fn encode(&self, out: &mut String) {
        match self {
            Reply::Ok { tag, load } => {
                let _ = write!(out, "{tag} OK");
                encode_load(out, load);
            }
            Reply::Err { tag, reason, load } => {
                let _ = write!(out, "{tag} ERR {}", reason.as_str());
                encode_load(out, load);
            }
            Reply::Stats { tag, received, violations, load } => {
                let _ = write!(out, "{tag} STATS received={received} violations={violations}");
                encode_load(out, load);
            }
            Reply::Load(load) => {
                out.push_str("* LOAD");
                encode_load(out, load);
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn request_round_trip() {
        let line = "17 CREATE 4791000001 imsi=242010000000001 services=voice-sms-data";
        let r = Request::parse(line).unwrap();
        let mut out = String::new();
        r.encode(&mut out);
        assert_eq!(out, format!("{line}\n"));
        assert_eq!(Request::parse("9 STATS").unwrap(), Request::Stats { tag: 9 });
    }

    #[test]
    fn reply_round_trip() {
        let load = ElementLoad { depth: 12, utilisation: 0.875, capacity: 5_000 };
        for r in [
            Reply::Ok { tag: 1, load },
            Reply::Err { tag: 2, reason: Reason::UnknownSubscriber, load },
            Reply::Stats { tag: 3, received: 10, violations: 0, load },
            Reply::Load(load),
        ] {
            let mut out = String::new();
            r.encode(&mut out);
            assert_eq!(Reply::parse(out.trim_end()).unwrap(), r, "{out}");
        }
    }

    #[test]
    fn refuses_malformed_lines() {
        assert_eq!(Request::parse(""), Err(WireError::Empty));
        assert_eq!(Request::parse("x CREATE 4791000001"), Err(WireError::Tag("x".into())));
        assert_eq!(Request::parse("1 DROP 4791000001"), Err(WireError::Verb("DROP".into())));
        assert!(matches!(Request::parse("1 CREATE 12"), Err(WireError::Msisdn(_))));
        assert!(matches!(Request::parse("1 SET 4791000001 plan"), Err(WireError::Field(_))));
        assert!(matches!(Request::parse("1 SET 4791000001 plan=a;b"), Err(WireError::Field(_))));
        assert_eq!(Request::parse("99999999999999999999 STATS"), Err(WireError::Tag("99999999999999999999".into())));
        assert!(matches!(Reply::parse("1 OK depth=1"), Err(WireError::Missing("load"))));
        assert!(matches!(Reply::parse("1 OK depth=1 util=NaN cap=3"), Err(WireError::Field(_))));
    }

    proptest! {
        #[test]
        fn never_panics(line in ".{0,600}") {
            let _ = Request::parse(&line);
            let _ = Reply::parse(&line);
        }
    }
}
