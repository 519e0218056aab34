//! Every fuzz target over its seed corpus (`fuzz/corpus/<target>/`) and over the inputs that
//! once broke it (`fuzz/regressions/<target>/`), so the targets compile and hold in the normal
//! test suite. The seeds are written by `write_seed_corpora` (ignored: run it with
//! `cargo nextest run -p fuzz-targets --run-ignored only` after a format changes).

use std::path::{Path, PathBuf};

use fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir` (none if it does not exist), in name order.
fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("directory entry").path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("readable input"))).collect()
}

#[test]
fn every_target_holds_on_its_seeds_and_regressions() {
    for (name, run) in TARGETS {
        let seeds = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(seeds.len() >= 3, "fuzz/corpus/{name} has {} seeds", seeds.len());
        for (path, bytes) in seeds.into_iter().chain(inputs(&fuzz_dir().join("regressions").join(name))) {
            if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                panic!("target {name} fails on {}", path.display());
            }
        }
    }
}

/// A seed that takes the fast path does take it: without that, the fast path's target would
/// start from nothing the general path could not answer alone.
#[test]
fn the_dns_fast_seeds_reach_the_fast_path() {
    let seeds = inputs(&fuzz_dir().join("corpus/dns_fast"));
    let fast = seeds.iter().filter(|(_, q)| seeds::takes_fast_path(q)).count();
    assert!(fast >= 2, "{fast} of {} dns_fast seeds take the fast path", seeds.len());
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand when a format changes"]
fn write_seed_corpora() {
    for (name, files) in seeds::all() {
        let dir = fuzz_dir().join("corpus").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in files {
            std::fs::write(dir.join(file), bytes).unwrap();
        }
    }
}

/// Valid inputs of each target, built with the encoders of the crates under test.
mod seeds {
    use bytes::BytesMut;
    use clearinghouse_api::model::{ChangePage, RoutingChange};
    use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_server::proto::rr::{Name, RecordType};
    use numport_core::porting::ChangeKind;
    use sms::air::Frame;
    use sms::{Address, DataCoding, Reference, SmsDeliver, SmsStatusReport, SmsSubmit, Timestamp, Tpdu};
    use sms::{UserData, ValidityPeriod};
    use smsc::rusmpp::pdus::{BindTransmitter, DeliverSm, SubmitSm};
    use smsc::rusmpp::types::OctetString;
    use smsc::rusmpp::values::{DataCoding as SmppCoding, EsmClass, InterfaceVersion, Npi, Ton};
    use smsc::rusmpp::{Command, CommandStatus, Pdu};
    use std::str::FromStr;

    type Files = Vec<(String, Vec<u8>)>;

    pub fn all() -> Vec<(&'static str, Files)> {
        vec![
            ("smpp", smpp()),
            ("tpdu", tpdu()),
            ("dns_fast", dns_fast()),
            ("dns_general", dns_general()),
            ("feed", feed()),
            ("csv", csv()),
            ("sim", sim()),
            ("diameter", diameter()),
        ]
    }

    fn named(prefix: &str, items: impl IntoIterator<Item = Vec<u8>>) -> Files {
        items.into_iter().enumerate().map(|(i, b)| (format!("{prefix}-{i:02}"), b)).collect()
    }

    fn frame(seq: u32, pdu: impl Into<Pdu>) -> Vec<u8> {
        let mut out = BytesMut::new();
        smsc::server::encode_into(&mut out, &Command::new(CommandStatus::EsmeRok, seq, pdu));
        out.to_vec()
    }

    fn smpp() -> Files {
        let bind = BindTransmitter::builder()
            .system_id("bank".parse().unwrap())
            .password("s3cret".parse().unwrap())
            .interface_version(InterfaceVersion::Smpp3_4)
            .build();
        let submit = |text: &[u8], coding: u8, validity: &str| {
            SubmitSm::builder()
                .source_addr_ton(Ton::Alphanumeric)
                .source_addr("MyBank".parse().unwrap())
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr("4790000001".parse().unwrap())
                .validity_period(validity.parse().unwrap())
                .data_coding(SmppCoding::from(coding))
                .short_message(OctetString::from_slice(text).unwrap())
                .build()
        };
        let receipt = DeliverSm::builder()
            .source_addr("4790000001".parse().unwrap())
            .destination_addr("MyBank".parse().unwrap())
            .esm_class(EsmClass::from(0x04))
            .short_message(
                OctetString::from_slice(
                    b"id:0000000042 sub:001 dlvrd:001 submit date:2612071030 done date:2612071031 stat:DELIVRD err:000 text:Your code",
                )
                .unwrap(),
            )
            .build();
        // "@£$_{}€" as septets, one an octet.
        let gsm = [0x00, 0x01, 0x02, 0x11, 0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x65];
        let enquire = frame(4, Pdu::EnquireLink);
        let mut stream = frame(1, bind.clone());
        stream.extend(frame(2, submit(b"Your code is 123456", 0, "")));
        stream.extend(&enquire);
        named(
            "smpp",
            [
                frame(1, bind),
                frame(2, submit(&gsm, 0, "000001000000000R")),
                frame(3, submit("Kode: 1234 \u{e9}".as_bytes(), 3, "261231235959000+")),
                frame(5, receipt),
                enquire,
                stream,
            ],
        )
    }

    fn tpdu() -> Files {
        let ts = Timestamp { year: 26, month: 12, day: 7, hour: 10, minute: 30, second: 5, tz_quarters: 4 };
        let deliver = |dcs, user_data| {
            Tpdu::Deliver(SmsDeliver {
                more_messages: false,
                status_report_indication: true,
                reply_path: false,
                originator: Address::international("4790000001"),
                pid: 0,
                dcs,
                scts: ts,
                user_data,
            })
            .encode()
            .unwrap()
        };
        let mut out = Vec::new();
        let long = sms::segment(&"Your number is ported to a new operator. ".repeat(5), Reference::Eight(7)).unwrap();
        out.extend(long.parts.into_iter().take(2).map(|part| deliver(long.dcs, part)));
        let wide = sms::segment(&"Nummeret ditt er overført ✓ ".repeat(4), Reference::Sixteen(300)).unwrap();
        out.extend(wide.parts.into_iter().take(1).map(|part| deliver(wide.dcs, part)));
        let submit = |dcs, validity, user_data| {
            Tpdu::Submit(SmsSubmit {
                reject_duplicates: false,
                status_report_request: true,
                reply_path: false,
                message_reference: 3,
                destination: Address::international("4790000002"),
                pid: 0,
                dcs,
                validity,
                user_data,
            })
            .encode()
            .unwrap()
        };
        let gsm_submit =
            submit(DataCoding::GSM7, Some(ValidityPeriod::Relative(167)), UserData::gsm7("Hello @£$_{}[]~€").unwrap());
        out.push(gsm_submit.clone());
        out.push(submit(DataCoding::UCS2, Some(ValidityPeriod::Absolute(ts)), UserData::ucs2("Привет")));
        out.push(
            Tpdu::StatusReport(SmsStatusReport {
                more_messages: false,
                qualifier_command: false,
                message_reference: 3,
                recipient: Address::international("4790000002"),
                scts: ts,
                discharge: ts,
                status: 0,
                pid: None,
                dcs: None,
                user_data: None,
            })
            .encode()
            .unwrap(),
        );
        // Air frames, without their length prefix.
        for f in [
            Frame::Attach { imsi: "242019876543210".into() },
            Frame::Submit { reference: 1, tpdu: gsm_submit },
            Frame::DeliverAck { reference: 1, cause: 0 },
        ] {
            out.push(f.encode()[2..].to_vec());
        }
        named("tpdu", out)
    }

    fn query(name: &str, rtype: RecordType, edns: Option<(u8, bool)>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        if let Some((version, dnssec_ok)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e.set_version(version);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    pub fn takes_fast_path(q: &[u8]) -> bool {
        let mut out = Vec::new();
        fuzz_targets::dns::server().answer_fast(q, &mut out)
    }

    fn dns_fast() -> Files {
        let naptr = RecordType::NAPTR;
        named(
            "dns",
            [
                query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", naptr, None),
                query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", naptr, Some((0, true))),
                query("5.0.0.0.0.0.0.9.7.4.E164.ARPA.", naptr, Some((0, false))),
                query("1.2.3.4.5.6.7.8.9.7.4.e164.arpa.", naptr, None),
            ],
        )
    }

    fn dns_general() -> Files {
        let mut out: Vec<Vec<u8>> = dns_fast().into_iter().map(|(_, b)| b).collect();
        out.extend([
            query("e164.arpa.", RecordType::SOA, None),
            query("e164.arpa.", RecordType::NS, Some((0, true))),
            query("e164.arpa.", RecordType::AXFR, None),
            query("9.7.4.e164.arpa.", RecordType::NAPTR, None),
            query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::A, None),
            query("0.0.0.0.0.0.0.3.9.7.4.e164.arpa.", RecordType::NAPTR, None),
            query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, Some((1, false))),
            query("example.com.", RecordType::NAPTR, None),
        ]);
        named("dns", out)
    }

    fn tagged(kind: u8, body: &[u8]) -> Vec<u8> {
        [&[kind][..], body].concat()
    }

    fn feed() -> Files {
        let change = |seq, msisdn: &str, operator: &str, rn: &str, kind| RoutingChange {
            seq,
            msisdn: msisdn.parse().unwrap(),
            operator: operator.parse().unwrap(),
            routing_number: rn.parse().unwrap(),
            kind,
            effective_at: 1_780_000_000_000,
        };
        let page = ChangePage {
            changes: vec![
                change(6, "4790000001", "opb", "D002", ChangeKind::Port),
                change(7, "4790000002", "opc", "D003", ChangeKind::Port),
                change(8, "4790000001", "opa", "D001", ChangeKind::Return),
            ],
            head: 8,
            ranges_version: 2,
        };
        let empty = ChangePage { changes: vec![], head: 8, ranges_version: 2 };
        let ops = [("opa", "D001"), ("opb", "D002")]
            .map(|(n, r)| npdb::Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
        let mut index = npdb::Index::new(ops, [("4790".parse().unwrap(), "opa".parse().unwrap())]).unwrap();
        index.apply(&"4790000001".parse().unwrap(), &"opb".parse().unwrap()).unwrap();
        index.apply(&"4791000009".parse().unwrap(), &"opb".parse().unwrap()).unwrap();
        let snapshot = npdb::snapshot::write_index_versioned(&index, 5, 2, Vec::new()).unwrap();
        let mut journal = String::new();
        replica::disk::push_journal_line(&mut journal, &page.changes[0]);
        named(
            "feed",
            [
                tagged(0, &serde_json::to_vec(&page).unwrap()),
                tagged(0, &serde_json::to_vec(&empty).unwrap()),
                tagged(1, &snapshot),
                tagged(2, journal.trim_end().as_bytes()),
            ],
        )
    }

    fn csv() -> Files {
        let key = "ab".repeat(32);
        let subscribers = format!(
            "msisdn,port_key,arrears,unbilled_usage,contract_remaining,deposit_held\n\
             4790000001,{key},100,20,3000,500\n# a comment\n+4790000002,,0,0,0,0\n"
        );
        named(
            "csv",
            [
                tagged(0, subscribers.as_bytes()),
                tagged(1, b"prefix,operator\n4790,opa\n4791, opb\n# comment\n4792,\"opa\"\n"),
                tagged(1, b"name,routing_number\nopa,D001\nopb,D002\n"),
                tagged(2, b"msisdn,operator\n4790000001,opb\r\n4790000002,opa\n# comment\n"),
            ],
        )
    }

    /// Command packets sealed with the fuzzing card's keys (one it runs, one it refuses as a
    /// replay of nothing: counter 0), an open packet, the SMS-DELIVER of one, a script, a PoR.
    fn sim() -> Files {
        use sim::apdu::{self, fid};
        use sim::packet::{
            CommandHeader, CounterMode, Integrity, KeyIdentifier, PorSecurity, PorStatus, ResponsePacket, Spi, Tar,
            encode_command_packet, encode_response_packet,
        };
        let keys = fuzz_targets::sim::keys();
        let script = [
            apdu::select(fid::DF_GSM),
            apdu::select(fid::EF_SPN),
            apdu::update_binary(0, &sim::files::encode_spn("Operator B", 1).unwrap()),
            apdu::select_path(&[fid::DF_GSM, fid::EF_MSISDN]),
            apdu::read_record(1, 28),
        ]
        .concat();
        let header = |spi, counter| CommandHeader {
            spi,
            kic: KeyIdentifier::new(1, sim::Algorithm::Aes),
            kid: KeyIdentifier::new(1, sim::Algorithm::Aes),
            tar: Tar::RFM_SIM,
            counter,
        };
        let secure = encode_command_packet(&keys, &header(Spi::SECURE, 1), &script).unwrap();
        let stale = encode_command_packet(&keys, &header(Spi::SECURE, 0), &script).unwrap();
        let open_spi = Spi { integrity: Integrity::None, ciphering: false, counter: CounterMode::None, ..Spi::SECURE };
        let open = encode_command_packet(&keys, &header(open_spi, 0), &script).unwrap();
        let scts = Timestamp { year: 26, month: 12, day: 7, hour: 14, minute: 0, second: 0, tz_quarters: 4 };
        let server = Address::international("4790009999");
        let tpdu = sim::sms_pp::command_tpdus(&server, &secure, Reference::Eight(1), scts).unwrap().remove(0);
        let por = ResponsePacket {
            tar: Tar::RFM_SIM,
            counter: 1,
            status: PorStatus::Ok,
            additional_data: vec![5, 0x90, 0x00],
            authenticated: true,
        };
        let por = encode_response_packet(Some(&keys), PorSecurity { checksum: true, ciphering: true }, &por).unwrap();
        named("sim", [secure, stale, open, tpdu, script, por])
    }

    fn diameter() -> Files {
        use diameter::cc::*;
        use diameter::dict::command;
        use diameter::message::Header;
        use diameter::{Capabilities, Control, DisconnectCause, Identity};
        let gw = Identity {
            origin_host: "pgw.numport.test".into(),
            origin_realm: "numport.test".into(),
            host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            vendor_id: 0,
            product_name: "numport".into(),
            origin_state_id: 1,
        };
        let cer = Capabilities::of(&gw, &[4]).encode_request(1, 1);
        let mut cea = Capabilities::of(&gw, &[4]);
        cea.result_code = Some(2001);
        let cea = cea.encode_answer(&Header::request(command::CAPABILITIES_EXCHANGE, 0, 1, 1));
        let ccr = |kind, number: u32, used: bool| Ccr {
            session_id: "pgw.numport.test;1;1".into(),
            origin_host: gw.origin_host.clone(),
            origin_realm: gw.origin_realm.clone(),
            destination_realm: "numport.test".into(),
            destination_host: None,
            auth_application_id: 4,
            service_context_id: PS_CONTEXT.into(),
            request_type: kind,
            request_number: number,
            user_name: None,
            origin_state_id: Some(1),
            event_timestamp: Some(ntp_seconds(1_780_000_000)),
            subscription_ids: vec![SubscriptionId { kind: SubscriptionIdType::EndUserE164, data: "4790000001".into() }],
            requested_action: None,
            multiple_services_indicator: Some(1),
            mscc: vec![Mscc {
                rating_group: Some(10),
                service_identifiers: vec![1],
                requested: Some(ServiceUnit { total_octets: Some(1 << 20), ..Default::default() }),
                used: if used {
                    vec![ServiceUnit { time: Some(60), total_octets: Some(3000), ..Default::default() }]
                } else {
                    vec![]
                },
                ..Default::default()
            }],
            termination_cause: None,
            service_information: Some(ServiceInformation {
                ps: Some(PsInformation {
                    called_station_id: Some("internet".into()),
                    charging_id: Some(7),
                    ..Default::default()
                }),
                ims: Some(ImsInformation {
                    node_functionality: 6,
                    called_party_address: Some("tel:+4790000002".into()),
                    ..Default::default()
                }),
            }),
            retransmitted: number == 1,
        };
        let initial = ccr(CcRequestType::Initial, 0, false);
        let mut cca = Cca::answering(&initial, 2001);
        cca.origin_host = "ocs.numport.test".into();
        cca.origin_realm = "numport.test".into();
        cca.mscc = vec![Mscc {
            rating_group: Some(10),
            granted: Some(ServiceUnit { total_octets: Some(500_000), ..Default::default() }),
            validity_time: Some(600),
            result_code: Some(2001),
            final_unit_indication: Some(FinalUnitIndication {
                action: FinalUnitAction::Terminate,
                redirect_server: None,
            }),
            ..Default::default()
        }];
        let cca = cca.encode(&Header::request(command::CREDIT_CONTROL, 4, 2, 2));
        let dwr = Control::request(&gw, command::DEVICE_WATCHDOG, None).encode_request(3, 3);
        let dpr =
            Control::request(&gw, command::DISCONNECT_PEER, Some(DisconnectCause::Rebooting)).encode_request(4, 4);
        let update = ccr(CcRequestType::Update, 1, true).encode(5, 5);
        let stream = [cer.clone(), initial.encode(2, 2), dwr.clone(), update.clone(), dpr.clone()].concat();
        named(
            "diameter",
            [
                cer,
                cea,
                initial.encode(2, 2),
                update,
                ccr(CcRequestType::Termination, 2, true).encode(6, 6),
                cca,
                dwr,
                dpr,
                stream,
            ],
        )
    }
}
