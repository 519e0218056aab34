//! OpenAPI schemas of the domain types that travel in HTTP bodies (feature `openapi`).
//!
//! Written by hand, not derived, because their wire form is not their Rust shape: `Msisdn` and
//! `OperatorName` are strings checked on parsing (the pattern says what parses), `Money` is a
//! bare integer, and the enums' codes are documented one by one for API users.

use std::borrow::Cow;

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::porting::{ChangeKind, OrderKind, OrderState, Reason};
use crate::{Money, Msisdn, OperatorName};

fn string(pattern: &str, min: usize, max: usize, description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .examples([example])
        .into()
}

fn codes(values: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .into()
}

/// The schema of a [`Millis`](crate::Millis) field (a plain `i64` in Rust, so it needs a type of
/// its own to carry one): `#[schema(value_type = UnixMillis)]`.
pub struct UnixMillis;

impl PartialSchema for UnixMillis {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some("A point in time in Unix milliseconds."))
            .examples([1_767_225_600_000_i64])
            .into()
    }
}

impl ToSchema for UnixMillis {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Millis")
    }
}

impl PartialSchema for Msisdn {
    fn schema() -> RefOr<Schema> {
        string(
            "^[1-9][0-9]{7,14}$",
            8,
            15,
            "A subscriber number in E.164 form: 8 to 15 digits, country code first (never a leading 0), \
             without '+'. Requests may prefix it with '+'; it is always answered without.",
            "4790000001",
        )
    }
}

impl ToSchema for Msisdn {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Msisdn")
    }
}

impl PartialSchema for OperatorName {
    fn schema() -> RefOr<Schema> {
        string("^[a-z0-9-]{1,32}$", 1, 32, "A registered operator's short name, unique at the clearinghouse.", "opa")
    }
}

impl ToSchema for OperatorName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("OperatorName")
    }
}

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some(
                "An amount in integer **minor units** of the settlement currency (cents, øre, fen), \
                 serialized as a plain JSON integer; never a float. `12345` means 123.45.",
            ))
            .examples([12345])
            .into()
    }
}

impl ToSchema for Money {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}

impl PartialSchema for OrderState {
    fn schema() -> RefOr<Schema> {
        let values: Vec<&str> = OrderState::ALL.iter().map(|s| s.as_str()).collect();
        codes(
            &values,
            "Where a porting order stands. `awaiting_deposit` and `awaiting_credit_info` wait on the donor, \
             `awaiting_decision` on the recipient, `settling` on the clearinghouse's settler; the other five \
             are terminal. Every terminal state but `completed` carries a `reason`.",
        )
    }
}

impl ToSchema for OrderState {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("OrderState")
    }
}

impl PartialSchema for Reason {
    fn schema() -> RefOr<Schema> {
        let values: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        codes(
            &values,
            "Why an order ended anywhere but `completed`:\n\
             - `unknown_number`: no loaded number range holds the number;\n\
             - `already_served`: the recipient already serves the number;\n\
             - `proof_mismatch`: the recipient's proof differs from the donor's deposit;\n\
             - `proof_expired`: the proof's validity window has passed (or is too long);\n\
             - `nonce_reused`: this nonce was already used for this number;\n\
             - `too_many_attempts`: the requesting operator had too many failed verifications, of this number or \
             in all, within the window; other operators may still ask;\n\
             - `port_in_progress`: another order for the number is still open;\n\
             - `ported_too_recently`: the number was ported less than the minimum interval ago;\n\
             - `insufficient_funds`: the recipient's settlement account cannot pay the compensation;\n\
             - `deposit_timeout`: the donor did not deposit the expected proof in time;\n\
             - `decision_timeout`: the recipient did not accept or refuse in time;\n\
             - `refused_by_recipient`: the recipient refused at the implied compensation;\n\
             - `cancelled_by_recipient`: the recipient withdrew the order;\n\
             - `cancelled_by_subscriber`: the subscriber withdrew the order (relayed by the recipient);\n\
             - `unknown_subscriber`: the donor declined: it has no subscriber with this number;\n\
             - `number_not_active`: the donor declined: the subscription is not active;\n\
             - `no_port_key`: the donor declined: it holds no port key for the subscriber.",
        )
    }
}

impl ToSchema for Reason {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Reason")
    }
}

impl PartialSchema for OrderKind {
    fn schema() -> RefOr<Schema> {
        codes(
            &[OrderKind::Port.as_str(), OrderKind::PortBack.as_str()],
            "`port`: to a new operator; `port_back`: back to the operator holding the number's range.",
        )
    }
}

impl ToSchema for OrderKind {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("OrderKind")
    }
}

impl PartialSchema for ChangeKind {
    fn schema() -> RefOr<Schema> {
        codes(
            &[ChangeKind::Port.as_str(), ChangeKind::PortBack.as_str(), ChangeKind::Return.as_str()],
            "What moved the number: a port, a port back to the range holder, or the return of a terminated \
             ported number to its range holder.",
        )
    }
}

impl ToSchema for ChangeKind {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ChangeKind")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The enums' schemas list exactly the codes serde writes.
    #[test]
    fn enum_schemas_match_serde() {
        fn values<T: PartialSchema>() -> Vec<String> {
            let RefOr::T(Schema::Object(o)) = T::schema() else { panic!("not an object schema") };
            o.enum_values.unwrap_or_default().into_iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        }
        fn code<T: serde::Serialize>(v: T) -> String {
            serde_json::to_value(v).unwrap().as_str().unwrap().to_owned()
        }
        assert_eq!(values::<Reason>(), Reason::ALL.map(code));
        assert_eq!(values::<ChangeKind>(), [ChangeKind::Port, ChangeKind::PortBack, ChangeKind::Return].map(code));
        assert_eq!(values::<OrderKind>(), [OrderKind::Port, OrderKind::PortBack].map(code));
        assert_eq!(values::<OrderState>(), OrderState::ALL.map(code));
    }
}
