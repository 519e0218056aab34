//! A minimal SMPP client: bind as transmitter, submit, unbind. The demo and the benchmarks use
//! it to play a bank; the interconnect to other operators' SMS centers will build on it.

use bytes::Buf;
use rusmpp::decode::DecodeWithLength;
use rusmpp::pdus::{BindTransmitter, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::frame::{FrameError, read_frame};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("SMPP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SMPP framing: {0}")]
    Frame(#[from] FrameError),
    #[error("undecodable answer: {0}")]
    Decode(String),
    #[error("field too long: {0}")]
    Field(&'static str),
    #[error("the SMSC answered {0:?}")]
    Status(CommandStatus),
}

pub struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    seq: u32,
}

impl Client {
    /// Connects and binds as a transmitter (SMPP 3.4).
    pub async fn bind_transmitter(
        addr: std::net::SocketAddr,
        system_id: &str,
        password: &str,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut c = Client { read: BufReader::new(read), write, seq: 0 };
        let bind = BindTransmitter::builder()
            .system_id(system_id.parse().map_err(|_| ClientError::Field("system_id"))?)
            .password(password.parse().map_err(|_| ClientError::Field("password"))?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .build();
        c.call(bind).await?;
        Ok(c)
    }

    async fn call(&mut self, pdu: impl Into<Pdu>) -> Result<Command, ClientError> {
        self.seq += 1;
        let cmd = Command::new(CommandStatus::EsmeRok, self.seq, pdu);
        crate::server::send(&mut self.write, &cmd).await?;
        loop {
            let (header, mut frame) = read_frame(&mut self.read, 65_536).await?;
            frame.advance(4);
            let len = frame.len();
            let (answer, _) = Command::decode(&mut frame, len).map_err(|e| ClientError::Decode(e.to_string()))?;
            if header.sequence_number != self.seq {
                continue; // an enquire_link or deliver_sm from the SMSC; not awaited here
            }
            if answer.status() != CommandStatus::EsmeRok {
                return Err(ClientError::Status(answer.status()));
            }
            return Ok(answer);
        }
    }

    /// Submits `text` (GSM 7-bit default alphabet, as octets) from an alphanumeric sender to an
    /// international number, asking for a delivery receipt; returns the SMSC's message id.
    pub async fn submit(&mut self, sender: &str, destination: &str, text: &[u8]) -> Result<String, ClientError> {
        let submit = SubmitSm::builder()
            .source_addr_ton(Ton::Alphanumeric)
            .source_addr(sender.parse::<COctetString<1, 21>>().map_err(|_| ClientError::Field("source_addr"))?)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(destination.parse().map_err(|_| ClientError::Field("destination_addr"))?)
            .registered_delivery(RegisteredDelivery::request_all())
            .short_message(OctetString::from_slice(text).map_err(|_| ClientError::Field("short_message"))?)
            .build();
        let answer = self.call(submit).await?;
        match answer.pdu() {
            Some(Pdu::SubmitSmResp(r)) => Ok(r.message_id().as_str().to_owned()),
            other => Err(ClientError::Decode(format!("expected submit_sm_resp, got {other:?}"))),
        }
    }

    pub async fn unbind(mut self) -> Result<(), ClientError> {
        self.call(Pdu::Unbind).await.map(drop)
    }
}
