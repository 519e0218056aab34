//! Credit-Control (RFC 4006) with the 3GPP Gy AVPs (TS 32.299): the CCR and CCA as typed
//! messages, Multiple-Services-Credit-Control with its service units, Final-Unit-Indication,
//! Subscription-Id, and the PS- and IMS-Information a gateway or switching centre sends.
//!
//! Only the AVPs the OCS acts on are typed; the others of a validated request are skipped.

use crate::avp::{Avp, Writer};
use crate::base::{is, once, required};
use crate::dict::{self as d, application, command};
use crate::error::Error;
use crate::message::{FLAG_T, Header, Message};

/// The Service-Context-Id of Gy's PS charging (TS 32.299 §7.1.12).
pub const PS_CONTEXT: &str = "32251@3gpp.org";
/// The Service-Context-Id of IMS (voice) charging over Ro.
pub const IMS_CONTEXT: &str = "32260@3gpp.org";

/// Seconds from 1900 (NTP, the Time format's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The Time format (seconds since 1900, modulo 2^32) of a Unix time in seconds.
pub fn ntp_seconds(unix_seconds: u64) -> u32 {
    (unix_seconds + NTP_UNIX_OFFSET) as u32
}

/// The Unix time of a Time value (before 2036's wrap).
pub fn unix_seconds(ntp: u32) -> u64 {
    u64::from(ntp).saturating_sub(NTP_UNIX_OFFSET)
}

macro_rules! enumeration {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $v:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant = $v),* }
        impl $name {
            pub fn from_u32(v: u32) -> Option<Self> {
                match v { $($v => Some($name::$variant),)* _ => None }
            }
        }
    };
}

enumeration! {
    /// CC-Request-Type: where the request stands in the credit-control session.
    CcRequestType { Initial = 1, Update = 2, Termination = 3, Event = 4 }
}
enumeration! {
    /// Subscription-Id-Type: how Subscription-Id-Data names the subscriber.
    SubscriptionIdType { EndUserE164 = 0, EndUserImsi = 1, EndUserSipUri = 2, EndUserNai = 3, EndUserPrivate = 4 }
}
enumeration! {
    /// Final-Unit-Action: what the gateway does once the final units are used.
    FinalUnitAction { Terminate = 0, Redirect = 1, RestrictAccess = 2 }
}
enumeration! {
    /// Redirect-Address-Type.
    RedirectAddressType { Ipv4 = 0, Ipv6 = 1, Url = 2, SipUri = 3 }
}

/// Subscription-Id: the subscriber charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionId {
    pub kind: SubscriptionIdType,
    pub data: String,
}

/// Requested-, Granted- or Used-Service-Unit: time in seconds, octets, or service units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceUnit {
    pub time: Option<u32>,
    pub total_octets: Option<u64>,
    pub input_octets: Option<u64>,
    pub output_octets: Option<u64>,
    pub service_specific_units: Option<u64>,
}

/// Redirect-Server of a Final-Unit-Indication with action Redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectServer {
    pub address_type: RedirectAddressType,
    pub address: String,
}

/// Final-Unit-Indication: the grant it comes with is the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalUnitIndication {
    pub action: FinalUnitAction,
    pub redirect_server: Option<RedirectServer>,
}

/// Multiple-Services-Credit-Control: the credit control of one rating group (and its services).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mscc {
    pub rating_group: Option<u32>,
    pub service_identifiers: Vec<u32>,
    pub requested: Option<ServiceUnit>,
    pub granted: Option<ServiceUnit>,
    pub used: Vec<ServiceUnit>,
    /// Seconds the grant is valid for.
    pub validity_time: Option<u32>,
    pub final_unit_indication: Option<FinalUnitIndication>,
    /// The outcome for this rating group (in a CCA).
    pub result_code: Option<u32>,
    /// Why the usage is reported (TS 32.299 Reporting-Reason, e.g. 2 QUOTA_EXHAUSTED).
    pub reporting_reason: Option<u32>,
    pub time_quota_threshold: Option<u32>,
    pub volume_quota_threshold: Option<u32>,
    pub quota_holding_time: Option<u32>,
}

/// PS-Information (TS 32.299 §7.2.158), the parts rating reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PsInformation {
    pub charging_id: Option<u32>,
    /// The access point name.
    pub called_station_id: Option<String>,
    pub imsi_mcc_mnc: Option<String>,
    pub sgsn_mcc_mnc: Option<String>,
    pub rat_type: Option<Vec<u8>>,
    pub user_location_info: Option<Vec<u8>>,
}

/// IMS-Information (TS 32.299 §7.2.77) of a voice call: who calls whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImsInformation {
    /// Node-Functionality (required by TS 32.299; 0 S-CSCF, 6 AS, ...).
    pub node_functionality: u32,
    /// Role-Of-Node: 0 originating, 1 terminating.
    pub role_of_node: Option<u32>,
    pub calling_party_address: Option<String>,
    pub called_party_address: Option<String>,
}

/// Service-Information: the service-specific charging data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInformation {
    pub ps: Option<PsInformation>,
    pub ims: Option<ImsInformation>,
}

/// Credit-Control-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ccr {
    pub session_id: String,
    pub origin_host: String,
    pub origin_realm: String,
    pub destination_realm: String,
    pub destination_host: Option<String>,
    pub auth_application_id: u32,
    pub service_context_id: String,
    pub request_type: CcRequestType,
    pub request_number: u32,
    pub user_name: Option<String>,
    pub origin_state_id: Option<u32>,
    /// Time format (NTP seconds); see [`unix_seconds`].
    pub event_timestamp: Option<u32>,
    pub subscription_ids: Vec<SubscriptionId>,
    pub requested_action: Option<u32>,
    pub multiple_services_indicator: Option<u32>,
    pub mscc: Vec<Mscc>,
    pub termination_cause: Option<u32>,
    pub service_information: Option<ServiceInformation>,
    /// The header's T flag: the client may have sent this request before (after a failover).
    pub retransmitted: bool,
}

/// Credit-Control-Answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cca {
    pub session_id: String,
    pub result_code: u32,
    /// Filled in by the peer that sends the answer.
    pub origin_host: String,
    pub origin_realm: String,
    pub auth_application_id: u32,
    pub request_type: CcRequestType,
    pub request_number: u32,
    pub mscc: Vec<Mscc>,
    pub cc_session_failover: Option<u32>,
    pub credit_control_failure_handling: Option<u32>,
    pub error_message: Option<String>,
    /// The content of Failed-AVP, encoded.
    pub failed_avp: Option<Vec<u8>>,
}

impl Cca {
    /// The answer to `ccr` with `result_code` and no MSCC yet.
    pub fn answering(ccr: &Ccr, result_code: u32) -> Self {
        Cca {
            session_id: ccr.session_id.clone(),
            result_code,
            origin_host: String::new(),
            origin_realm: String::new(),
            auth_application_id: application::CREDIT_CONTROL,
            request_type: ccr.request_type,
            request_number: ccr.request_number,
            mscc: Vec::new(),
            cc_session_failover: None,
            credit_control_failure_handling: None,
            error_message: None,
            failed_avp: None,
        }
    }
}

fn service_unit(avp: &Avp<'_>) -> Result<ServiceUnit, Error> {
    let mut u = ServiceUnit::default();
    for m in avp.grouped() {
        let m = m?;
        match (m.vendor, m.code) {
            (0, 420) => once(&mut u.time, &m, m.u32()?)?,
            (0, 421) => once(&mut u.total_octets, &m, m.u64()?)?,
            (0, 412) => once(&mut u.input_octets, &m, m.u64()?)?,
            (0, 414) => once(&mut u.output_octets, &m, m.u64()?)?,
            (0, 417) => once(&mut u.service_specific_units, &m, m.u64()?)?,
            _ => {}
        }
    }
    Ok(u)
}

fn write_unit(w: &mut Writer, def: &d::AvpDef, u: &ServiceUnit) {
    w.grouped(def, |w| {
        u.time.inspect(|&v| w.u32(&d::CC_TIME, v));
        u.total_octets.inspect(|&v| w.u64(&d::CC_TOTAL_OCTETS, v));
        u.input_octets.inspect(|&v| w.u64(&d::CC_INPUT_OCTETS, v));
        u.output_octets.inspect(|&v| w.u64(&d::CC_OUTPUT_OCTETS, v));
        u.service_specific_units.inspect(|&v| w.u64(&d::CC_SERVICE_SPECIFIC_UNITS, v));
    });
}

fn final_unit_indication(avp: &Avp<'_>) -> Result<FinalUnitIndication, Error> {
    let (mut action, mut redirect) = (None, None);
    for m in avp.grouped() {
        let m = m?;
        if is(&m, &d::FINAL_UNIT_ACTION) {
            once(&mut action, &m, m.enumerated(FinalUnitAction::from_u32)?)?;
        } else if is(&m, &d::REDIRECT_SERVER) {
            let (mut kind, mut address) = (None, None);
            for r in m.grouped() {
                let r = r?;
                if is(&r, &d::REDIRECT_ADDRESS_TYPE) {
                    once(&mut kind, &r, r.enumerated(RedirectAddressType::from_u32)?)?;
                } else if is(&r, &d::REDIRECT_SERVER_ADDRESS) {
                    once(&mut address, &r, r.string()?)?;
                }
            }
            let server = RedirectServer {
                address_type: required(kind, &d::REDIRECT_ADDRESS_TYPE)?,
                address: required(address, &d::REDIRECT_SERVER_ADDRESS)?,
            };
            once(&mut redirect, &m, server)?;
        }
    }
    Ok(FinalUnitIndication { action: required(action, &d::FINAL_UNIT_ACTION)?, redirect_server: redirect })
}

fn mscc(avp: &Avp<'_>) -> Result<Mscc, Error> {
    let mut c = Mscc::default();
    for m in avp.grouped() {
        let m = m?;
        match (m.vendor, m.code) {
            (0, 432) => once(&mut c.rating_group, &m, m.u32()?)?,
            (0, 439) => c.service_identifiers.push(m.u32()?),
            (0, 437) => once(&mut c.requested, &m, service_unit(&m)?)?,
            (0, 431) => once(&mut c.granted, &m, service_unit(&m)?)?,
            (0, 446) => c.used.push(service_unit(&m)?),
            (0, 448) => once(&mut c.validity_time, &m, m.u32()?)?,
            (0, 430) => once(&mut c.final_unit_indication, &m, final_unit_indication(&m)?)?,
            (0, 268) => once(&mut c.result_code, &m, m.u32()?)?,
            (d::VENDOR_3GPP, 872) => once(&mut c.reporting_reason, &m, m.u32()?)?,
            (d::VENDOR_3GPP, 868) => once(&mut c.time_quota_threshold, &m, m.u32()?)?,
            (d::VENDOR_3GPP, 869) => once(&mut c.volume_quota_threshold, &m, m.u32()?)?,
            (d::VENDOR_3GPP, 871) => once(&mut c.quota_holding_time, &m, m.u32()?)?,
            _ => {}
        }
    }
    Ok(c)
}

fn write_mscc(w: &mut Writer, c: &Mscc) {
    w.grouped(&d::MULTIPLE_SERVICES_CREDIT_CONTROL, |w| {
        if let Some(u) = &c.granted {
            write_unit(w, &d::GRANTED_SERVICE_UNIT, u);
        }
        if let Some(u) = &c.requested {
            write_unit(w, &d::REQUESTED_SERVICE_UNIT, u);
        }
        for u in &c.used {
            write_unit(w, &d::USED_SERVICE_UNIT, u);
        }
        for &s in &c.service_identifiers {
            w.u32(&d::SERVICE_IDENTIFIER, s);
        }
        c.rating_group.inspect(|&v| w.u32(&d::RATING_GROUP, v));
        c.validity_time.inspect(|&v| w.u32(&d::VALIDITY_TIME, v));
        c.result_code.inspect(|&v| w.u32(&d::RESULT_CODE, v));
        if let Some(f) = &c.final_unit_indication {
            w.grouped(&d::FINAL_UNIT_INDICATION, |w| {
                w.u32(&d::FINAL_UNIT_ACTION, f.action as u32);
                if let Some(r) = &f.redirect_server {
                    w.grouped(&d::REDIRECT_SERVER, |w| {
                        w.u32(&d::REDIRECT_ADDRESS_TYPE, r.address_type as u32);
                        w.str(&d::REDIRECT_SERVER_ADDRESS, &r.address);
                    });
                }
            });
        }
        c.time_quota_threshold.inspect(|&v| w.u32(&d::TIME_QUOTA_THRESHOLD, v));
        c.volume_quota_threshold.inspect(|&v| w.u32(&d::VOLUME_QUOTA_THRESHOLD, v));
        c.quota_holding_time.inspect(|&v| w.u32(&d::QUOTA_HOLDING_TIME, v));
        c.reporting_reason.inspect(|&v| w.u32(&d::REPORTING_REASON, v));
    });
}

fn subscription_id(avp: &Avp<'_>) -> Result<SubscriptionId, Error> {
    let (mut kind, mut data) = (None, None);
    for m in avp.grouped() {
        let m = m?;
        if is(&m, &d::SUBSCRIPTION_ID_TYPE) {
            once(&mut kind, &m, m.enumerated(SubscriptionIdType::from_u32)?)?;
        } else if is(&m, &d::SUBSCRIPTION_ID_DATA) {
            once(&mut data, &m, m.string()?)?;
        }
    }
    Ok(SubscriptionId {
        kind: required(kind, &d::SUBSCRIPTION_ID_TYPE)?,
        data: required(data, &d::SUBSCRIPTION_ID_DATA)?,
    })
}

fn ps_information(avp: &Avp<'_>) -> Result<PsInformation, Error> {
    let mut p = PsInformation::default();
    for m in avp.grouped() {
        let m = m?;
        match (m.vendor, m.code) {
            (d::VENDOR_3GPP, 2) => once(&mut p.charging_id, &m, m.u32()?)?,
            (0, 30) => once(&mut p.called_station_id, &m, m.string()?)?,
            (d::VENDOR_3GPP, 8) => once(&mut p.imsi_mcc_mnc, &m, m.string()?)?,
            (d::VENDOR_3GPP, 18) => once(&mut p.sgsn_mcc_mnc, &m, m.string()?)?,
            (d::VENDOR_3GPP, 21) => once(&mut p.rat_type, &m, m.data.to_vec())?,
            (d::VENDOR_3GPP, 22) => once(&mut p.user_location_info, &m, m.data.to_vec())?,
            _ => {}
        }
    }
    Ok(p)
}

fn ims_information(avp: &Avp<'_>) -> Result<ImsInformation, Error> {
    let (mut node, mut i) = (None, ImsInformation::default());
    for m in avp.grouped() {
        let m = m?;
        match (m.vendor, m.code) {
            (d::VENDOR_3GPP, 862) => once(&mut node, &m, m.u32()?)?,
            (d::VENDOR_3GPP, 829) => once(&mut i.role_of_node, &m, m.u32()?)?,
            (d::VENDOR_3GPP, 831) => once(&mut i.calling_party_address, &m, m.string()?)?,
            (d::VENDOR_3GPP, 832) => once(&mut i.called_party_address, &m, m.string()?)?,
            _ => {}
        }
    }
    i.node_functionality = required(node, &d::NODE_FUNCTIONALITY)?;
    Ok(i)
}

fn service_information(avp: &Avp<'_>) -> Result<ServiceInformation, Error> {
    let mut s = ServiceInformation::default();
    for m in avp.grouped() {
        let m = m?;
        if is(&m, &d::PS_INFORMATION) {
            once(&mut s.ps, &m, ps_information(&m)?)?;
        } else if is(&m, &d::IMS_INFORMATION) {
            once(&mut s.ims, &m, ims_information(&m)?)?;
        }
    }
    Ok(s)
}

fn write_service_information(w: &mut Writer, s: &ServiceInformation) {
    w.grouped(&d::SERVICE_INFORMATION, |w| {
        if let Some(p) = &s.ps {
            w.grouped(&d::PS_INFORMATION, |w| {
                p.charging_id.inspect(|&v| w.u32(&d::TGPP_CHARGING_ID, v));
                p.imsi_mcc_mnc.as_ref().inspect(|v| w.str(&d::TGPP_IMSI_MCC_MNC, v));
                p.sgsn_mcc_mnc.as_ref().inspect(|v| w.str(&d::TGPP_SGSN_MCC_MNC, v));
                p.called_station_id.as_ref().inspect(|v| w.str(&d::CALLED_STATION_ID, v));
                p.rat_type.as_ref().inspect(|v| w.bytes(&d::TGPP_RAT_TYPE, v));
                p.user_location_info.as_ref().inspect(|v| w.bytes(&d::TGPP_USER_LOCATION_INFO, v));
            });
        }
        if let Some(i) = &s.ims {
            w.grouped(&d::IMS_INFORMATION, |w| {
                w.u32(&d::NODE_FUNCTIONALITY, i.node_functionality);
                i.role_of_node.inspect(|&v| w.u32(&d::ROLE_OF_NODE, v));
                i.calling_party_address.as_ref().inspect(|v| w.str(&d::CALLING_PARTY_ADDRESS, v));
                i.called_party_address.as_ref().inspect(|v| w.str(&d::CALLED_PARTY_ADDRESS, v));
            });
        }
    });
}

/// The top-level AVPs CCR and CCA share.
#[derive(Default)]
struct Common {
    session_id: Option<String>,
    origin_host: Option<String>,
    origin_realm: Option<String>,
    auth_application_id: Option<u32>,
    request_type: Option<CcRequestType>,
    request_number: Option<u32>,
    mscc: Vec<Mscc>,
}

impl Common {
    /// Takes `avp` if it is one of the shared AVPs; true when it was.
    fn take(&mut self, a: &Avp<'_>) -> Result<bool, Error> {
        match (a.vendor, a.code) {
            (0, 263) => once(&mut self.session_id, a, a.string()?)?,
            (0, 264) => once(&mut self.origin_host, a, a.string()?)?,
            (0, 296) => once(&mut self.origin_realm, a, a.string()?)?,
            (0, 258) => once(&mut self.auth_application_id, a, a.u32()?)?,
            (0, 416) => once(&mut self.request_type, a, a.enumerated(CcRequestType::from_u32)?)?,
            (0, 415) => once(&mut self.request_number, a, a.u32()?)?,
            (0, 456) => self.mscc.push(mscc(a)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl ServiceInformation {
    /// IMS-Information of a call charged at its origin (S-CSCF, originating): from `calling`
    /// to `called`, E.164 digits written as `tel:` URIs.
    pub fn ims_call(calling: &str, called: &str) -> ServiceInformation {
        ServiceInformation {
            ps: None,
            ims: Some(ImsInformation {
                node_functionality: 0,
                role_of_node: Some(0),
                calling_party_address: Some(format!("tel:+{calling}")),
                called_party_address: Some(format!("tel:+{called}")),
            }),
        }
    }
}

impl Ccr {
    /// Request `number` of `kind` in session `session_id`, for the subscriber with the E.164
    /// number `subscriber`, in the service context `context`, with multiple services
    /// supported and no MSCC or Service-Information yet. Origin-Host, Origin-Realm and
    /// Destination-Realm are left empty: the [`crate::peer::Client`] that sends it fills them.
    pub fn new(session_id: &str, context: &str, kind: CcRequestType, number: u32, subscriber: &str) -> Ccr {
        Ccr {
            session_id: session_id.to_owned(),
            origin_host: String::new(),
            origin_realm: String::new(),
            destination_realm: String::new(),
            destination_host: None,
            auth_application_id: application::CREDIT_CONTROL,
            service_context_id: context.to_owned(),
            request_type: kind,
            request_number: number,
            user_name: None,
            origin_state_id: None,
            event_timestamp: None,
            subscription_ids: vec![SubscriptionId {
                kind: SubscriptionIdType::EndUserE164,
                data: subscriber.to_owned(),
            }],
            requested_action: None,
            multiple_services_indicator: Some(1),
            mscc: Vec::new(),
            termination_cause: None,
            service_information: None,
            retransmitted: false,
        }
    }

    /// Decodes a validated CCR ([`crate::validate::validate`]); 5005 when a required AVP is absent.
    pub fn decode(message: &Message<'_>) -> Result<Self, Error> {
        let mut c = Common::default();
        let (mut destination_realm, mut destination_host, mut service_context_id) = (None, None, None);
        let (mut user_name, mut origin_state_id, mut event_timestamp) = (None, None, None);
        let (mut requested_action, mut multiple_services_indicator) = (None, None);
        let (mut termination_cause, mut service_info) = (None, None);
        let mut subscription_ids = Vec::new();
        for a in message.avps() {
            let a = a?;
            if c.take(&a)? {
                continue;
            }
            match (a.vendor, a.code) {
                (0, 283) => once(&mut destination_realm, &a, a.string()?)?,
                (0, 293) => once(&mut destination_host, &a, a.string()?)?,
                (0, 461) => once(&mut service_context_id, &a, a.string()?)?,
                (0, 1) => once(&mut user_name, &a, a.string()?)?,
                (0, 278) => once(&mut origin_state_id, &a, a.u32()?)?,
                (0, 55) => once(&mut event_timestamp, &a, a.u32()?)?,
                (0, 443) => subscription_ids.push(subscription_id(&a)?),
                (0, 436) => once(&mut requested_action, &a, a.u32()?)?,
                (0, 455) => once(&mut multiple_services_indicator, &a, a.u32()?)?,
                (0, 295) => once(&mut termination_cause, &a, a.u32()?)?,
                (d::VENDOR_3GPP, 873) => once(&mut service_info, &a, service_information(&a)?)?,
                _ => {}
            }
        }
        Ok(Ccr {
            session_id: required(c.session_id, &d::SESSION_ID)?,
            origin_host: required(c.origin_host, &d::ORIGIN_HOST)?,
            origin_realm: required(c.origin_realm, &d::ORIGIN_REALM)?,
            destination_realm: required(destination_realm, &d::DESTINATION_REALM)?,
            destination_host,
            auth_application_id: required(c.auth_application_id, &d::AUTH_APPLICATION_ID)?,
            service_context_id: required(service_context_id, &d::SERVICE_CONTEXT_ID)?,
            request_type: required(c.request_type, &d::CC_REQUEST_TYPE)?,
            request_number: required(c.request_number, &d::CC_REQUEST_NUMBER)?,
            user_name,
            origin_state_id,
            event_timestamp,
            subscription_ids,
            requested_action,
            multiple_services_indicator,
            mscc: c.mscc,
            termination_cause,
            service_information: service_info,
            retransmitted: message.header.is_retransmission(),
        })
    }

    /// The CCR with these identifiers (T set if `retransmitted`), appended to `buf`.
    pub fn encode_into(&self, buf: Vec<u8>, hop_by_hop: u32, end_to_end: u32) -> Vec<u8> {
        let mut header = Header::request(command::CREDIT_CONTROL, application::CREDIT_CONTROL, hop_by_hop, end_to_end);
        if self.retransmitted {
            header.flags |= FLAG_T;
        }
        let mut w = Writer::message(buf, &header);
        w.str(&d::SESSION_ID, &self.session_id);
        w.str(&d::ORIGIN_HOST, &self.origin_host);
        w.str(&d::ORIGIN_REALM, &self.origin_realm);
        w.str(&d::DESTINATION_REALM, &self.destination_realm);
        w.u32(&d::AUTH_APPLICATION_ID, self.auth_application_id);
        w.str(&d::SERVICE_CONTEXT_ID, &self.service_context_id);
        w.u32(&d::CC_REQUEST_TYPE, self.request_type as u32);
        w.u32(&d::CC_REQUEST_NUMBER, self.request_number);
        self.destination_host.as_ref().inspect(|v| w.str(&d::DESTINATION_HOST, v));
        self.user_name.as_ref().inspect(|v| w.str(&d::USER_NAME, v));
        self.origin_state_id.inspect(|&v| w.u32(&d::ORIGIN_STATE_ID, v));
        self.event_timestamp.inspect(|&v| w.u32(&d::EVENT_TIMESTAMP, v));
        for s in &self.subscription_ids {
            w.grouped(&d::SUBSCRIPTION_ID, |w| {
                w.u32(&d::SUBSCRIPTION_ID_TYPE, s.kind as u32);
                w.str(&d::SUBSCRIPTION_ID_DATA, &s.data);
            });
        }
        self.termination_cause.inspect(|&v| w.u32(&d::TERMINATION_CAUSE, v));
        self.requested_action.inspect(|&v| w.u32(&d::REQUESTED_ACTION, v));
        self.multiple_services_indicator.inspect(|&v| w.u32(&d::MULTIPLE_SERVICES_INDICATOR, v));
        for c in &self.mscc {
            write_mscc(&mut w, c);
        }
        if let Some(s) = &self.service_information {
            write_service_information(&mut w, s);
        }
        w.finish()
    }

    pub fn encode(&self, hop_by_hop: u32, end_to_end: u32) -> Vec<u8> {
        self.encode_into(Vec::with_capacity(512), hop_by_hop, end_to_end)
    }
}

impl Cca {
    pub fn decode(message: &Message<'_>) -> Result<Self, Error> {
        let mut c = Common::default();
        let (mut result_code, mut failover, mut failure_handling) = (None, None, None);
        let (mut error_message, mut failed_avp) = (None, None);
        for a in message.avps() {
            let a = a?;
            if c.take(&a)? {
                continue;
            }
            match (a.vendor, a.code) {
                (0, 268) => once(&mut result_code, &a, a.u32()?)?,
                (0, 418) => once(&mut failover, &a, a.u32()?)?,
                (0, 427) => once(&mut failure_handling, &a, a.u32()?)?,
                (0, 281) => once(&mut error_message, &a, a.string()?)?,
                (0, 279) => once(&mut failed_avp, &a, a.data.to_vec())?,
                _ => {}
            }
        }
        Ok(Cca {
            session_id: required(c.session_id, &d::SESSION_ID)?,
            result_code: required(result_code, &d::RESULT_CODE)?,
            origin_host: required(c.origin_host, &d::ORIGIN_HOST)?,
            origin_realm: required(c.origin_realm, &d::ORIGIN_REALM)?,
            auth_application_id: required(c.auth_application_id, &d::AUTH_APPLICATION_ID)?,
            request_type: required(c.request_type, &d::CC_REQUEST_TYPE)?,
            request_number: required(c.request_number, &d::CC_REQUEST_NUMBER)?,
            mscc: c.mscc,
            cc_session_failover: failover,
            credit_control_failure_handling: failure_handling,
            error_message,
            failed_avp,
        })
    }

    /// The CCA to the CCR with header `request`, appended to `buf`.
    pub fn encode_into(&self, buf: Vec<u8>, request: &Header) -> Vec<u8> {
        let mut w = Writer::message(buf, &request.answer(self.result_code));
        w.str(&d::SESSION_ID, &self.session_id);
        w.u32(&d::RESULT_CODE, self.result_code);
        w.str(&d::ORIGIN_HOST, &self.origin_host);
        w.str(&d::ORIGIN_REALM, &self.origin_realm);
        w.u32(&d::AUTH_APPLICATION_ID, self.auth_application_id);
        w.u32(&d::CC_REQUEST_TYPE, self.request_type as u32);
        w.u32(&d::CC_REQUEST_NUMBER, self.request_number);
        self.cc_session_failover.inspect(|&v| w.u32(&d::CC_SESSION_FAILOVER, v));
        for c in &self.mscc {
            write_mscc(&mut w, c);
        }
        self.credit_control_failure_handling.inspect(|&v| w.u32(&d::CREDIT_CONTROL_FAILURE_HANDLING, v));
        self.error_message.as_ref().inspect(|v| w.str(&d::ERROR_MESSAGE, v));
        if let Some(f) = &self.failed_avp {
            w.grouped(&d::FAILED_AVP, |w| w.encoded(f));
        }
        w.finish()
    }

    pub fn encode(&self, request: &Header) -> Vec<u8> {
        self.encode_into(Vec::with_capacity(256), request)
    }

    /// Whether the answer succeeded (2xxx).
    pub fn is_success(&self) -> bool {
        (2000..3000).contains(&self.result_code)
    }
}
