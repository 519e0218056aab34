//! Who gets to bind, over real sockets on loopback (source addresses 127.0.0.1, .2, .3… are all
//! the local host on Linux, so each plays another client): failed binds lock a system_id or an
//! address out and the lockout ends; an unknown system_id and a wrong password cannot be told
//! apart; an ESME holds at most `max_sessions`; unbound connections are closed at the bind
//! timeout whatever they send, so they cannot starve binds; at the idle timeout and at stop the
//! server unbinds and waits for the ESME's unbind_resp before it closes; and a client dropped
//! without unbinding unbinds, and closes after the SMSC.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Server, pdu};
use smsc::{EsmeAccount, LockoutConfig, SmppConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const BIND_TRANSMITTER: u32 = 0x0000_0002;
const BIND_TRANSMITTER_RESP: u32 = 0x8000_0002;
const ENQUIRE_LINK: u32 = 0x0000_0015;
const UNBIND: u32 = 0x0000_0006;
const UNBIND_RESP: u32 = 0x8000_0006;
const ESME_RINVPASWD: u32 = 0x0E;
const ESME_RBINDFAIL: u32 = 0x0D;

/// The server, with a bank and a shop allowed two sessions.
async fn start(config: SmppConfig) -> Server {
    let accounts = [
        EsmeAccount::new("bank", "s3cret", 50).unwrap(),
        EsmeAccount::new("shop", "shoppw", 50).unwrap().with_max_sessions(2),
    ];
    common::start(config, accounts).await
}

/// A connection to `server` from the loopback address `127.0.0.<host>`.
async fn connect_from(host: u8, server: SocketAddr) -> TcpStream {
    connect_with(host, server, None).await
}

/// [`connect_from`], with a receive buffer of `receive_buffer` bytes if given.
async fn connect_with(host: u8, server: SocketAddr, receive_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(SocketAddr::new(IpAddr::from([127, 0, 0, host]), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

fn bind_transmitter(system_id: &str, password: &str, seq: u32) -> Vec<u8> {
    let mut body = system_id.as_bytes().to_vec();
    body.push(0);
    body.extend(password.as_bytes());
    body.extend([0, 0, 0x34, 0, 0, 0]); // password NUL, system_type "", interface 3.4, ton, npi, range ""
    pdu(BIND_TRANSMITTER, seq, &body)
}

/// Reads one PDU within `wait`: (command_id, status, sequence); `None` at the end of the
/// connection or when nothing came.
async fn read_pdu_within(c: &mut TcpStream, wait: Duration) -> Option<(u32, u32, u32)> {
    let mut head = [0u8; 16];
    tokio::time::timeout(wait, c.read_exact(&mut head)).await.ok()?.ok()?;
    let w = |i: usize| u32::from_be_bytes(head[i..i + 4].try_into().unwrap());
    let mut body = vec![0u8; (w(0) as usize).saturating_sub(16)];
    c.read_exact(&mut body).await.ok()?;
    Some((w(4), w(8), w(12)))
}

async fn read_pdu(c: &mut TcpStream) -> Option<(u32, u32, u32)> {
    read_pdu_within(c, Duration::from_secs(5)).await
}

/// The bind_transmitter_resp status for a bind from `127.0.0.<host>` on a fresh connection,
/// and how long it took; the connection is returned, bound or not.
async fn bind_from(host: u8, server: SocketAddr, system_id: &str, password: &str) -> (u32, Duration, TcpStream) {
    let mut c = connect_from(host, server).await;
    let sent = Instant::now();
    c.write_all(&bind_transmitter(system_id, password, 1)).await.unwrap();
    let (id, status, seq) = read_pdu(&mut c).await.expect("bind answered");
    assert_eq!((id, seq), (BIND_TRANSMITTER_RESP, 1));
    (status, sent.elapsed(), c)
}

async fn status_from(host: u8, server: SocketAddr, system_id: &str, password: &str) -> u32 {
    bind_from(host, server, system_id, password).await.0
}

#[tokio::test]
async fn failed_binds_lock_a_system_id_and_an_address_out_until_the_lockout_ends() {
    let lockout = Duration::from_millis(1500);
    let lockout_config = LockoutConfig {
        max_failures_per_system_id: 3,
        max_failures_per_address: 5,
        window: Duration::from_secs(30),
        lockout,
    };
    let s = start(SmppConfig { lockout: lockout_config, ..SmppConfig::default() }).await;
    let addr = s.addr;

    // Three wrong passwords for bank from .1: bank is locked out, from any address, even with
    // its right password, and answered at once.
    for _ in 0..3 {
        assert_eq!(status_from(1, addr, "bank", "guess").await, ESME_RINVPASWD);
    }
    let id_locked_at = Instant::now();
    assert_eq!(status_from(1, addr, "bank", "s3cret").await, ESME_RBINDFAIL);
    assert_eq!(status_from(2, addr, "bank", "s3cret").await, ESME_RBINDFAIL);
    // Another ESME from another address binds meanwhile (and so does shop from .1: the
    // address has 3 failures of its 5).
    assert_eq!(status_from(2, addr, "shop", "shoppw").await, 0);
    assert_eq!(status_from(1, addr, "shop", "shoppw").await, 0);
    // An unknown system_id is locked out the same way: a lockout tells no more than a wrong
    // password which ids exist.
    for _ in 0..3 {
        assert_eq!(status_from(4, addr, "nobody", "guess").await, ESME_RINVPASWD);
    }
    assert_eq!(status_from(4, addr, "nobody", "guess").await, ESME_RBINDFAIL);

    // Five failures from .3, each for another id: the address is locked out for every id.
    for i in 0..5 {
        assert_eq!(status_from(3, addr, &format!("x{i}"), "guess").await, ESME_RINVPASWD);
    }
    let address_locked_at = Instant::now();
    assert_eq!(status_from(3, addr, "shop", "shoppw").await, ESME_RBINDFAIL);
    assert_eq!(status_from(2, addr, "shop", "shoppw").await, 0, "only that address");

    // The lockouts end.
    tokio::time::sleep_until((id_locked_at.max(address_locked_at) + lockout + Duration::from_millis(100)).into()).await;
    assert_eq!(status_from(1, addr, "bank", "s3cret").await, 0);
    assert_eq!(status_from(3, addr, "shop", "shoppw").await, 0);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn an_unknown_system_id_and_a_wrong_password_get_the_same_status_in_the_same_time() {
    let no_lockout = LockoutConfig { max_failures_per_system_id: 0, max_failures_per_address: 0, ..Default::default() };
    let s = start(SmppConfig { lockout: no_lockout, ..SmppConfig::default() }).await;
    // The stand-in hash for unknown ids is made at first use, and the first Argon2 run warms up.
    status_from(1, s.addr, "nobody", "x").await;
    status_from(1, s.addr, "bank", "x").await;
    let (mut unknown, mut wrong, mut right) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..9 {
        // Interleaved, so that a slower moment of the machine weighs on both alike.
        let (status, took, _) = bind_from(1, s.addr, &format!("nobody{i}"), "guess").await;
        assert_eq!(status, ESME_RINVPASWD);
        unknown.push(took);
        let (status, took, _) = bind_from(1, s.addr, "bank", "guess").await;
        assert_eq!(status, ESME_RINVPASWD);
        wrong.push(took);
        let (status, took, _) = bind_from(1, s.addr, "bank", "s3cret").await;
        assert_eq!(status, 0);
        right.push(took);
    }
    let (unknown, wrong, right) = (median(unknown), median(wrong), median(right));
    // Both ran one Argon2 verification, as the right password does; answering an unknown id
    // without it would take a small fraction of that.
    let similar = |a: Duration, b: Duration| a * 3 > b && b * 3 > a;
    assert!(similar(unknown, wrong), "medians: unknown {unknown:?}, wrong {wrong:?}, right {right:?}");
    assert!(similar(unknown, right), "medians: unknown {unknown:?}, wrong {wrong:?}, right {right:?}");
}

#[tokio::test]
async fn an_esme_holds_at_most_its_max_sessions() {
    let s = start(SmppConfig::default()).await;
    let (status, _, first) = bind_from(1, s.addr, "shop", "shoppw").await;
    assert_eq!(status, 0);
    let (status, _, mut second) = bind_from(2, s.addr, "shop", "shoppw").await;
    assert_eq!(status, 0);
    // A third session of shop (max_sessions 2) is refused; bank's are not counted with shop's.
    assert_eq!(status_from(1, s.addr, "shop", "shoppw").await, ESME_RBINDFAIL);
    assert_eq!(status_from(1, s.addr, "bank", "s3cret").await, 0);
    // A session that ends gives its slot back, whether closed or unbound.
    drop(first);
    second.write_all(&pdu(UNBIND, 2, &[])).await.unwrap();
    assert_eq!(read_pdu(&mut second).await, Some((UNBIND_RESP, 0, 2)));
    assert_eq!(read_pdu(&mut second).await, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _third) = bind_from(3, s.addr, "shop", "shoppw").await;
        if status == 0 {
            let (status, _, _fourth) = bind_from(3, s.addr, "shop", "shoppw").await;
            assert_eq!(status, 0, "both slots were given back");
            break;
        }
        assert!(Instant::now() < deadline, "the slots were not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unbound_connections_are_closed_at_the_bind_timeout_whatever_they_send() {
    let bind_timeout = Duration::from_millis(800);
    let config = SmppConfig { max_connections: 16, bind_timeout, ..SmppConfig::default() };
    let s = start(config).await;
    // Every slot taken by connections that never bind: half send enquire_link every 100 ms and
    // read the answers, half send them as fast as the socket takes them and read nothing (with
    // a small receive buffer, so that the server's answers soon stop being written).
    let mut squatters = Vec::new();
    for i in 0..16u8 {
        let reads = i % 2 == 0;
        let c = connect_with(10 + i, s.addr, (!reads).then_some(4096)).await;
        let connected = Instant::now();
        let (mut read, mut write) = c.into_split();
        squatters.push(tokio::spawn(async move {
            let reading = tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                if reads {
                    while read.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                } else {
                    // Held unread until the test ends.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(read);
                }
            });
            let mut seq = 0;
            // Writing fails once the server has closed the connection.
            loop {
                seq += 1;
                if write.write_all(&pdu(ENQUIRE_LINK, seq, &[])).await.is_err() {
                    break;
                }
                if reads {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            reading.abort();
            Instant::now().duration_since(connected)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The server is full: one more connection is closed at once.
    let mut refused = connect_from(40, s.addr).await;
    let mut byte = [0u8; 1];
    let end = tokio::time::timeout(Duration::from_secs(1), refused.read(&mut byte)).await;
    assert!(matches!(end, Ok(Ok(0) | Err(_))), "not closed at once: {end:?}");
    // Each squatter is closed at the bind timeout counted from its connection, not later.
    for squatter in squatters {
        let held = tokio::time::timeout(Duration::from_secs(10), squatter).await.unwrap().unwrap();
        assert!(held < bind_timeout + Duration::from_millis(1000), "a squatter held its slot for {held:?}");
    }
    // A legitimate bind then succeeds.
    assert_eq!(status_from(1, s.addr, "bank", "s3cret").await, 0);
}

#[tokio::test]
async fn at_the_idle_timeout_the_server_unbinds_and_closes_only_after_the_unbind_resp() {
    let config = SmppConfig {
        idle_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_secs(3),
        ..SmppConfig::default()
    };
    let s = start(config).await;
    let (status, _, mut c) = bind_from(1, s.addr, "bank", "s3cret").await;
    assert_eq!(status, 0);
    let (id, _, seq) = read_pdu(&mut c).await.expect("unbind at the idle timeout");
    assert_eq!(id, UNBIND);
    // The server waits for the answer: the connection stays open meanwhile.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), c.read(&mut byte)).await;
    assert!(early.is_err(), "the server closed before the unbind_resp: {early:?}");
    c.write_all(&pdu(UNBIND_RESP, seq, &[])).await.unwrap();
    // Then it closes in good order: end of stream, not a reset.
    let end = tokio::time::timeout(Duration::from_secs(2), c.read(&mut byte)).await.expect("closed after unbind_resp");
    assert_eq!(end.unwrap(), 0, "an orderly close");

    // An ESME that never answers is closed after the response timeout.
    let (status, _, mut mute) = bind_from(2, s.addr, "bank", "s3cret").await;
    assert_eq!(status, 0);
    assert_eq!(read_pdu(&mut mute).await.map(|p| p.0), Some(UNBIND));
    let unbound = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(6), mute.read(&mut byte)).await.expect("closed at last");
    assert_eq!(end.unwrap(), 0);
    let waited = unbound.elapsed();
    assert!(waited >= Duration::from_millis(2500), "closed after {waited:?}, before the response timeout");
}

#[tokio::test]
async fn at_stop_the_server_unbinds_and_closes_after_the_unbind_resp() {
    let s = start(SmppConfig::default()).await;
    let (status, _, mut c) = bind_from(1, s.addr, "bank", "s3cret").await;
    assert_eq!(status, 0);
    s.stop.cancel();
    let (id, _, seq) = read_pdu(&mut c).await.expect("unbind at stop");
    assert_eq!(id, UNBIND);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(&pdu(UNBIND_RESP, seq, &[])).await.unwrap();
    let mut byte = [0u8; 1];
    let end = tokio::time::timeout(Duration::from_secs(2), c.read(&mut byte)).await.expect("closed after unbind_resp");
    assert_eq!(end.unwrap(), 0, "an orderly close");
}

#[tokio::test]
async fn a_dropped_client_unbinds_and_closes_after_the_smsc() {
    // A hand-made SMSC: accepts the bind, answers the unbind, then reports when the client
    // closed relative to its own close.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let smsc = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        let (_, _, seq) = read_pdu(&mut c).await.unwrap();
        c.write_all(&pdu(0x8000_0009, seq, b"smsc\0")).await.unwrap();
        let (id, _, seq) = read_pdu(&mut c).await.expect("an unbind from the dropped client");
        assert_eq!(id, UNBIND);
        c.write_all(&pdu(UNBIND_RESP, seq, &[])).await.unwrap();
        // The client waits for the SMSC to close first.
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(300), c.read(&mut byte)).await;
        assert!(early.is_err(), "the client closed before the SMSC: {early:?}");
        c.shutdown().await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(2), c.read(&mut byte)).await.expect("the client closes");
        assert_eq!(end.unwrap(), 0, "an orderly close");
    });
    let (client, _incoming) =
        smsc::client::Client::bind(addr, "bank", "s3cret", smsc::BindMode::Transceiver).await.unwrap();
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), smsc).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_deliver_sm_answered_while_the_server_unbinds_is_still_answered() {
    use smsc::rusmpp::pdus::DeliverSm;
    use smsc::rusmpp::{CommandStatus, types::OctetString};
    let s = start(SmppConfig::default()).await;
    let mut c = connect_from(1, s.addr).await;
    let mut bind = bind_transmitter("bank", "s3cret", 1);
    bind[7] = 0x09; // bind_transceiver
    c.write_all(&bind).await.unwrap();
    assert_eq!(read_pdu(&mut c).await, Some((0x8000_0009, 0, 1)));
    let deliver = DeliverSm::builder().short_message(OctetString::from_slice(b"id:1 stat:DELIVRD").unwrap()).build();
    let receivers = s.receivers.clone();
    let delivered = tokio::spawn(async move { receivers.deliver("bank", deliver, Duration::from_secs(5)).await });
    let (id, _, deliver_seq) = read_pdu(&mut c).await.expect("the deliver_sm");
    assert_eq!(id, 0x0000_0005);
    // The server stops before the ESME answers; the answer comes after the unbind.
    s.stop.cancel();
    let (id, _, unbind_seq) = read_pdu(&mut c).await.expect("unbind at stop");
    assert_eq!(id, UNBIND);
    let mut answers = pdu(0x8000_0005, deliver_seq, &[0]);
    answers.extend(pdu(UNBIND_RESP, unbind_seq, &[]));
    c.write_all(&answers).await.unwrap();
    assert_eq!(delivered.await.unwrap(), Ok(CommandStatus::EsmeRok));
    let mut byte = [0u8; 1];
    let end = tokio::time::timeout(Duration::from_secs(2), c.read(&mut byte)).await.expect("closed after unbind_resp");
    assert_eq!(end.unwrap(), 0);
}
