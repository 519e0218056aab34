//! Provisioning orders, the instruction categories they fall into, and the commands they become.
//!
//! An order says what the business side wants for one subscriber ("activate this ported-in
//! number", "bar it"); [`Order::commands`] expands it into one command per network element it
//! touches, in the order the elements must see them. The category decides the order's priority
//! under overload: what brings a subscriber into service goes first, bulk work last.

use std::fmt;
use std::str::FromStr;

use numport_core::Msisdn;
use serde::{Deserialize, Serialize};

/// An instruction category: one durable queue and one protection state each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Category {
    /// Bringing a subscriber into service: port-in activation, new account. High priority.
    Activation,
    /// Changing a served subscriber: deactivation at port-out, plan change, barring. Medium.
    Service,
    /// Bulk changes from a file. Low priority: it waits while the others need the elements.
    Bulk,
}

impl Category {
    /// Every category, highest priority first: the order the allocator serves them in.
    pub const ALL: [Category; 3] = [Category::Activation, Category::Service, Category::Bulk];

    /// Position in [`Category::ALL`] (0 is the highest priority).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Activation => "activation",
            Category::Service => "service",
            Category::Bulk => "bulk",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| UnknownName::new("category", s))
    }
}

/// A network element kind the device provisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Element {
    /// HLR/HSS: the subscriber's IMSI, MSISDN, services and barring.
    Hlr,
    /// The SMS center's list of the node's own subscribers.
    Smsc,
    /// The charging account (a stand-in with the interface online charging will have).
    Charging,
}

impl Element {
    pub const ALL: [Element; 3] = [Element::Hlr, Element::Smsc, Element::Charging];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Element::Hlr => "hlr",
            Element::Smsc => "smsc",
            Element::Charging => "charging",
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Element {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Element::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| UnknownName::new("element", s))
    }
}

/// A name that is not one of a closed set's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
}

impl UnknownName {
    fn new(kind: &'static str, value: &str) -> UnknownName {
        UnknownName { kind, value: value.chars().take(64).collect() }
    }
}

/// What an order asks for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Action {
    /// A port-in completed with this node as the recipient: serve the number from now on.
    PortIn {
        imsi: String,
        plan: String,
    },
    /// A new account (self-service or shop).
    NewAccount {
        imsi: String,
        plan: String,
    },
    /// A port-out completed: stop serving the number.
    PortOut,
    PlanChange {
        plan: String,
    },
    Bar,
    Unbar,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::PortIn { .. } => "port_in",
            Action::NewAccount { .. } => "new_account",
            Action::PortOut => "port_out",
            Action::PlanChange { .. } => "plan_change",
            Action::Bar => "bar",
            Action::Unbar => "unbar",
        }
    }
}

/// Where an order came from, which with its action decides its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Origin {
    /// One order (the API, or the node's own porting flows).
    #[default]
    Single,
    /// One line of a bulk file.
    Bulk,
}

/// One provisioning order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Order {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "4791000001"))]
    pub msisdn: Msisdn,
    #[serde(flatten)]
    pub action: Action,
    #[serde(default)]
    pub origin: Origin,
}

/// Why an order is refused before it is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("{field} must be 1 to {max} characters of letters, digits, '-' or '_'")]
    Field { field: &'static str, max: usize },
    #[error("bulk orders may change plans and barring only, not {0}")]
    BulkAction(&'static str),
}

/// Longest IMSI (ITU-T E.212: 15 digits) or plan name accepted.
const MAX_VALUE: usize = 32;

/// A value that goes on the wire as `key=value`: no spaces, no `=`, bounded.
fn check_value(field: &'static str, v: &str) -> Result<(), OrderError> {
    let ok =
        !v.is_empty() && v.len() <= MAX_VALUE && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(OrderError::Field { field, max: MAX_VALUE }) }
}

impl Order {
    pub fn new(msisdn: Msisdn, action: Action) -> Order {
        Order { msisdn, action, origin: Origin::Single }
    }

    /// Refuse what could not go on the wire or makes no sense in bulk.
    pub fn validate(&self) -> Result<(), OrderError> {
        match &self.action {
            Action::PortIn { imsi, plan } | Action::NewAccount { imsi, plan } => {
                if imsi.len() < 6 || !imsi.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(OrderError::Field { field: "imsi", max: 15 });
                }
                check_value("imsi", imsi)?;
                check_value("plan", plan)?;
            }
            Action::PlanChange { plan } => check_value("plan", plan)?,
            Action::PortOut | Action::Bar | Action::Unbar => {}
        }
        if self.origin == Origin::Bulk
            && !matches!(self.action, Action::PlanChange { .. } | Action::Bar | Action::Unbar)
        {
            return Err(OrderError::BulkAction(self.action.name()));
        }
        Ok(())
    }

    /// The order's instruction category.
    pub fn category(&self) -> Category {
        match (self.origin, &self.action) {
            (Origin::Bulk, _) => Category::Bulk,
            (_, Action::PortIn { .. } | Action::NewAccount { .. }) => Category::Activation,
            (_, Action::PortOut | Action::PlanChange { .. } | Action::Bar | Action::Unbar) => Category::Service,
        }
    }

    /// The commands the order becomes, one per element it touches.
    pub fn commands(&self) -> Vec<Command> {
        let cmd = |element, verb, params: &[(&str, &str)]| Command {
            element,
            verb,
            msisdn: self.msisdn.clone(),
            params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        match &self.action {
            Action::PortIn { imsi, plan } | Action::NewAccount { imsi, plan } => vec![
                cmd(Element::Hlr, Verb::Create, &[("imsi", imsi), ("services", "voice-sms-data")]),
                cmd(Element::Smsc, Verb::Create, &[]),
                cmd(Element::Charging, Verb::Create, &[("plan", plan)]),
            ],
            Action::PortOut => vec![
                cmd(Element::Hlr, Verb::Delete, &[]),
                cmd(Element::Smsc, Verb::Delete, &[]),
                cmd(Element::Charging, Verb::Delete, &[]),
            ],
            Action::PlanChange { plan } => {
                vec![
                    cmd(Element::Hlr, Verb::Set, &[("plan", plan)]),
                    cmd(Element::Charging, Verb::Set, &[("plan", plan)]),
                ]
            }
            Action::Bar => vec![cmd(Element::Hlr, Verb::Bar, &[])],
            Action::Unbar => vec![cmd(Element::Hlr, Verb::Unbar, &[])],
        }
    }
}

/// What a command asks an element to do with a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Create (or overwrite with the same data: retried commands must be safe to repeat).
    Create,
    /// Remove; removing an absent subscriber succeeds, for the same reason.
    Delete,
    /// Change attributes of an existing subscriber.
    Set,
    Bar,
    Unbar,
}

impl Verb {
    pub const ALL: [Verb; 5] = [Verb::Create, Verb::Delete, Verb::Set, Verb::Bar, Verb::Unbar];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "CREATE",
            Verb::Delete => "DELETE",
            Verb::Set => "SET",
            Verb::Bar => "BAR",
            Verb::Unbar => "UNBAR",
        }
    }
}

impl FromStr for Verb {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| UnknownName::new("verb", s))
    }
}

/// One command for one network element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub element: Element,
    pub verb: Verb,
    pub msisdn: Msisdn,
    /// `key=value` attributes; keys are the crate's own, values checked by [`Order::validate`].
    pub params: Vec<(String, String)>,
}

impl Command {
    /// The attributes as stored (`key=value` separated by spaces, as on the wire).
    pub fn params_text(&self) -> String {
        self.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }

    /// Attributes from [`Command::params_text`]; `None` for text that is not of that form.
    pub fn parse_params(text: &str) -> Option<Vec<(String, String)>> {
        text.split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msisdn() -> Msisdn {
        "4791000001".parse().unwrap()
    }

    #[test]
    fn classification_follows_priority() {
        let port_in = Order::new(msisdn(), Action::PortIn { imsi: "242010000000001".into(), plan: "basic".into() });
        assert_eq!(port_in.category(), Category::Activation);
        assert_eq!(Order::new(msisdn(), Action::PortOut).category(), Category::Service);
        assert_eq!(Order::new(msisdn(), Action::Bar).category(), Category::Service);
        let bulk = Order { origin: Origin::Bulk, ..Order::new(msisdn(), Action::PlanChange { plan: "gold".into() }) };
        assert_eq!(bulk.category(), Category::Bulk);
        assert!(Category::Activation < Category::Service && Category::Service < Category::Bulk);
    }

    #[test]
    fn activation_touches_every_element_and_deactivation_undoes_it() {
        let port_in = Order::new(msisdn(), Action::PortIn { imsi: "242010000000001".into(), plan: "basic".into() });
        let on: Vec<_> = port_in.commands().iter().map(|c| (c.element, c.verb)).collect();
        assert_eq!(
            on,
            [(Element::Hlr, Verb::Create), (Element::Smsc, Verb::Create), (Element::Charging, Verb::Create)]
        );
        assert_eq!(port_in.commands()[0].params_text(), "imsi=242010000000001 services=voice-sms-data");
        let off: Vec<_> =
            Order::new(msisdn(), Action::PortOut).commands().iter().map(|c| (c.element, c.verb)).collect();
        assert_eq!(
            off,
            [(Element::Hlr, Verb::Delete), (Element::Smsc, Verb::Delete), (Element::Charging, Verb::Delete)]
        );
    }

    #[test]
    fn validation_refuses_what_cannot_go_on_the_wire() {
        let bad_plan = Order::new(msisdn(), Action::PlanChange { plan: "gold plan".into() });
        assert!(bad_plan.validate().is_err());
        let bad_imsi = Order::new(msisdn(), Action::NewAccount { imsi: "24201x".into(), plan: "basic".into() });
        assert!(bad_imsi.validate().is_err());
        let bulk_port = Order { origin: Origin::Bulk, ..Order::new(msisdn(), Action::PortOut) };
        assert_eq!(bulk_port.validate(), Err(OrderError::BulkAction("port_out")));
        assert!(Order::new(msisdn(), Action::PlanChange { plan: "gold-2".into() }).validate().is_ok());
    }
}
