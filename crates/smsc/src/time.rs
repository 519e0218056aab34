//! SMPP time fields (SMPP 3.4 §7.1.1): schedule_delivery_time and validity_period, either
//! absolute `YYMMDDhhmmsstnnp` (t tenths of a second, nn quarter hours from UTC, p `+`/`-`) or
//! relative `YYMMDDhhmmss000R` (a year counted as 365 days and a month as 30, as SMS centers do).

/// Why a time field is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SMPP time {0:?} is malformed")]
pub struct TimeError(pub String);

/// The instant (Unix ms) a time field names, relative ones counted from `now_ms`; `None` for
/// an empty field.
pub fn parse_smpp_time(field: &str, now_ms: i64) -> Result<Option<i64>, TimeError> {
    if field.is_empty() {
        return Ok(None);
    }
    let bad = || TimeError(field.to_owned());
    let b = field.as_bytes();
    if b.len() != 16 || !b[..15].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let (yy, mo, dd, hh, mi, ss) = (n(0), n(2), n(4), n(6), n(8), n(10));
    let tenths = i64::from(b[12] - b'0');
    match b[15] {
        b'R' => {
            let secs = ((yy * 365 + mo * 30 + dd) * 24 + hh) * 3600 + mi * 60 + ss;
            Ok(Some(now_ms.saturating_add(secs * 1000)))
        }
        sign @ (b'+' | b'-') => {
            if !(1..=12).contains(&mo) || !(1..=31).contains(&dd) || hh > 23 || mi > 59 || ss > 59 {
                return Err(bad());
            }
            let quarters = n(13);
            if quarters > 48 {
                return Err(bad());
            }
            let local = (days_from_civil(2000 + yy, mo, dd) * 86_400 + hh * 3600 + mi * 60 + ss) * 1000 + tenths * 100;
            let offset = quarters * 15 * 60_000;
            // Local time is UTC plus the offset ('+') or minus it ('-').
            Ok(Some(if sign == b'+' { local - offset } else { local + offset }))
        }
        _ => Err(bad()),
    }
}

/// The absolute SMPP time `YYMMDDhhmmsst00+` (UTC) of Unix ms `ms`, to the tenth of a second.
pub fn format_absolute(ms: i64) -> String {
    let minute = crate::receipt::ReceiptTime::from_unix_ms(ms);
    let (secs, tenths) = (ms.div_euclid(1000).rem_euclid(60), ms.rem_euclid(1000) / 100);
    format!("{minute}{secs:02}{tenths}00+")
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        let now = 1_795_453_500_000; // 2026-11-23 17:05:00 UTC
        assert_eq!(parse_smpp_time("", now), Ok(None));
        assert_eq!(parse_smpp_time("000000010000000R", now), Ok(Some(now + 3_600_000)));
        assert_eq!(parse_smpp_time("000002000000000R", now), Ok(Some(now + 2 * 86_400_000)));
        assert_eq!(parse_smpp_time("261123170500000+", now), Ok(Some(now)));
        // 18:05 at UTC+1 (four quarter hours) is 17:05 UTC.
        assert_eq!(parse_smpp_time("261123180500004+", now), Ok(Some(now)));
        assert_eq!(parse_smpp_time("261123160500004-", now), Ok(Some(now)));
        assert_eq!(parse_smpp_time("261123170500300+", now), Ok(Some(now + 300)));
        for bad in
            ["1", "26112317050000+", "2611231705000000", "261323170500000+", "26112317050000x+", "261123170500099+"]
        {
            assert!(parse_smpp_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_times_read_back() {
        let now = 1_795_453_500_000; // 2026-11-23 17:05:00 UTC
        assert_eq!(format_absolute(now), "261123170500000+");
        for ms in [now, now + 59_999, now + 86_400_123, 946_684_800_000] {
            assert_eq!(parse_smpp_time(&format_absolute(ms), 0), Ok(Some(ms - ms % 100)));
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "[0-9R+-]{0,18}") {
            let _ = parse_smpp_time(&s, 0);
        }
    }
}
