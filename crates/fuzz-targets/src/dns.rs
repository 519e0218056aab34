//! ENUM datagrams as the replica's DNS server answers them, against a replica holding a range
//! (`4790` → opa) and a ported number (+4790000001 → opb).
//!
//! - [`run_fast`]: the fast path, which parses the common query on the bytes. Whatever it
//!   answers, the general path must answer with the same message.
//! - [`run_general`]: the general path (hickory-proto), which answers everything else. Its
//!   answer must be a DNS message with the query's id.

use std::sync::LazyLock;

use hickory_server::proto::op::Message;
use replica::dns::EnumHandler;
use replica::{EnumConfig, Replica, ReplicaConfig};

/// The server every run asks; built once per process (a replica opened on a snapshot).
static SERVER: LazyLock<EnumHandler> = LazyLock::new(build);

/// The ENUM server the targets ask.
pub fn server() -> &'static EnumHandler {
    &SERVER
}

pub fn run_fast(data: &[u8]) {
    let mut fast = Vec::new();
    if SERVER.answer_fast(data, &mut fast) {
        let general = SERVER.answer_general(data).expect("the general path answers what the fast path answers");
        let fast = Message::from_vec(&fast).expect("the fast path's answer is a DNS message");
        let general = Message::from_vec(&general).expect("the general path's answer is a DNS message");
        assert_eq!(fast, general, "the fast and the general path answer differently");
    }
}

pub fn run_general(data: &[u8]) {
    if let Some(answer) = SERVER.answer_general(data) {
        let message = Message::from_vec(&answer).expect("the general path's answer is a DNS message");
        assert_eq!(message.metadata.id.to_be_bytes(), data[..2], "the answer carries the query's id");
    }
}

fn build() -> EnumHandler {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ops = [("opa", "D001"), ("opb", "D002")].map(|(name, rn)| npdb::Operator {
        name: name.parse().expect("operator name"),
        routing_number: rn.parse().expect("routing number"),
    });
    let holder = "opa".parse().expect("operator name");
    let mut index = npdb::Index::new(ops, [("4790".parse().expect("prefix"), holder)]).expect("index");
    index.apply(&"4790000001".parse().expect("msisdn"), &"opb".parse().expect("operator name")).expect("port");
    replica::disk::install_index(dir.path(), &index, 1, 0).expect("snapshot");
    let config = ReplicaConfig {
        clearinghouse_url: Some("http://127.0.0.1:9".into()),
        api_token: Some("key.secret".into()),
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let replica = runtime.block_on(Replica::open(config, &telemetry::Registry::new())).expect("replica");
    // The replica answers from memory; its files go with the directory now, so that the
    // fuzzer's many processes leave nothing behind.
    drop(dir);
    EnumHandler::new(replica, &EnumConfig::default()).expect("ENUM handler")
}
