//! The dictionary: every AVP this node reads or writes, by code and vendor, with its name, data
//! format (RFC 6733 §4.2–4.3) and M-flag rule; the command codes, application ids and result
//! codes. Three sources: the base protocol (RFC 6733), Diameter Credit-Control (RFC 4006) and
//! the 3GPP charging AVPs of the Gy reference point (TS 32.299 and the TS 29.061 `3GPP-*` AVPs it
//! imports, vendor 10415).
//!
//! The table is what validation checks a request against: an AVP missing from it whose M flag is
//! set is refused with 5001, a fixed-size format with another length with 5014, an M flag on an
//! AVP whose rule is "must not" with 3009.

/// IETF AVPs carry no Vendor-Id; the table writes them as vendor 0.
pub const IETF: u32 = 0;
/// 3GPP's IANA enterprise number, the Vendor-Id of the TS 32.299 / TS 29.061 AVPs.
pub const VENDOR_3GPP: u32 = 10415;

/// The data formats of RFC 6733 §4.2 and the derived ones of §4.3 this dictionary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvpType {
    OctetString,
    Integer32,
    Integer64,
    Unsigned32,
    Unsigned64,
    Grouped,
    Address,
    Time,
    Utf8String,
    DiameterIdentity,
    DiameterUri,
    Enumerated,
    IpFilterRule,
}

impl AvpType {
    /// The data length a value of this format must have, for the fixed-size ones.
    pub const fn fixed_len(self) -> Option<usize> {
        match self {
            AvpType::Integer32 | AvpType::Unsigned32 | AvpType::Enumerated | AvpType::Time => Some(4),
            AvpType::Integer64 | AvpType::Unsigned64 => Some(8),
            _ => None,
        }
    }
}

/// Whether the M (mandatory) flag must, may or must not be set (the AVP tables of the RFCs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MRule {
    Must,
    May,
    MustNot,
}

/// One AVP of the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvpDef {
    pub code: u32,
    /// [`IETF`] (0) for an AVP without Vendor-Id.
    pub vendor: u32,
    pub name: &'static str,
    pub ty: AvpType,
    pub m: MRule,
}

impl AvpDef {
    /// The flags this node sends the AVP with: V for a vendor AVP, M unless the rule forbids it.
    pub const fn flags(&self) -> u8 {
        let v = if self.vendor != IETF { crate::avp::FLAG_V } else { 0 };
        let m = if matches!(self.m, MRule::MustNot) { 0 } else { crate::avp::FLAG_M };
        v | m
    }
}

macro_rules! avps {
    ($($konst:ident = $code:literal, $vendor:ident, $name:literal, $ty:ident, $m:ident;)*) => {
        $(
            #[doc = $name]
            pub const $konst: AvpDef =
                AvpDef { code: $code, vendor: $vendor, name: $name, ty: AvpType::$ty, m: MRule::$m };
        )*
        /// Every AVP of the dictionary, sorted by (vendor, code).
        pub static AVPS: &[AvpDef] = &[$($konst),*];

        /// The definition of AVP `code` of `vendor` (0 for IETF), if this node knows it: a
        /// `match`, which the compiler turns into jump tables (every AVP of every message
        /// received is looked up).
        pub fn lookup(code: u32, vendor: u32) -> Option<&'static AvpDef> {
            match (vendor, code) {
                $(($vendor, $code) => Some(&$konst),)*
                _ => None,
            }
        }
    };
}

avps! {
    // RFC 6733 base protocol (and the RADIUS attributes it and RFC 4006 reuse).
    USER_NAME = 1, IETF, "User-Name", Utf8String, Must;
    CLASS = 25, IETF, "Class", OctetString, Must;
    SESSION_TIMEOUT = 27, IETF, "Session-Timeout", Unsigned32, Must;
    CALLED_STATION_ID = 30, IETF, "Called-Station-Id", Utf8String, Must;
    PROXY_STATE = 33, IETF, "Proxy-State", OctetString, Must;
    EVENT_TIMESTAMP = 55, IETF, "Event-Timestamp", Time, Must;
    HOST_IP_ADDRESS = 257, IETF, "Host-IP-Address", Address, Must;
    AUTH_APPLICATION_ID = 258, IETF, "Auth-Application-Id", Unsigned32, Must;
    ACCT_APPLICATION_ID = 259, IETF, "Acct-Application-Id", Unsigned32, Must;
    VENDOR_SPECIFIC_APPLICATION_ID = 260, IETF, "Vendor-Specific-Application-Id", Grouped, Must;
    REDIRECT_HOST_USAGE = 261, IETF, "Redirect-Host-Usage", Enumerated, Must;
    REDIRECT_MAX_CACHE_TIME = 262, IETF, "Redirect-Max-Cache-Time", Unsigned32, Must;
    SESSION_ID = 263, IETF, "Session-Id", Utf8String, Must;
    ORIGIN_HOST = 264, IETF, "Origin-Host", DiameterIdentity, Must;
    SUPPORTED_VENDOR_ID = 265, IETF, "Supported-Vendor-Id", Unsigned32, Must;
    VENDOR_ID = 266, IETF, "Vendor-Id", Unsigned32, Must;
    FIRMWARE_REVISION = 267, IETF, "Firmware-Revision", Unsigned32, MustNot;
    RESULT_CODE = 268, IETF, "Result-Code", Unsigned32, Must;
    PRODUCT_NAME = 269, IETF, "Product-Name", Utf8String, MustNot;
    SESSION_BINDING = 270, IETF, "Session-Binding", Unsigned32, Must;
    SESSION_SERVER_FAILOVER = 271, IETF, "Session-Server-Failover", Enumerated, Must;
    MULTI_ROUND_TIME_OUT = 272, IETF, "Multi-Round-Time-Out", Unsigned32, Must;
    DISCONNECT_CAUSE = 273, IETF, "Disconnect-Cause", Enumerated, Must;
    AUTH_REQUEST_TYPE = 274, IETF, "Auth-Request-Type", Enumerated, Must;
    AUTH_GRACE_PERIOD = 276, IETF, "Auth-Grace-Period", Unsigned32, Must;
    AUTH_SESSION_STATE = 277, IETF, "Auth-Session-State", Enumerated, Must;
    ORIGIN_STATE_ID = 278, IETF, "Origin-State-Id", Unsigned32, Must;
    FAILED_AVP = 279, IETF, "Failed-AVP", Grouped, Must;
    PROXY_HOST = 280, IETF, "Proxy-Host", DiameterIdentity, Must;
    ERROR_MESSAGE = 281, IETF, "Error-Message", Utf8String, MustNot;
    ROUTE_RECORD = 282, IETF, "Route-Record", DiameterIdentity, Must;
    DESTINATION_REALM = 283, IETF, "Destination-Realm", DiameterIdentity, Must;
    PROXY_INFO = 284, IETF, "Proxy-Info", Grouped, Must;
    RE_AUTH_REQUEST_TYPE = 285, IETF, "Re-Auth-Request-Type", Enumerated, Must;
    ACCOUNTING_SUB_SESSION_ID = 287, IETF, "Accounting-Sub-Session-Id", Unsigned64, Must;
    AUTHORIZATION_LIFETIME = 291, IETF, "Authorization-Lifetime", Unsigned32, Must;
    REDIRECT_HOST = 292, IETF, "Redirect-Host", DiameterUri, Must;
    DESTINATION_HOST = 293, IETF, "Destination-Host", DiameterIdentity, Must;
    ERROR_REPORTING_HOST = 294, IETF, "Error-Reporting-Host", DiameterIdentity, MustNot;
    TERMINATION_CAUSE = 295, IETF, "Termination-Cause", Enumerated, Must;
    ORIGIN_REALM = 296, IETF, "Origin-Realm", DiameterIdentity, Must;
    EXPERIMENTAL_RESULT = 297, IETF, "Experimental-Result", Grouped, Must;
    EXPERIMENTAL_RESULT_CODE = 298, IETF, "Experimental-Result-Code", Unsigned32, Must;
    INBAND_SECURITY_ID = 299, IETF, "Inband-Security-Id", Unsigned32, Must;
    // RFC 4006 Diameter Credit-Control.
    CC_CORRELATION_ID = 411, IETF, "CC-Correlation-Id", OctetString, May;
    CC_INPUT_OCTETS = 412, IETF, "CC-Input-Octets", Unsigned64, Must;
    CC_MONEY = 413, IETF, "CC-Money", Grouped, Must;
    CC_OUTPUT_OCTETS = 414, IETF, "CC-Output-Octets", Unsigned64, Must;
    CC_REQUEST_NUMBER = 415, IETF, "CC-Request-Number", Unsigned32, Must;
    CC_REQUEST_TYPE = 416, IETF, "CC-Request-Type", Enumerated, Must;
    CC_SERVICE_SPECIFIC_UNITS = 417, IETF, "CC-Service-Specific-Units", Unsigned64, Must;
    CC_SESSION_FAILOVER = 418, IETF, "CC-Session-Failover", Enumerated, Must;
    CC_SUB_SESSION_ID = 419, IETF, "CC-Sub-Session-Id", Unsigned64, Must;
    CC_TIME = 420, IETF, "CC-Time", Unsigned32, Must;
    CC_TOTAL_OCTETS = 421, IETF, "CC-Total-Octets", Unsigned64, Must;
    CHECK_BALANCE_RESULT = 422, IETF, "Check-Balance-Result", Enumerated, Must;
    COST_INFORMATION = 423, IETF, "Cost-Information", Grouped, Must;
    COST_UNIT = 424, IETF, "Cost-Unit", Utf8String, Must;
    CURRENCY_CODE = 425, IETF, "Currency-Code", Unsigned32, Must;
    CREDIT_CONTROL = 426, IETF, "Credit-Control", Enumerated, Must;
    CREDIT_CONTROL_FAILURE_HANDLING = 427, IETF, "Credit-Control-Failure-Handling", Enumerated, Must;
    DIRECT_DEBITING_FAILURE_HANDLING = 428, IETF, "Direct-Debiting-Failure-Handling", Enumerated, Must;
    EXPONENT = 429, IETF, "Exponent", Integer32, Must;
    FINAL_UNIT_INDICATION = 430, IETF, "Final-Unit-Indication", Grouped, Must;
    GRANTED_SERVICE_UNIT = 431, IETF, "Granted-Service-Unit", Grouped, Must;
    RATING_GROUP = 432, IETF, "Rating-Group", Unsigned32, Must;
    REDIRECT_ADDRESS_TYPE = 433, IETF, "Redirect-Address-Type", Enumerated, Must;
    REDIRECT_SERVER = 434, IETF, "Redirect-Server", Grouped, Must;
    REDIRECT_SERVER_ADDRESS = 435, IETF, "Redirect-Server-Address", Utf8String, Must;
    REQUESTED_ACTION = 436, IETF, "Requested-Action", Enumerated, Must;
    REQUESTED_SERVICE_UNIT = 437, IETF, "Requested-Service-Unit", Grouped, Must;
    RESTRICTION_FILTER_RULE = 438, IETF, "Restriction-Filter-Rule", IpFilterRule, Must;
    SERVICE_IDENTIFIER = 439, IETF, "Service-Identifier", Unsigned32, Must;
    SERVICE_PARAMETER_INFO = 440, IETF, "Service-Parameter-Info", Grouped, May;
    SERVICE_PARAMETER_TYPE = 441, IETF, "Service-Parameter-Type", Unsigned32, May;
    SERVICE_PARAMETER_VALUE = 442, IETF, "Service-Parameter-Value", OctetString, May;
    SUBSCRIPTION_ID = 443, IETF, "Subscription-Id", Grouped, Must;
    SUBSCRIPTION_ID_DATA = 444, IETF, "Subscription-Id-Data", Utf8String, Must;
    UNIT_VALUE = 445, IETF, "Unit-Value", Grouped, Must;
    USED_SERVICE_UNIT = 446, IETF, "Used-Service-Unit", Grouped, Must;
    VALUE_DIGITS = 447, IETF, "Value-Digits", Integer64, Must;
    VALIDITY_TIME = 448, IETF, "Validity-Time", Unsigned32, Must;
    FINAL_UNIT_ACTION = 449, IETF, "Final-Unit-Action", Enumerated, Must;
    SUBSCRIPTION_ID_TYPE = 450, IETF, "Subscription-Id-Type", Enumerated, Must;
    TARIFF_TIME_CHANGE = 451, IETF, "Tariff-Time-Change", Time, Must;
    TARIFF_CHANGE_USAGE = 452, IETF, "Tariff-Change-Usage", Enumerated, Must;
    G_S_U_POOL_IDENTIFIER = 453, IETF, "G-S-U-Pool-Identifier", Unsigned32, Must;
    CC_UNIT_TYPE = 454, IETF, "CC-Unit-Type", Enumerated, Must;
    MULTIPLE_SERVICES_INDICATOR = 455, IETF, "Multiple-Services-Indicator", Enumerated, Must;
    MULTIPLE_SERVICES_CREDIT_CONTROL = 456, IETF, "Multiple-Services-Credit-Control", Grouped, Must;
    G_S_U_POOL_REFERENCE = 457, IETF, "G-S-U-Pool-Reference", Grouped, Must;
    USER_EQUIPMENT_INFO = 458, IETF, "User-Equipment-Info", Grouped, May;
    USER_EQUIPMENT_INFO_TYPE = 459, IETF, "User-Equipment-Info-Type", Enumerated, May;
    USER_EQUIPMENT_INFO_VALUE = 460, IETF, "User-Equipment-Info-Value", OctetString, May;
    SERVICE_CONTEXT_ID = 461, IETF, "Service-Context-Id", Utf8String, Must;
    // 3GPP TS 29.061 AVPs that TS 32.299's PS-Information carries.
    TGPP_IMSI = 1, VENDOR_3GPP, "3GPP-IMSI", Utf8String, May;
    TGPP_CHARGING_ID = 2, VENDOR_3GPP, "3GPP-Charging-Id", Unsigned32, May;
    TGPP_PDP_TYPE = 3, VENDOR_3GPP, "3GPP-PDP-Type", Enumerated, May;
    TGPP_GPRS_NEGOTIATED_QOS_PROFILE = 5, VENDOR_3GPP, "3GPP-GPRS-Negotiated-QoS-Profile", Utf8String, May;
    TGPP_IMSI_MCC_MNC = 8, VENDOR_3GPP, "3GPP-IMSI-MCC-MNC", Utf8String, May;
    TGPP_GGSN_MCC_MNC = 9, VENDOR_3GPP, "3GPP-GGSN-MCC-MNC", Utf8String, May;
    TGPP_NSAPI = 10, VENDOR_3GPP, "3GPP-NSAPI", OctetString, May;
    TGPP_SELECTION_MODE = 12, VENDOR_3GPP, "3GPP-Selection-Mode", Utf8String, May;
    TGPP_CHARGING_CHARACTERISTICS = 13, VENDOR_3GPP, "3GPP-Charging-Characteristics", Utf8String, May;
    TGPP_SGSN_MCC_MNC = 18, VENDOR_3GPP, "3GPP-SGSN-MCC-MNC", Utf8String, May;
    TGPP_IMEISV = 20, VENDOR_3GPP, "3GPP-IMEISV", OctetString, May;
    TGPP_RAT_TYPE = 21, VENDOR_3GPP, "3GPP-RAT-Type", OctetString, May;
    TGPP_USER_LOCATION_INFO = 22, VENDOR_3GPP, "3GPP-User-Location-Info", OctetString, May;
    TGPP_MS_TIMEZONE = 23, VENDOR_3GPP, "3GPP-MS-TimeZone", OctetString, May;
    // 3GPP TS 32.299 charging AVPs of Gy (and the IMS ones a voice call's CCR carries).
    ROLE_OF_NODE = 829, VENDOR_3GPP, "Role-Of-Node", Enumerated, May;
    CALLING_PARTY_ADDRESS = 831, VENDOR_3GPP, "Calling-Party-Address", Utf8String, May;
    CALLED_PARTY_ADDRESS = 832, VENDOR_3GPP, "Called-Party-Address", Utf8String, May;
    GGSN_ADDRESS = 847, VENDOR_3GPP, "GGSN-Address", Address, May;
    NODE_FUNCTIONALITY = 862, VENDOR_3GPP, "Node-Functionality", Enumerated, May;
    TIME_QUOTA_THRESHOLD = 868, VENDOR_3GPP, "Time-Quota-Threshold", Unsigned32, May;
    VOLUME_QUOTA_THRESHOLD = 869, VENDOR_3GPP, "Volume-Quota-Threshold", Unsigned32, May;
    TRIGGER_TYPE = 870, VENDOR_3GPP, "Trigger-Type", Enumerated, May;
    QUOTA_HOLDING_TIME = 871, VENDOR_3GPP, "Quota-Holding-Time", Unsigned32, May;
    REPORTING_REASON = 872, VENDOR_3GPP, "Reporting-Reason", Enumerated, May;
    SERVICE_INFORMATION = 873, VENDOR_3GPP, "Service-Information", Grouped, May;
    PS_INFORMATION = 874, VENDOR_3GPP, "PS-Information", Grouped, May;
    IMS_INFORMATION = 876, VENDOR_3GPP, "IMS-Information", Grouped, May;
    QUOTA_CONSUMPTION_TIME = 881, VENDOR_3GPP, "Quota-Consumption-Time", Unsigned32, May;
    SGSN_ADDRESS = 1228, VENDOR_3GPP, "SGSN-Address", Address, May;
    TRIGGER = 1264, VENDOR_3GPP, "Trigger", Grouped, May;
    PDN_CONNECTION_CHARGING_ID = 2050, VENDOR_3GPP, "PDN-Connection-Charging-ID", Unsigned32, May;
}

/// Command codes (RFC 6733 §3.1, RFC 4006 §3).
pub mod command {
    pub const CAPABILITIES_EXCHANGE: u32 = 257;
    pub const DEVICE_WATCHDOG: u32 = 280;
    pub const DISCONNECT_PEER: u32 = 282;
    pub const CREDIT_CONTROL: u32 = 272;

    /// The command's name, for logs and errors.
    pub fn name(code: u32) -> &'static str {
        match code {
            CAPABILITIES_EXCHANGE => "Capabilities-Exchange",
            DEVICE_WATCHDOG => "Device-Watchdog",
            DISCONNECT_PEER => "Disconnect-Peer",
            CREDIT_CONTROL => "Credit-Control",
            _ => "unknown command",
        }
    }
}

/// Application ids (RFC 6733 §2.4, RFC 4006 §1.3).
pub mod application {
    /// The base protocol's common messages (CER, DWR, DPR).
    pub const COMMON: u32 = 0;
    /// Diameter Credit-Control, which Gy is.
    pub const CREDIT_CONTROL: u32 = 4;
    /// Relay: a CER naming it shares every application.
    pub const RELAY: u32 = 0xffff_ffff;
}

/// Result codes (RFC 6733 §7.1, RFC 4006 §9).
pub mod result {
    pub const SUCCESS: u32 = 2001;
    pub const LIMITED_SUCCESS: u32 = 2002;
    pub const COMMAND_UNSUPPORTED: u32 = 3001;
    pub const UNABLE_TO_DELIVER: u32 = 3002;
    pub const TOO_BUSY: u32 = 3004;
    pub const APPLICATION_UNSUPPORTED: u32 = 3007;
    pub const INVALID_HDR_BITS: u32 = 3008;
    pub const INVALID_AVP_BITS: u32 = 3009;
    pub const UNKNOWN_PEER: u32 = 3010;
    pub const END_USER_SERVICE_DENIED: u32 = 4010;
    pub const CREDIT_CONTROL_NOT_APPLICABLE: u32 = 4011;
    pub const CREDIT_LIMIT_REACHED: u32 = 4012;
    pub const AVP_UNSUPPORTED: u32 = 5001;
    pub const UNKNOWN_SESSION_ID: u32 = 5002;
    pub const INVALID_AVP_VALUE: u32 = 5004;
    pub const MISSING_AVP: u32 = 5005;
    pub const AVP_OCCURS_TOO_MANY_TIMES: u32 = 5009;
    pub const NO_COMMON_APPLICATION: u32 = 5010;
    pub const UNSUPPORTED_VERSION: u32 = 5011;
    pub const UNABLE_TO_COMPLY: u32 = 5012;
    pub const INVALID_AVP_LENGTH: u32 = 5014;
    pub const INVALID_MESSAGE_LENGTH: u32 = 5015;
    pub const USER_UNKNOWN: u32 = 5030;
    pub const RATING_FAILED: u32 = 5031;

    /// Protocol errors (3xxx) are answered with the E bit set (RFC 6733 §7.1.3).
    pub const fn is_protocol_error(code: u32) -> bool {
        code >= 3000 && code < 4000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_lookup_finds_every_entry() {
        assert!(AVPS.windows(2).all(|w| (w[0].vendor, w[0].code) < (w[1].vendor, w[1].code)));
        for d in AVPS {
            assert_eq!(lookup(d.code, d.vendor), Some(d));
        }
        assert_eq!(lookup(456, IETF).map(|d| d.name), Some("Multiple-Services-Credit-Control"));
        assert_eq!(lookup(874, VENDOR_3GPP).map(|d| d.name), Some("PS-Information"));
        assert_eq!(lookup(874, IETF), None);
        assert_eq!(lookup(9999, IETF), None);
    }

    #[test]
    fn flags_follow_the_m_rule_and_vendor() {
        assert_eq!(SESSION_ID.flags(), crate::avp::FLAG_M);
        assert_eq!(PRODUCT_NAME.flags(), 0);
        assert_eq!(PS_INFORMATION.flags(), crate::avp::FLAG_V | crate::avp::FLAG_M);
    }
}
