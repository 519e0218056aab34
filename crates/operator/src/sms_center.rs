//! The node's SMS center: ESMEs submit over SMPP (`smsc`), the destination is looked up in the
//! node's portability replica, and the message is recorded with its route before the submit is
//! acknowledged. A number this operator serves is delivered here (`local`); one ported away is
//! sent on to its serving operator (`interconnect`): the bank-SMS problem of F1, decided at the
//! first hop. Delivery over the air interface and the interconnect are still to come.

use numport_core::Msisdn;
use smsc::SubmitHandler;
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::SubmitSm;

use crate::Node;
use crate::store::sms::NewSms;

/// The [`SubmitHandler`] of an operator node.
pub struct SmsCenter {
    pub(crate) node: Node,
}

impl SubmitHandler for SmsCenter {
    async fn accept(&self, system_id: &str, submit: &SubmitSm) -> Result<String, CommandStatus> {
        let destination = submit.destination_addr.as_str().trim_start_matches('+');
        let msisdn: Msisdn = destination.parse().map_err(|_| CommandStatus::EsmeRinvdstadr)?;
        let serving = self.node.replica().lookup(&msisdn).ok_or(CommandStatus::EsmeRinvdstadr)?;
        let route = if serving.operator == self.node.name().as_str() { "local" } else { "interconnect" };
        let m = NewSms {
            system_id: system_id.to_owned(),
            source_addr: submit.source_addr.as_str().to_owned(),
            source_ton: u8::from(submit.source_addr_ton),
            destination: msisdn.to_string(),
            serving_operator: serving.operator,
            route,
            esm_class: u8::from(submit.esm_class),
            data_coding: u8::from(submit.data_coding),
            registered_delivery: u8::from(submit.registered_delivery),
            payload: submit.short_message().as_ref().to_vec(),
            submitted_at: self.node.now(),
        };
        match self.node.store().insert_sms(&m).await {
            Ok(id) => {
                if route == "local" {
                    self.node.inner.sms_queued.notify_waiters();
                }
                Ok(id.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, "short message not recorded; submit refused");
                Err(CommandStatus::EsmeRsyserr)
            }
        }
    }
}

/// Sends messages queued for other operators over their SMPP interconnect, until `stop`.
/// A message turns `forwarded` once the next SMS center has acknowledged it; on a failure the
/// connection is dropped and the message retried (at-least-once across a crash in between).
pub(crate) async fn forward(node: Node, stop: tokio_util::sync::CancellationToken) {
    use std::collections::HashMap;
    let mut links: HashMap<String, smsc::client::Client> = HashMap::new();
    loop {
        let queued = match node.store().queued_interconnect(64).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "interconnect queue");
                Vec::new()
            }
        };
        for m in &queued {
            let Some(peer) = node.config().interconnect.iter().find(|p| p.operator.as_str() == m.serving_operator)
            else {
                continue; // no interconnect configured to that operator: the message waits
            };
            if !links.contains_key(&m.serving_operator) {
                match smsc::client::Client::bind_transmitter(peer.addr, &peer.system_id, &peer.password).await {
                    Ok(c) => {
                        links.insert(m.serving_operator.clone(), c);
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer.operator, error = %e, "interconnect bind failed");
                        continue;
                    }
                }
            }
            let Some(link) = links.get_mut(&m.serving_operator) else { continue };
            match link.submit(&m.source_addr, &m.destination, &m.payload).await {
                Ok(remote_id) => {
                    tracing::info!(id = m.id, peer = %peer.operator, remote_id, "forwarded over the interconnect");
                    if let Err(e) = node.store().finish_sms(m.id, "forwarded").await {
                        tracing::warn!(error = %e, "marking a forwarded message");
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.operator, error = %e, "interconnect submit failed; retrying");
                    links.remove(&m.serving_operator);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(if queued.is_empty() { 100 } else { 0 })) => {}
        }
    }
}
