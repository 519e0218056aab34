//! The few fields of an X.509 certificate numport reads itself: the subject's common name and
//! organizational unit. rustls has already verified the certificate when these are read; the
//! reader still refuses anything malformed with an error instead of trusting lengths.

use rustls::pki_types::CertificateDer;

use crate::TlsError;

/// Who a verified peer certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerIdentity {
    /// The subject's common name (CN): the operator's or the server's name.
    pub common_name: Option<String>,
    /// The subject's organizational unit (OU): the role the certificate was issued for.
    pub role: Option<String>,
}

impl PeerIdentity {
    /// The operator this certificate was issued to, if it is an operator's certificate.
    pub fn operator(&self) -> Option<&str> {
        match self.role.as_deref() {
            Some(crate::pki::ROLE_OPERATOR) => self.common_name.as_deref(),
            _ => None,
        }
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATIONAL_UNIT: &[u8] = &[0x55, 0x04, 0x0b];
/// UTF8String, PrintableString, IA5String.
const TEXT_TAGS: [u8; 3] = [0x0c, 0x13, 0x16];

/// Reads the subject's CN and OU from a DER certificate.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity, TlsError> {
    let (certificate, _) = expect(cert.as_ref(), SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = tlv(tbs)?.2;
    }
    // serial, signature algorithm, issuer, validity; then the subject.
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (mut subject, _) = expect(tbs, SEQUENCE)?;
    let mut identity = PeerIdentity::default();
    while !subject.is_empty() {
        let (set, rest) = expect(subject, SET)?;
        subject = rest;
        read_attributes(set, &mut identity)?;
    }
    Ok(identity)
}

fn read_attributes(mut set: &[u8], identity: &mut PeerIdentity) -> Result<(), TlsError> {
    while !set.is_empty() {
        let (attribute, rest) = expect(set, SEQUENCE)?;
        set = rest;
        let (oid, value) = expect(attribute, OID)?;
        let (tag, text, _) = tlv(value)?;
        let slot = match oid {
            OID_COMMON_NAME => &mut identity.common_name,
            OID_ORGANIZATIONAL_UNIT => &mut identity.role,
            _ => continue,
        };
        if !TEXT_TAGS.contains(&tag) {
            return Err(malformed("a name attribute that is not text"));
        }
        let text = std::str::from_utf8(text).map_err(|_| malformed("a name that is not UTF-8"))?;
        *slot = Some(text.to_owned());
    }
    Ok(())
}

/// One element that must carry `tag`: its content and what follows it.
fn expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), TlsError> {
    let (found, content, rest) = tlv(input)?;
    if found != tag {
        return Err(malformed("an unexpected element"));
    }
    Ok((content, rest))
}

/// One DER element: tag, content, rest. Only the definite, minimal forms DER allows.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), TlsError> {
    let [tag, first, rest @ ..] = input else {
        return Err(malformed("a truncated element"));
    };
    if tag & 0x1f == 0x1f {
        return Err(malformed("a multi-byte tag"));
    }
    let (len, rest) = match *first {
        short if short < 0x80 => (usize::from(short), rest),
        long => {
            let octets = usize::from(long & 0x7f);
            if octets == 0 || octets > 4 || rest.len() < octets {
                return Err(malformed("a bad length"));
            }
            let len = rest[..octets].iter().fold(0usize, |len, byte| len << 8 | usize::from(*byte));
            (len, &rest[octets..])
        }
    };
    if rest.len() < len {
        return Err(malformed("an element longer than the certificate"));
    }
    Ok((*tag, &rest[..len], &rest[len..]))
}

fn malformed(what: &'static str) -> TlsError {
    TlsError::Malformed { what }
}
