//! `LISTEN`: a session of its own that receives what other sessions `NOTIFY` as their
//! transactions commit.

use super::Connector;
use super::wire::{Notification, Wire};
use crate::Result;

/// A dedicated session listening to some channels.
///
/// [`PgListener::recv`] fails when the session is lost, and what was notified meanwhile is
/// lost with it; the call after that connects again and listens to the same channels, so the
/// caller's loop decides how to catch up and how long to wait between attempts.
pub struct PgListener {
    connector: Connector,
    channels: Vec<String>,
    /// `None` after the session was lost, until the next [`PgListener::recv`] connects.
    wire: Option<Wire>,
}

impl std::fmt::Debug for PgListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgListener").field("channels", &self.channels).finish_non_exhaustive()
    }
}

impl PgListener {
    /// A session to `url` (`postgres://…`), listening to nothing yet.
    pub async fn connect(url: &str) -> Result<PgListener> {
        let connector = Connector::new(url)?;
        let wire = Wire::connect(&connector).await?;
        Ok(PgListener { connector, channels: Vec::new(), wire: Some(wire) })
    }

    /// Receive what is notified on `channel` from now on.
    pub async fn listen(&mut self, channel: &str) -> Result<()> {
        let statement = listen_statement(channel);
        if let Some(wire) = &mut self.wire {
            wire.simple(&statement).await?;
        }
        self.channels.push(channel.to_owned());
        Ok(())
    }

    /// The next notification on one of the channels. Safe to drop while it waits (in a
    /// `select!`); see the type's doc for what an error means.
    pub async fn recv(&mut self) -> Result<Notification> {
        self.ensure_listening().await?;
        let Some(wire) = &mut self.wire else { unreachable!("listening") };
        let received = wire.notification().await;
        if received.is_err() {
            self.wire = None;
        }
        received
    }

    /// Connect again and listen to the channels, if the session was lost. A caller that
    /// catches up after a loss does so after this, so that nothing notified after its catch-up
    /// is missed.
    pub async fn ensure_listening(&mut self) -> Result<()> {
        if self.wire.is_none() {
            self.wire = Some(Self::reconnect(&self.connector, &self.channels).await?);
        }
        Ok(())
    }

    async fn reconnect(connector: &Connector, channels: &[String]) -> Result<Wire> {
        let mut wire = Wire::connect(connector).await?;
        for channel in channels {
            wire.simple(&listen_statement(channel)).await?;
        }
        Ok(wire)
    }

    /// End the session.
    pub async fn close(mut self) {
        if let Some(mut wire) = self.wire.take() {
            wire.terminate().await;
        }
    }
}

/// `LISTEN "channel"`, the name quoted as an identifier.
fn listen_statement(channel: &str) -> String {
    format!("LISTEN \"{}\"", channel.replace('"', "\"\""))
}
