//! The codec: typed messages round-trip, validation earns the right Result-Code and Failed-AVP,
//! and no input, however broken, makes any decoder panic.

mod common;

use common::service_information;
use diameter::avp::{FLAG_M, Writer};
use diameter::base::{self, VendorSpecificApplicationId};
use diameter::cc::*;
use diameter::dict::{self as d, application, command};
use diameter::message::{FLAG_T, Header};
use diameter::validate::validate;
use diameter::{Capabilities, Control, Error, Identity, Message};
use proptest::prelude::*;

fn me() -> Identity {
    Identity {
        origin_host: "ocs.numport.test".into(),
        origin_realm: "numport.test".into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        vendor_id: 10415,
        product_name: "numport".into(),
        origin_state_id: 7,
    }
}

fn full_ccr() -> Ccr {
    Ccr {
        session_id: "pgw.numport.test;1780000000;42".into(),
        origin_host: "pgw.numport.test".into(),
        origin_realm: "numport.test".into(),
        destination_realm: "numport.test".into(),
        destination_host: Some("ocs.numport.test".into()),
        auth_application_id: 4,
        service_context_id: PS_CONTEXT.into(),
        request_type: CcRequestType::Update,
        request_number: 3,
        user_name: Some("4790000001".into()),
        origin_state_id: Some(9),
        event_timestamp: Some(ntp_seconds(1_780_000_000)),
        subscription_ids: vec![
            SubscriptionId { kind: SubscriptionIdType::EndUserE164, data: "4790000001".into() },
            SubscriptionId { kind: SubscriptionIdType::EndUserImsi, data: "242019876543210".into() },
        ],
        requested_action: None,
        multiple_services_indicator: Some(1),
        mscc: vec![
            Mscc {
                rating_group: Some(10),
                service_identifiers: vec![1, 2],
                requested: Some(ServiceUnit { total_octets: Some(1 << 20), ..Default::default() }),
                used: vec![ServiceUnit {
                    time: Some(60),
                    total_octets: Some(3000),
                    input_octets: Some(1000),
                    output_octets: Some(2000),
                    service_specific_units: None,
                }],
                reporting_reason: Some(2),
                ..Default::default()
            },
            Mscc {
                rating_group: Some(20),
                requested: Some(ServiceUnit { time: Some(300), ..Default::default() }),
                ..Default::default()
            },
        ],
        termination_cause: None,
        service_information: Some(service_information()),
        retransmitted: true,
    }
}

fn full_cca() -> Cca {
    let mut cca = Cca::answering(&full_ccr(), 2001);
    cca.origin_host = "ocs.numport.test".into();
    cca.origin_realm = "numport.test".into();
    cca.mscc = vec![Mscc {
        rating_group: Some(10),
        granted: Some(ServiceUnit { total_octets: Some(500_000), ..Default::default() }),
        validity_time: Some(600),
        result_code: Some(2001),
        final_unit_indication: Some(FinalUnitIndication {
            action: FinalUnitAction::Redirect,
            redirect_server: Some(RedirectServer {
                address_type: RedirectAddressType::Url,
                address: "http://topup.numport.test".into(),
            }),
        }),
        time_quota_threshold: Some(10),
        volume_quota_threshold: Some(50_000),
        quota_holding_time: Some(30),
        ..Default::default()
    }];
    cca.cc_session_failover = Some(1);
    cca.credit_control_failure_handling = Some(1);
    cca
}

#[test]
fn a_full_ccr_round_trips_and_validates() {
    let ccr = full_ccr();
    let bytes = ccr.encode(11, 12);
    let m = Message::decode(&bytes).unwrap();
    assert_eq!((m.header.hop_by_hop, m.header.end_to_end), (11, 12));
    assert_eq!(m.header.flags & FLAG_T, FLAG_T);
    validate(&m).unwrap();
    assert_eq!(Ccr::decode(&m).unwrap(), ccr);
}

#[test]
fn a_full_cca_round_trips_and_validates() {
    let request = Message::decode(&full_ccr().encode(1, 2)).unwrap().header;
    let bytes = full_cca().encode(&request);
    let m = Message::decode(&bytes).unwrap();
    assert!(!m.header.is_request());
    assert_eq!((m.header.hop_by_hop, m.header.end_to_end, m.header.command), (1, 2, command::CREDIT_CONTROL));
    validate(&m).unwrap();
    assert_eq!(Cca::decode(&m).unwrap(), full_cca());
}

#[test]
fn capabilities_and_control_messages_round_trip() {
    let mut cer = Capabilities::of(&me(), &[4]);
    cer.vendor_specific_application_ids =
        vec![VendorSpecificApplicationId { vendor_id: 10415, auth_application_id: Some(4), acct_application_id: None }];
    let bytes = cer.encode_request(1, 1);
    let m = Message::decode(&bytes).unwrap();
    validate(&m).unwrap();
    assert_eq!(Capabilities::decode(&m).unwrap(), cer);
    assert!(cer.offers(4) && !cer.offers(3));

    let mut cea = cer.clone();
    cea.result_code = Some(2001);
    let answer = cea.encode_answer(&m.header);
    assert_eq!(Capabilities::decode(&Message::decode(&answer).unwrap()).unwrap(), cea);

    for (cmd, cause) in
        [(command::DEVICE_WATCHDOG, None), (command::DISCONNECT_PEER, Some(diameter::DisconnectCause::Busy))]
    {
        let req = Control::request(&me(), cmd, cause);
        let bytes = req.encode_request(3, 4);
        let m = Message::decode(&bytes).unwrap();
        validate(&m).unwrap();
        assert_eq!(Control::decode(&m).unwrap(), req);
        let ans = Control::answer(&me(), cmd);
        assert_eq!(Control::decode(&Message::decode(&ans.encode_answer(&m.header)).unwrap()).unwrap(), ans);
    }
}

#[test]
fn a_ccr_error_answer_carries_what_rfc_4006_requires() {
    let bytes = full_ccr().encode(1, 2);
    let m = Message::decode(&bytes).unwrap();
    let e = Error::Missing(&d::SERVICE_CONTEXT_ID);
    let answer = base::error_answer(&m.header, m.body, &me(), &e);
    let a = Message::decode(&answer).unwrap();
    validate(&a).unwrap();
    assert_eq!(a.find(&d::SESSION_ID).unwrap().str().unwrap(), "pgw.numport.test;1780000000;42");
    assert_eq!(a.find(&d::RESULT_CODE).unwrap().u32().unwrap(), 5005);
    assert_eq!(a.find(&d::CC_REQUEST_TYPE).unwrap().u32().unwrap(), 2);
    assert_eq!(a.find(&d::CC_REQUEST_NUMBER).unwrap().u32().unwrap(), 3);
    let failed = a.find(&d::FAILED_AVP).unwrap();
    let inner = failed.grouped().next().unwrap().unwrap();
    assert_eq!((inner.code, inner.data.len()), (461, 0));
}

#[test]
fn validation_faults_and_their_result_codes() {
    let with = |extra: &dyn Fn(&mut Writer)| {
        let mut w = Writer::message(Vec::new(), &Header::request(272, 4, 1, 1));
        w.str(&d::SESSION_ID, "s");
        extra(&mut w);
        w.finish()
    };
    let check =
        |bytes: Vec<u8>| validate(&Message::decode(&bytes).unwrap()).map_err(|e| (e.result_code(), e.failed_avp()));
    assert_eq!(check(with(&|w| w.raw_avp(1234, 0, 0, b"x"))), Ok(()));
    let (code, failed) = check(with(&|w| w.raw_avp(1234, FLAG_M, 0, b"x"))).unwrap_err();
    assert_eq!(code, 5001);
    assert_eq!(failed.unwrap(), [&1234u32.to_be_bytes()[..], &[FLAG_M, 0, 0, 9], b"x"].concat());
    // A 3GPP AVP the dictionary does not have, with M: 5001 as well.
    assert_eq!(check(with(&|w| w.raw_avp(9, FLAG_M, 99, b""))).unwrap_err().0, 5001);
    assert_eq!(check(with(&|w| w.raw_avp(415, FLAG_M, 0, &[0; 5]))).unwrap_err().0, 5014);
    assert_eq!(check(with(&|w| w.raw_avp(412, FLAG_M, 0, &[0; 4]))).unwrap_err().0, 5014);
    assert_eq!(check(with(&|w| w.raw_avp(257, FLAG_M, 0, &[0, 1, 127, 0, 0]))).unwrap_err().0, 5014);
    assert_eq!(check(with(&|w| w.raw_avp(257, FLAG_M, 0, &[0, 9, 1, 2, 3, 4]))).unwrap_err().0, 5004);
    assert_eq!(check(with(&|w| w.raw_avp(263, FLAG_M, 0, &[0xc3, 0x28]))).unwrap_err().0, 5004);
    // Reserved AVP flag bits, and M on Product-Name (rule: must not): 3009.
    assert_eq!(check(with(&|w| w.raw_avp(263, FLAG_M | 0x01, 0, b"s"))).unwrap_err().0, 3009);
    assert_eq!(check(with(&|w| w.raw_avp(269, FLAG_M, 0, b"p"))).unwrap_err().0, 3009);
    // A bad AVP inside a group is found too.
    let nested = with(&|w| w.grouped(&d::MULTIPLE_SERVICES_CREDIT_CONTROL, |w| w.raw_avp(432, FLAG_M, 0, &[1])));
    assert_eq!(check(nested).unwrap_err().0, 5014);
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_without_recursing_further() {
    let mut inner = Vec::new();
    for _ in 0..10_000 {
        let mut w = Writer::avps(Vec::new());
        w.raw_avp(d::MULTIPLE_SERVICES_CREDIT_CONTROL.code, FLAG_M, 0, &inner);
        inner = w.finish();
        if inner.len() > 1 << 16 {
            break;
        }
    }
    let mut w = Writer::message(Vec::new(), &Header::request(272, 4, 1, 1));
    w.encoded(&inner);
    let bytes = w.finish();
    let e = validate(&Message::decode(&bytes).unwrap()).unwrap_err();
    assert_eq!(e.result_code(), 5004, "{e}");
}

/// Every decoder over `bytes`; returns whether the message decoded as a CCR.
fn decode_everything(bytes: &[u8]) -> Option<Ccr> {
    let m = Message::decode(bytes).ok()?;
    let valid = validate(&m);
    let _ = Capabilities::decode(&m);
    let _ = Control::decode(&m);
    let _ = Cca::decode(&m);
    for a in m.avps().flatten() {
        let _ = (a.u32(), a.u64(), a.i32(), a.i64(), a.str(), a.address());
        let _ = a.grouped().count();
    }
    if let Err(e) = &valid {
        let _ = base::error_answer(&m.header, m.body, &me(), e);
    }
    valid.ok()?;
    Ccr::decode(&m).ok()
}

fn service_unit() -> impl Strategy<Value = ServiceUnit> {
    (any::<Option<u32>>(), any::<Option<u64>>(), any::<Option<u64>>(), any::<Option<u64>>(), any::<Option<u64>>())
        .prop_map(|(time, total_octets, input_octets, output_octets, service_specific_units)| ServiceUnit {
            time,
            total_octets,
            input_octets,
            output_octets,
            service_specific_units,
        })
}

fn mscc() -> impl Strategy<Value = Mscc> {
    (
        any::<Option<u32>>(),
        proptest::collection::vec(any::<u32>(), 0..3),
        proptest::option::of(service_unit()),
        proptest::collection::vec(service_unit(), 0..2),
        any::<Option<u32>>(),
    )
        .prop_map(|(rating_group, service_identifiers, requested, used, reporting_reason)| Mscc {
            rating_group,
            service_identifiers,
            requested,
            used,
            reporting_reason,
            ..Mscc::default()
        })
}

fn ccr() -> impl Strategy<Value = Ccr> {
    (
        "[ -~]{1,40}",
        1u32..=4,
        any::<u32>(),
        proptest::collection::vec("[0-9]{5,15}", 0..3),
        proptest::collection::vec(mscc(), 0..4),
        any::<bool>(),
        proptest::option::of("\\PC{0,20}"),
    )
        .prop_map(|(session_id, kind, number, subscribers, mscc, retransmitted, called)| Ccr {
            session_id,
            request_type: CcRequestType::from_u32(kind).unwrap(),
            request_number: number,
            subscription_ids: subscribers
                .into_iter()
                .map(|data| SubscriptionId { kind: SubscriptionIdType::EndUserE164, data })
                .collect(),
            mscc,
            retransmitted,
            service_information: called.map(|c| ServiceInformation {
                ims: Some(ImsInformation {
                    node_functionality: 0,
                    called_party_address: Some(c),
                    ..Default::default()
                }),
                ps: None,
            }),
            ..full_ccr()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_ccr_round_trips(ccr in ccr()) {
        let bytes = ccr.encode(1, 2);
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(decode_everything(&bytes), Some(ccr));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
        // The same octets as the body of a CCR whose header is right, to reach the AVPs.
        let mut w = Writer::message(Vec::new(), &Header::request(272, 4, 1, 1));
        w.encoded(&bytes);
        decode_everything(&w.finish());
    }

    /// A valid CCR with octets overwritten (its length kept consistent, so the damage reaches
    /// the AVPs): decoding never panics, and what still decodes re-encodes to an equal CCR.
    #[test]
    fn damaged_ccrs_never_panic(edits in proptest::collection::vec((20usize..2000, any::<u8>()), 1..8)) {
        let mut bytes = full_ccr().encode(1, 2);
        for (at, v) in edits {
            let n = bytes.len();
            bytes[at % (n - 20) + 20] = v;
        }
        if let Some(ccr) = decode_everything(&bytes) {
            prop_assert_eq!(decode_everything(&ccr.encode(1, 2)), Some(ccr));
        }
    }
}

#[test]
fn the_gy_application_and_contexts_are_named() {
    assert_eq!(application::CREDIT_CONTROL, 4);
    assert_eq!(d::lookup(873, d::VENDOR_3GPP).unwrap().name, "Service-Information");
    assert_eq!(unix_seconds(ntp_seconds(1_780_000_000)), 1_780_000_000);
}

/// Failed-AVP carries the offending AVP back, unknown or malformed: an answer that holds one
/// validates (found by the fuzz target: the error answer to an unknown mandatory AVP did not).
#[test]
fn the_content_of_failed_avp_is_not_validated() {
    let mut w = Writer::message(Vec::new(), &Header::request(command::CAPABILITIES_EXCHANGE, 0, 1, 1));
    w.str(&d::ORIGIN_HOST, "pgw.numport.test");
    w.raw_avp(4097, FLAG_M, 0, b"");
    let bytes = w.finish();
    let m = Message::decode(&bytes).unwrap();
    let e = validate(&m).unwrap_err();
    assert_eq!(e.result_code(), 5001);
    let answer = base::error_answer(&m.header, m.body, &me(), &e);
    let a = Message::decode(&answer).unwrap();
    validate(&a).unwrap();
    let failed = a.find(&d::FAILED_AVP).unwrap().grouped().next().unwrap().unwrap();
    assert_eq!((failed.code, failed.flags), (4097, FLAG_M));
}

/// The error answer writes the request's Session-Id and CC-Request-* values anew: copied as
/// they came, a Session-Id with reserved flags set made the answer itself invalid (found by the
/// fuzz target).
#[test]
fn an_error_answer_does_not_copy_bad_flags() {
    let mut w = Writer::message(Vec::new(), &Header::request(command::CREDIT_CONTROL, 4, 1, 1));
    w.raw_avp(d::SESSION_ID.code, FLAG_M | 0x18, 0, b"gw;1");
    w.raw_avp(d::CC_REQUEST_NUMBER.code, 0x01, 0, &[0, 0, 0, 5]);
    let bytes = w.finish();
    let m = Message::decode(&bytes).unwrap();
    let e = validate(&m).unwrap_err();
    assert_eq!(e.result_code(), 3009);
    let answer = base::error_answer(&m.header, m.body, &me(), &e);
    let a = Message::decode(&answer).unwrap();
    validate(&a).unwrap();
    let session = a.find(&d::SESSION_ID).unwrap();
    assert_eq!((session.str().unwrap(), session.flags), ("gw;1", FLAG_M));
    assert_eq!(a.find(&d::CC_REQUEST_NUMBER).unwrap().u32().unwrap(), 5);
}
