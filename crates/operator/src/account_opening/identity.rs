//! The identity a person gives to open an account, and its validation. Pure: the date the
//! age is counted at is a parameter.
//!
//! Every field is checked and every problem reported at once, each naming its field, so the
//! page can show them all beside the form.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Youngest age at which an account is opened without a guardian.
pub const MINIMUM_AGE: i32 = 18;
/// Longest name accepted, in characters.
const MAX_NAME: usize = 100;

/// The body of `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    #[schema(example = "Kari")]
    pub given_name: String,
    #[schema(example = "Nordmann")]
    pub family_name: String,
    /// `YYYY-MM-DD`; the holder must be at least 18.
    #[schema(example = "1990-04-17")]
    pub date_of_birth: String,
    /// The identity document's number: 5 to 20 letters and digits.
    #[schema(example = "P1234567")]
    pub id_document: String,
    /// Optional contact address.
    #[serde(default)]
    #[schema(example = "kari@example.no")]
    pub email: Option<String>,
    /// The ICCID printed on the blank card the person holds: 19 or 20 digits with the Luhn
    /// check digit of ITU-T E.118.
    #[schema(example = "8947000000000000018")]
    pub iccid: String,
}

/// A problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

/// A request whose fields passed, normalised (trimmed; the document number in capitals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub given_name: String,
    pub family_name: String,
    pub date_of_birth: time::Date,
    pub id_document: String,
    pub email: Option<String>,
    pub iccid: String,
}

/// Checks every field of `r`; `today` is the date the age is counted at.
pub fn validate(r: &AccountRequest, today: time::Date) -> Result<Identity, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut bad = |field, problem: &str| errors.push(FieldError { field, problem: problem.to_owned() });
    let given_name = r.given_name.trim().to_owned();
    if let Err(p) = check_name(&given_name) {
        bad("given_name", p);
    }
    let family_name = r.family_name.trim().to_owned();
    if let Err(p) = check_name(&family_name) {
        bad("family_name", p);
    }
    let date_of_birth = match parse_date(r.date_of_birth.trim()) {
        None => {
            bad("date_of_birth", "must be a date, YYYY-MM-DD");
            None
        }
        Some(d) if d > today => {
            bad("date_of_birth", "is in the future");
            None
        }
        Some(d) if d.year() < 1900 => {
            bad("date_of_birth", "is before 1900");
            None
        }
        Some(d) if age(d, today) < MINIMUM_AGE => {
            bad("date_of_birth", "the holder must be at least 18 years old");
            None
        }
        Some(d) => Some(d),
    };
    let id_document = r.id_document.trim().to_ascii_uppercase();
    if !(5..=20).contains(&id_document.len()) || !id_document.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bad("id_document", "must be 5 to 20 letters and digits");
    }
    let email = r.email.as_deref().map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned);
    if let Some(e) = &email
        && !plausible_email(e)
    {
        bad("email", "must be an address like name@example.no");
    }
    let iccid = r.iccid.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    if let Err(p) = check_iccid(&iccid) {
        bad("iccid", p);
    }
    match (errors.is_empty(), date_of_birth) {
        (true, Some(date_of_birth)) => {
            Ok(Identity { given_name, family_name, date_of_birth, id_document, email, iccid })
        }
        _ => Err(errors),
    }
}

/// All the problems in one line, `field: problem; field: problem`.
pub fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{}: {}", e.field, e.problem)).collect::<Vec<_>>().join("; ")
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let length = name.chars().count();
    if length == 0 {
        return Err("is required");
    }
    if length > MAX_NAME {
        return Err("is longer than 100 characters");
    }
    let allowed = |c: char| c.is_alphabetic() || matches!(c, ' ' | '-' | '\'' | '.' | '’');
    if !name.chars().all(allowed) || !name.chars().any(char::is_alphabetic) {
        return Err("may hold only letters, spaces, hyphens, apostrophes and periods");
    }
    Ok(())
}

fn parse_date(s: &str) -> Option<time::Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |r: std::ops::Range<usize>| -> Option<u16> {
        s.get(r).filter(|d| d.bytes().all(|c| c.is_ascii_digit()))?.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, u8::try_from(number(5..7)?).ok()?, u8::try_from(number(8..10)?).ok()?);
    time::Date::from_calendar_date(i32::from(year), time::Month::try_from(month).ok()?, day).ok()
}

/// Whole years from `born` to `today`.
fn age(born: time::Date, today: time::Date) -> i32 {
    let had_birthday = (today.month() as u8, today.day()) >= (born.month() as u8, born.day());
    today.year() - born.year() - i32::from(!had_birthday)
}

fn plausible_email(e: &str) -> bool {
    let Some((local, domain)) = e.rsplit_once('@') else { return false };
    e.len() <= 254
        && !local.is_empty()
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|l| !l.is_empty())
}

/// ICCID: 19 or 20 digits, issuer prefix 89 (telecommunication, E.118), Luhn check digit last.
pub fn check_iccid(iccid: &str) -> Result<(), &'static str> {
    if !(19..=20).contains(&iccid.len()) || !iccid.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be 19 or 20 digits");
    }
    if !iccid.starts_with("89") {
        return Err("must start with 89, the telecommunication prefix of ITU-T E.118");
    }
    if !luhn_valid(iccid) {
        return Err("check digit does not match (a digit was mistyped)");
    }
    Ok(())
}

/// The Luhn check of ISO/IEC 7812 over a digit string whose last digit is the check digit.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `body` followed by its Luhn check digit: how a test or a stock file makes a valid ICCID.
pub fn with_luhn_digit(body: &str) -> String {
    (0..10).map(|d| format!("{body}{d}")).find(|c| luhn_valid(c)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> time::Date {
        time::Date::from_calendar_date(2026, time::Month::December, 7).unwrap()
    }

    fn request() -> AccountRequest {
        AccountRequest {
            given_name: " Kari ".into(),
            family_name: "Nordmann-Ødegård".into(),
            date_of_birth: "1990-04-17".into(),
            id_document: "p1234567".into(),
            email: Some("kari@example.no".into()),
            iccid: with_luhn_digit("894700000000000001"),
        }
    }

    #[test]
    fn a_good_request_is_normalised() {
        let id = validate(&request(), today()).unwrap();
        assert_eq!((id.given_name.as_str(), id.id_document.as_str()), ("Kari", "P1234567"));
        assert_eq!(id.iccid.len(), 19);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let r = AccountRequest {
            given_name: "".into(),
            family_name: "R2D2".into(),
            date_of_birth: "1990-02-30".into(),
            id_document: "12".into(),
            email: Some("not-an-address".into()),
            iccid: "8947000000000000019".into(),
        };
        let errors = validate(&r, today()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["given_name", "family_name", "date_of_birth", "id_document", "email", "iccid"]);
        assert!(describe(&errors).contains("iccid: check digit"));
    }

    #[test]
    fn the_age_is_counted_to_the_day() {
        let at = |dob: &str| validate(&AccountRequest { date_of_birth: dob.into(), ..request() }, today());
        assert!(at("2008-12-07").is_ok(), "18 today");
        assert_eq!(at("2008-12-08").unwrap_err()[0].problem, "the holder must be at least 18 years old");
        assert_eq!(at("2027-01-01").unwrap_err()[0].problem, "is in the future");
        assert!(at("1899-12-31").is_err());
        assert!(at("1990-4-17").is_err() && at("+990-04-17").is_err() && at("").is_err());
    }

    #[test]
    fn iccids_need_their_check_digit() {
        let good = with_luhn_digit("8947000000000000123");
        assert_eq!(good.len(), 20);
        assert!(check_iccid(&good).is_ok());
        // Any one digit changed is caught.
        for i in 0..good.len() {
            let mut b = good.clone().into_bytes();
            b[i] = if b[i] == b'9' { b'0' } else { b[i] + 1 };
            assert!(check_iccid(std::str::from_utf8(&b).unwrap()).is_err(), "digit {i}");
        }
        assert!(check_iccid("1234567890123456789").is_err());
        assert!(luhn_valid("79927398713"), "the textbook example");
    }
}
