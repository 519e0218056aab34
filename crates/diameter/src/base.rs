//! The base protocol's own messages (RFC 6733 §5): Capabilities-Exchange, Device-Watchdog and
//! Disconnect-Peer, typed; and the error answer any request can receive.

use std::net::IpAddr;

use crate::avp::{Avp, Writer};
use crate::dict::{self as d, AvpDef, application, command};
use crate::error::Error;
use crate::message::{Header, Message};

/// Who this node is, as its CER/CEA, DWR/DWA, DPR/DPA and every answer say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub origin_host: String,
    pub origin_realm: String,
    pub host_ip_addresses: Vec<IpAddr>,
    /// This product's IANA enterprise number (0 when it has none).
    pub vendor_id: u32,
    pub product_name: String,
    /// Changes each time the node restarts, so peers can tell that its sessions are gone.
    pub origin_state_id: u32,
}

/// Stores `value` in `slot`, or refuses a second occurrence (5009).
pub(crate) fn once<T>(slot: &mut Option<T>, avp: &Avp<'_>, value: T) -> Result<(), Error> {
    if slot.is_some() {
        let name = avp.def().map_or("AVP", |def| def.name);
        return Err(Error::TooMany { name, failed: avp.raw.to_vec() });
    }
    *slot = Some(value);
    Ok(())
}

/// The value of a required AVP, or 5005 naming it.
pub(crate) fn required<T>(slot: Option<T>, def: &'static AvpDef) -> Result<T, Error> {
    slot.ok_or(Error::Missing(def))
}

/// Whether `avp` is the dictionary's `def`.
pub(crate) fn is(avp: &Avp<'_>, def: &AvpDef) -> bool {
    avp.code == def.code && avp.vendor == def.vendor
}

fn write_origin(w: &mut Writer, me: &Identity) {
    w.str(&d::ORIGIN_HOST, &me.origin_host);
    w.str(&d::ORIGIN_REALM, &me.origin_realm);
}

/// Origin-Host and Origin-Realm, the two AVPs every message of the base protocol carries.
#[derive(Debug, Default)]
struct Origin {
    host: Option<String>,
    realm: Option<String>,
}

impl Origin {
    /// Takes `avp` if it is one of the two; true when it was.
    fn take(&mut self, avp: &Avp<'_>) -> Result<bool, Error> {
        if is(avp, &d::ORIGIN_HOST) {
            once(&mut self.host, avp, avp.string()?)?;
        } else if is(avp, &d::ORIGIN_REALM) {
            once(&mut self.realm, avp, avp.string()?)?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn required(self) -> Result<(String, String), Error> {
        Ok((required(self.host, &d::ORIGIN_HOST)?, required(self.realm, &d::ORIGIN_REALM)?))
    }
}

/// Vendor-Specific-Application-Id: an application a vendor defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorSpecificApplicationId {
    pub vendor_id: u32,
    pub auth_application_id: Option<u32>,
    pub acct_application_id: Option<u32>,
}

/// Capabilities-Exchange-Request (or, with a Result-Code, the answer's capabilities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub origin_host: String,
    pub origin_realm: String,
    pub host_ip_addresses: Vec<IpAddr>,
    pub vendor_id: u32,
    pub product_name: String,
    pub origin_state_id: Option<u32>,
    pub supported_vendor_ids: Vec<u32>,
    pub auth_application_ids: Vec<u32>,
    pub acct_application_ids: Vec<u32>,
    pub vendor_specific_application_ids: Vec<VendorSpecificApplicationId>,
    /// Set in a CEA only.
    pub result_code: Option<u32>,
    pub error_message: Option<String>,
}

impl Capabilities {
    /// A CER or a successful CEA's capabilities: this node, serving `auth_applications`.
    pub fn of(me: &Identity, auth_applications: &[u32]) -> Self {
        Capabilities {
            origin_host: me.origin_host.clone(),
            origin_realm: me.origin_realm.clone(),
            host_ip_addresses: me.host_ip_addresses.clone(),
            vendor_id: me.vendor_id,
            product_name: me.product_name.clone(),
            origin_state_id: Some(me.origin_state_id),
            supported_vendor_ids: vec![d::VENDOR_3GPP],
            auth_application_ids: auth_applications.to_vec(),
            acct_application_ids: Vec::new(),
            vendor_specific_application_ids: Vec::new(),
            result_code: None,
            error_message: None,
        }
    }

    /// Whether the peer offers application `id` (directly, inside a Vendor-Specific-Application-Id,
    /// or through the relay id).
    pub fn offers(&self, id: u32) -> bool {
        let vendor = self.vendor_specific_application_ids.iter();
        self.auth_application_ids.iter().chain(&self.acct_application_ids).any(|&a| a == id || a == application::RELAY)
            || vendor.flat_map(|v| v.auth_application_id.into_iter().chain(v.acct_application_id)).any(|a| a == id)
    }

    pub fn decode(message: &Message<'_>) -> Result<Self, Error> {
        let mut origin = Origin::default();
        let (mut vendor_id, mut product_name, mut origin_state_id, mut result_code, mut error_message) =
            (None, None, None, None, None);
        let mut c = Capabilities {
            origin_host: String::new(),
            origin_realm: String::new(),
            host_ip_addresses: Vec::new(),
            vendor_id: 0,
            product_name: String::new(),
            origin_state_id: None,
            supported_vendor_ids: Vec::new(),
            auth_application_ids: Vec::new(),
            acct_application_ids: Vec::new(),
            vendor_specific_application_ids: Vec::new(),
            result_code: None,
            error_message: None,
        };
        for avp in message.avps() {
            let avp = avp?;
            if origin.take(&avp)? {
                continue;
            }
            match (avp.vendor, avp.code) {
                (0, 257) => c.host_ip_addresses.push(avp.address()?),
                (0, 266) => once(&mut vendor_id, &avp, avp.u32()?)?,
                (0, 269) => once(&mut product_name, &avp, avp.string()?)?,
                (0, 278) => once(&mut origin_state_id, &avp, avp.u32()?)?,
                (0, 268) => once(&mut result_code, &avp, avp.u32()?)?,
                (0, 281) => once(&mut error_message, &avp, avp.string()?)?,
                (0, 265) => c.supported_vendor_ids.push(avp.u32()?),
                (0, 258) => c.auth_application_ids.push(avp.u32()?),
                (0, 259) => c.acct_application_ids.push(avp.u32()?),
                (0, 260) => c.vendor_specific_application_ids.push(vendor_specific(&avp)?),
                _ => {}
            }
        }
        (c.origin_host, c.origin_realm) = origin.required()?;
        if message.header.is_request() {
            if c.host_ip_addresses.is_empty() {
                return Err(Error::Missing(&d::HOST_IP_ADDRESS));
            }
            c.vendor_id = required(vendor_id, &d::VENDOR_ID)?;
            c.product_name = required(product_name, &d::PRODUCT_NAME)?;
        } else {
            c.vendor_id = vendor_id.unwrap_or(0);
            c.product_name = product_name.unwrap_or_default();
            c.result_code = Some(required(result_code, &d::RESULT_CODE)?);
        }
        c.origin_state_id = origin_state_id;
        c.error_message = error_message;
        Ok(c)
    }

    fn write(&self, w: &mut Writer) {
        if let Some(code) = self.result_code {
            w.u32(&d::RESULT_CODE, code);
        }
        w.str(&d::ORIGIN_HOST, &self.origin_host);
        w.str(&d::ORIGIN_REALM, &self.origin_realm);
        for ip in &self.host_ip_addresses {
            w.address(&d::HOST_IP_ADDRESS, *ip);
        }
        w.u32(&d::VENDOR_ID, self.vendor_id);
        w.str(&d::PRODUCT_NAME, &self.product_name);
        if let Some(id) = self.origin_state_id {
            w.u32(&d::ORIGIN_STATE_ID, id);
        }
        for &v in &self.supported_vendor_ids {
            w.u32(&d::SUPPORTED_VENDOR_ID, v);
        }
        for &a in &self.auth_application_ids {
            w.u32(&d::AUTH_APPLICATION_ID, a);
        }
        for &a in &self.acct_application_ids {
            w.u32(&d::ACCT_APPLICATION_ID, a);
        }
        for v in &self.vendor_specific_application_ids {
            w.grouped(&d::VENDOR_SPECIFIC_APPLICATION_ID, |w| {
                w.u32(&d::VENDOR_ID, v.vendor_id);
                v.auth_application_id.inspect(|&a| w.u32(&d::AUTH_APPLICATION_ID, a));
                v.acct_application_id.inspect(|&a| w.u32(&d::ACCT_APPLICATION_ID, a));
            });
        }
        if let Some(m) = &self.error_message {
            w.str(&d::ERROR_MESSAGE, m);
        }
    }

    /// The CER with these identifiers.
    pub fn encode_request(&self, hop_by_hop: u32, end_to_end: u32) -> Vec<u8> {
        let header = Header::request(command::CAPABILITIES_EXCHANGE, application::COMMON, hop_by_hop, end_to_end);
        let mut w = Writer::message(Vec::with_capacity(256), &Header { flags: crate::message::FLAG_R, ..header });
        self.write(&mut w);
        w.finish()
    }

    /// The CEA to `request` (its `result_code` must be set).
    pub fn encode_answer(&self, request: &Header) -> Vec<u8> {
        let code = self.result_code.unwrap_or(d::result::SUCCESS);
        let mut w = Writer::message(Vec::with_capacity(256), &request.answer(code));
        self.write(&mut w);
        w.finish()
    }
}

fn vendor_specific(avp: &Avp<'_>) -> Result<VendorSpecificApplicationId, Error> {
    let (mut vendor_id, mut auth, mut acct) = (None, None, None);
    for member in avp.grouped() {
        let member = member?;
        match (member.vendor, member.code) {
            (0, 266) => once(&mut vendor_id, &member, member.u32()?)?,
            (0, 258) => once(&mut auth, &member, member.u32()?)?,
            (0, 259) => once(&mut acct, &member, member.u32()?)?,
            _ => {}
        }
    }
    Ok(VendorSpecificApplicationId {
        vendor_id: required(vendor_id, &d::VENDOR_ID)?,
        auth_application_id: auth,
        acct_application_id: acct,
    })
}

/// Disconnect-Cause (RFC 6733 §5.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectCause {
    Rebooting = 0,
    Busy = 1,
    DoNotWantToTalkToYou = 2,
}

impl DisconnectCause {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => DisconnectCause::Rebooting,
            1 => DisconnectCause::Busy,
            2 => DisconnectCause::DoNotWantToTalkToYou,
            _ => return None,
        })
    }
}

/// DWR, DWA, DPR and DPA: Origin-Host and Origin-Realm, with a Result-Code in an answer and a
/// Disconnect-Cause in a DPR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub command: u32,
    pub origin_host: String,
    pub origin_realm: String,
    pub origin_state_id: Option<u32>,
    pub result_code: Option<u32>,
    pub disconnect_cause: Option<DisconnectCause>,
}

impl Control {
    /// A DWR or DPR from this node (a DPR with `cause`).
    pub fn request(me: &Identity, command: u32, cause: Option<DisconnectCause>) -> Self {
        Control {
            command,
            origin_host: me.origin_host.clone(),
            origin_realm: me.origin_realm.clone(),
            origin_state_id: Some(me.origin_state_id),
            result_code: None,
            disconnect_cause: cause,
        }
    }

    /// The successful DWA or DPA of this node.
    pub fn answer(me: &Identity, command: u32) -> Self {
        Control { result_code: Some(d::result::SUCCESS), disconnect_cause: None, ..Control::request(me, command, None) }
    }

    pub fn decode(message: &Message<'_>) -> Result<Self, Error> {
        let mut origin = Origin::default();
        let (mut state, mut result, mut cause) = (None, None, None);
        for avp in message.avps() {
            let avp = avp?;
            if origin.take(&avp)? {
                continue;
            }
            match (avp.vendor, avp.code) {
                (0, 278) => once(&mut state, &avp, avp.u32()?)?,
                (0, 268) => once(&mut result, &avp, avp.u32()?)?,
                (0, 273) => once(&mut cause, &avp, avp.enumerated(DisconnectCause::from_u32)?)?,
                _ => {}
            }
        }
        let (origin_host, origin_realm) = origin.required()?;
        let h = &message.header;
        if !h.is_request() {
            result = Some(required(result, &d::RESULT_CODE)?);
        } else if h.command == command::DISCONNECT_PEER {
            cause = Some(required(cause, &d::DISCONNECT_CAUSE)?);
        }
        Ok(Control {
            command: h.command,
            origin_host,
            origin_realm,
            origin_state_id: state,
            result_code: result,
            disconnect_cause: cause,
        })
    }

    fn write(&self, w: &mut Writer) {
        if let Some(code) = self.result_code {
            w.u32(&d::RESULT_CODE, code);
        }
        w.str(&d::ORIGIN_HOST, &self.origin_host);
        w.str(&d::ORIGIN_REALM, &self.origin_realm);
        if let Some(id) = self.origin_state_id {
            w.u32(&d::ORIGIN_STATE_ID, id);
        }
        if let Some(c) = self.disconnect_cause {
            w.u32(&d::DISCONNECT_CAUSE, c as u32);
        }
    }

    pub fn encode_request(&self, hop_by_hop: u32, end_to_end: u32) -> Vec<u8> {
        let header = Header::request(self.command, application::COMMON, hop_by_hop, end_to_end);
        let mut w = Writer::message(Vec::with_capacity(128), &Header { flags: crate::message::FLAG_R, ..header });
        self.write(&mut w);
        w.finish()
    }

    pub fn encode_answer(&self, request: &Header) -> Vec<u8> {
        let mut w = Writer::message(Vec::with_capacity(128), &request.answer(self.result_code.unwrap_or(2001)));
        self.write(&mut w);
        w.finish()
    }
}

/// The answer to `request` refusing it with `result_code`: Session-Id (if the request's can be
/// read), Result-Code, this node's origin, Error-Message, Failed-AVP, and for a Credit-Control
/// request the AVPs RFC 4006 §3.2 requires in every CCA (their values, when they can be read).
/// The E flag is set for a protocol error (3xxx).
pub fn error_answer(request: &Header, body: &[u8], me: &Identity, error: &Error) -> Vec<u8> {
    answer_with(request, body, me, error.result_code(), &error.to_string(), error.failed_avp().as_deref())
}

/// [`error_answer`] with an explicit result code and message.
pub fn answer_with(
    request: &Header,
    body: &[u8],
    me: &Identity,
    result_code: u32,
    message: &str,
    failed_avp: Option<&[u8]>,
) -> Vec<u8> {
    // The request's values, written anew with this node's flags (the request's may be bad).
    let avps = crate::avp::AvpIter::new(body, crate::message::HEADER_LEN).map_while(Result::ok);
    let find = |def: &AvpDef| avps.clone().find(|a| is(a, def));
    let mut w = Writer::message(Vec::with_capacity(256), &request.answer(result_code));
    if let Some(session) = find(&d::SESSION_ID).and_then(|a| a.str().ok()) {
        w.str(&d::SESSION_ID, session);
    }
    w.u32(&d::RESULT_CODE, result_code);
    write_origin(&mut w, me);
    if request.command == command::CREDIT_CONTROL {
        for def in [&d::AUTH_APPLICATION_ID, &d::CC_REQUEST_TYPE, &d::CC_REQUEST_NUMBER] {
            find(def).and_then(|a| a.u32().ok()).inspect(|&v| w.u32(def, v));
        }
    }
    if !message.is_empty() {
        w.str(&d::ERROR_MESSAGE, message);
    }
    if let Some(failed) = failed_avp {
        w.grouped(&d::FAILED_AVP, |w| w.encoded(failed));
    }
    w.finish()
}
