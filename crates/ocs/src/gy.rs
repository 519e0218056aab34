//! Gy: the Diameter peer's typed CCR and CCA (crate `diameter`) mapped to and from the OCS's
//! domain structs, and the handler the Diameter server calls ([`GyHandler`]).
//!
//! The mapping, field by field:
//!
//! | CCR | [`CreditControlRequest`] |
//! |---|---|
//! | Session-Id, CC-Request-Type, CC-Request-Number | `session_id`, `request_type`, `request_number` |
//! | Subscription-Id (the E.164 one first, else the first) | `subscription_id` |
//! | Service-Context-Id `32251@3gpp.org` / `32260@3gpp.org` / `32274@3gpp.org` | `service` data / voice / SMS |
//! | IMS-Information's Called-Party-Address (`tel:`, `sip:` user part, parameters dropped) | `destination` |
//! | Event-Timestamp (NTP seconds) | `event_time` (ms), else the time of arrival |
//! | MSCC: Rating-Group, the first Service-Identifier, Requested-Service-Unit, Used-Service-Units summed | `mscc` |
//!
//! Units: CC-Time is seconds, CC-Total-Octets octets (else CC-Input-Octets + CC-Output-Octets),
//! CC-Service-Specific-Units events. A CCA carries each MSCC's Result-Code,
//! Granted-Service-Unit in the unit of its service, Validity-Time and, on the last grant,
//! Final-Unit-Indication. A Service-Context-Id the OCS does not rate is answered 5031
//! (DIAMETER_RATING_FAILED), and a failure of the OCS's storage 5012
//! (DIAMETER_UNABLE_TO_COMPLY): nothing was committed, so the gateway's retransmission is
//! handled afresh.

use diameter::cc::{self, CcRequestType, Cca, Ccr, FinalUnitIndication, Mscc, ServiceUnit};
use diameter::peer::CreditControlHandler;

use crate::Ocs;
use crate::rating::Service;
use crate::session::{
    CreditControlAnswer, CreditControlRequest, FinalUnitAction, MsccRequest, RequestType, ServiceUnits, SubscriptionId,
    SubscriptionIdType, result_code,
};

/// Service-Context-Id of SMS charging (TS 32.274).
pub const SMS_CONTEXT: &str = "32274@3gpp.org";

/// The service a Service-Context-Id names (its leading `extension.` and release digits, as in
/// `8.32251@3gpp.org`, are ignored), or `None` for one the OCS does not rate.
pub fn service_of(context: &str) -> Option<Service> {
    let id = context.strip_suffix("@3gpp.org")?.rsplit('.').next()?;
    let id_of = |c: &'static str| c.trim_end_matches("@3gpp.org");
    [(cc::PS_CONTEXT, Service::Data), (cc::IMS_CONTEXT, Service::Voice), (SMS_CONTEXT, Service::Sms)]
        .into_iter()
        .find(|(c, _)| id_of(c) == id)
        .map(|(_, s)| s)
}

/// The digits of a Called-Party-Address: `tel:+4791234567`, `sip:+4791234567@ims.example;user=phone`.
pub fn called_number(address: &str) -> String {
    let a = address.strip_prefix("tel:").or_else(|| address.strip_prefix("sip:")).unwrap_or(address);
    let a = a.split(['@', ';']).next().unwrap_or_default();
    a.strip_prefix('+').unwrap_or(a).to_owned()
}

fn request_type(t: CcRequestType) -> RequestType {
    match t {
        CcRequestType::Initial => RequestType::Initial,
        CcRequestType::Update => RequestType::Update,
        CcRequestType::Termination => RequestType::Termination,
        CcRequestType::Event => RequestType::Event,
    }
}

fn subscription_kind(k: cc::SubscriptionIdType) -> SubscriptionIdType {
    match k {
        cc::SubscriptionIdType::EndUserE164 => SubscriptionIdType::EndUserE164,
        cc::SubscriptionIdType::EndUserImsi => SubscriptionIdType::EndUserImsi,
        cc::SubscriptionIdType::EndUserSipUri => SubscriptionIdType::EndUserSipUri,
        cc::SubscriptionIdType::EndUserNai => SubscriptionIdType::EndUserNai,
        cc::SubscriptionIdType::EndUserPrivate => SubscriptionIdType::EndUserPrivate,
    }
}

fn units(u: &ServiceUnit) -> ServiceUnits {
    let io = match (u.input_octets, u.output_octets) {
        (None, None) => None,
        (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
    };
    ServiceUnits {
        time: u.time.map(u64::from),
        total_octets: u.total_octets.or(io),
        service_specific: u.service_specific_units,
    }
}

fn sum(used: &[ServiceUnit]) -> Option<ServiceUnits> {
    let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
    used.iter().map(units).reduce(|a, b| ServiceUnits {
        time: add(a.time, b.time),
        total_octets: add(a.total_octets, b.total_octets),
        service_specific: add(a.service_specific, b.service_specific),
    })
}

/// The domain request of `ccr`, or the Result-Code to answer it with at once.
pub fn to_request(ccr: &Ccr, now_ms: i64) -> Result<CreditControlRequest, u32> {
    let service = service_of(&ccr.service_context_id).ok_or(result_code::RATING_FAILED)?;
    let subscription = ccr
        .subscription_ids
        .iter()
        .find(|s| s.kind == cc::SubscriptionIdType::EndUserE164)
        .or_else(|| ccr.subscription_ids.first())
        .map(|s| SubscriptionId { kind: subscription_kind(s.kind), data: s.data.clone() })
        .unwrap_or(SubscriptionId { kind: SubscriptionIdType::EndUserE164, data: String::new() });
    let destination = ccr
        .service_information
        .as_ref()
        .and_then(|si| si.ims.as_ref())
        .and_then(|ims| ims.called_party_address.as_deref())
        .map(called_number);
    let event_time = ccr.event_timestamp.map(|t| cc::unix_seconds(t) as i64 * 1000).unwrap_or(now_ms);
    let mscc = ccr
        .mscc
        .iter()
        .map(|m| MsccRequest {
            rating_group: m.rating_group,
            service_identifier: m.service_identifiers.first().copied(),
            requested: m.requested.as_ref().map(units),
            used: sum(&m.used),
        })
        .collect();
    Ok(CreditControlRequest {
        session_id: ccr.session_id.clone(),
        request_type: request_type(ccr.request_type),
        request_number: ccr.request_number,
        subscription_id: subscription,
        service,
        destination,
        event_time,
        mscc,
    })
}

/// The CCA of `answer` to `ccr`.
pub fn to_cca(ccr: &Ccr, answer: &CreditControlAnswer) -> Cca {
    let mut cca = Cca::answering(ccr, answer.result_code);
    cca.mscc = answer
        .mscc
        .iter()
        .map(|m| Mscc {
            rating_group: m.rating_group,
            service_identifiers: m.service_identifier.into_iter().collect(),
            granted: m.granted.map(|g| ServiceUnit {
                time: g.time.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
                total_octets: g.total_octets,
                service_specific_units: g.service_specific,
                ..ServiceUnit::default()
            }),
            validity_time: m.validity_time,
            final_unit_indication: m.final_unit_action.map(|a| FinalUnitIndication {
                action: match a {
                    FinalUnitAction::Terminate => cc::FinalUnitAction::Terminate,
                    FinalUnitAction::Redirect => cc::FinalUnitAction::Redirect,
                    FinalUnitAction::RestrictAccess => cc::FinalUnitAction::RestrictAccess,
                },
                redirect_server: None,
            }),
            result_code: Some(m.result_code),
            ..Mscc::default()
        })
        .collect();
    cca
}

/// The OCS as the Diameter server's Credit-Control handler.
#[derive(Debug, Clone)]
pub struct GyHandler {
    ocs: Ocs,
}

impl GyHandler {
    pub fn new(ocs: Ocs) -> GyHandler {
        GyHandler { ocs }
    }
}

impl CreditControlHandler for GyHandler {
    async fn credit_control(&self, ccr: Ccr) -> Cca {
        let req = match to_request(&ccr, self.ocs.now()) {
            Ok(r) => r,
            Err(code) => return Cca::answering(&ccr, code),
        };
        match self.ocs.credit_control(req).await {
            Ok(answer) => to_cca(&ccr, &answer),
            Err(e) => {
                tracing::warn!(session = %ccr.session_id, error = %e, "credit control failed");
                Cca::answering(&ccr, result_code::UNABLE_TO_COMPLY)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::UnitKind;
    use crate::session::MsccAnswer;

    fn ccr() -> Ccr {
        Ccr {
            session_id: "pgw;1;2".into(),
            origin_host: "pgw.example".into(),
            origin_realm: "example".into(),
            destination_realm: "ocs.example".into(),
            destination_host: None,
            auth_application_id: 4,
            service_context_id: "32260@3gpp.org".into(),
            request_type: CcRequestType::Update,
            request_number: 3,
            user_name: None,
            origin_state_id: None,
            event_timestamp: Some(cc::ntp_seconds(1_800_000_000)),
            subscription_ids: vec![
                cc::SubscriptionId { kind: cc::SubscriptionIdType::EndUserImsi, data: "242010000000001".into() },
                cc::SubscriptionId { kind: cc::SubscriptionIdType::EndUserE164, data: "4790000001".into() },
            ],
            requested_action: None,
            multiple_services_indicator: Some(1),
            mscc: vec![Mscc {
                rating_group: Some(10),
                service_identifiers: vec![7, 8],
                requested: Some(ServiceUnit { time: Some(300), ..Default::default() }),
                used: vec![
                    ServiceUnit { time: Some(100), ..Default::default() },
                    ServiceUnit { time: Some(20), ..Default::default() },
                ],
                ..Default::default()
            }],
            termination_cause: None,
            service_information: Some(cc::ServiceInformation {
                ps: None,
                ims: Some(cc::ImsInformation {
                    node_functionality: 0,
                    role_of_node: Some(0),
                    calling_party_address: Some("tel:+4790000001".into()),
                    called_party_address: Some("sip:+4791234567@ims.example;user=phone".into()),
                }),
            }),
            retransmitted: false,
        }
    }

    #[test]
    fn ccr_to_request() {
        let r = to_request(&ccr(), 5).unwrap();
        assert_eq!(r.session_id, "pgw;1;2");
        assert_eq!((r.request_type, r.request_number), (RequestType::Update, 3));
        assert_eq!(r.subscription_id, SubscriptionId::e164("4790000001"));
        assert_eq!((r.service, r.destination.as_deref()), (Service::Voice, Some("4791234567")));
        assert_eq!(r.event_time, 1_800_000_000_000);
        assert_eq!(
            r.mscc,
            vec![MsccRequest {
                rating_group: Some(10),
                service_identifier: Some(7),
                requested: Some(ServiceUnits::of(UnitKind::Time, 300)),
                used: Some(ServiceUnits::of(UnitKind::Time, 120)),
            }]
        );
        let mut data = ccr();
        data.service_context_id = "8.32251@3gpp.org".into();
        data.event_timestamp = None;
        data.mscc[0].used = vec![ServiceUnit { input_octets: Some(5), output_octets: Some(7), ..Default::default() }];
        let r = to_request(&data, 42).unwrap();
        assert_eq!((r.service, r.event_time), (Service::Data, 42));
        assert_eq!(r.mscc[0].used, Some(ServiceUnits::of(UnitKind::Octets, 12)));
        let mut other = ccr();
        other.service_context_id = "32270@3gpp.org".into();
        assert_eq!(to_request(&other, 0), Err(result_code::RATING_FAILED));
    }

    #[test]
    fn answer_to_cca() {
        let answer = CreditControlAnswer {
            session_id: "pgw;1;2".into(),
            request_type: RequestType::Update,
            request_number: 3,
            result_code: 2001,
            mscc: vec![MsccAnswer {
                rating_group: Some(10),
                service_identifier: Some(7),
                result_code: 2001,
                granted: Some(ServiceUnits::of(UnitKind::Time, 180)),
                validity_time: Some(600),
                final_unit_action: Some(FinalUnitAction::Terminate),
            }],
        };
        let cca = to_cca(&ccr(), &answer);
        assert_eq!((cca.result_code, cca.request_type, cca.request_number), (2001, CcRequestType::Update, 3));
        let m = &cca.mscc[0];
        assert_eq!((m.rating_group, m.service_identifiers.as_slice(), m.result_code), (Some(10), &[7][..], Some(2001)));
        assert_eq!(m.granted, Some(ServiceUnit { time: Some(180), ..Default::default() }));
        assert_eq!(m.validity_time, Some(600));
        assert_eq!(m.final_unit_indication.as_ref().map(|f| f.action), Some(cc::FinalUnitAction::Terminate));
    }

    #[test]
    fn called_numbers_and_contexts() {
        assert_eq!(called_number("tel:+4791234567"), "4791234567");
        assert_eq!(called_number("sip:4791234567@x;user=phone"), "4791234567");
        assert_eq!(called_number("4791234567"), "4791234567");
        assert_eq!(service_of("32274@3gpp.org"), Some(Service::Sms));
        assert_eq!(service_of("nonsense"), None);
    }
}
