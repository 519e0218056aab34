//! The donor's decline end to end on the real binaries: a port request for a number in opa's
//! range that opa has no subscriber for is declined by opa's node as soon as it is asked for
//! the deposit, so the order ends at once with the reason, and opa is not charged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clearinghouse_api::model::PortingRequest;
use numport::cluster::{Cluster, ClusterSpec, subscriber_number};
use numport_core::porting::{OrderState, Reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_number_without_subscriber_is_declined_not_charged() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: set before this test (the binary's only one) starts a process.
    unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) };
    let cluster = Cluster::start(ClusterSpec::for_tests(tmp.path().join("cluster"), 2)).await.unwrap();
    let (opa, opb) = (cluster.op("opa"), cluster.op("opb"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let request = PortingRequest {
        // In opa's range, past its two subscribers.
        msisdn: subscriber_number("4790", 50),
        nonce: format!("{:032x}", now.as_nanos()),
        expiry: now.as_millis() as i64 + 300_000,
        proof: "ab".repeat(32),
    };
    let order = opb.ch_client.request_port(&request, "nobody-there").await.unwrap();
    assert_eq!(order.state, OrderState::AwaitingDeposit);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ended = loop {
        let o = opb.ch_client.order(order.id).await.unwrap();
        if o.state != OrderState::AwaitingDeposit {
            break o;
        }
        assert!(std::time::Instant::now() < deadline, "the order was not declined within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((ended.state, ended.reason), (OrderState::Rejected, Some(Reason::UnknownSubscriber)));
    let deposit_ms = clearinghouse::ClearinghouseConfig::default().deadlines.deposit_ms;
    assert!(ended.updated_at - ended.created_at < deposit_ms, "declined before the deposit deadline");
    assert!(opa.ch_client.violations().await.unwrap().violations.is_empty(), "the donor is not charged");
    cluster.stop().await;
}
