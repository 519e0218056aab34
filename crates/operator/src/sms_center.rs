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
