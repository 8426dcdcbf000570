//! Timestamps: Go's `time.Parse(time.RFC3339, s)` as snapd uses it (`checkRFC3339Date`), and
//! the `YYYY-MM-DDTHH:MM:SSZ` form serialmint emits.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::error::TimeError;

/// Parses like Go's RFC 3339 layout: a zone (`Z` or `±hh:mm`) is mandatory, fractional seconds
/// (`.` or `,` then digits) are accepted. Offsets beyond 23:59 are rejected (as Go >= 1.20 does).
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, TimeError> {
    let err = || TimeError::Layout(s.to_owned());
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<u32, TimeError> {
        let part = b.get(from..from + len).ok_or_else(err)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(err());
        }
        Ok(part
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let lit = |at: usize, c: u8| -> Result<(), TimeError> {
        if b.get(at) == Some(&c) {
            Ok(())
        } else {
            Err(err())
        }
    };
    let year = num(0, 4)?;
    lit(4, b'-')?;
    let month = num(5, 2)?;
    lit(7, b'-')?;
    let day = num(8, 2)?;
    lit(10, b'T')?;
    let hour = num(11, 2)?;
    lit(13, b':')?;
    let minute = num(14, 2)?;
    lit(16, b':')?;
    let second = num(17, 2)?;
    let mut i = 19;
    let mut nanos = 0u32;
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        let start = i + 1;
        let mut j = start;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j == start {
            return Err(err());
        }
        let mut scale = 100_000_000u32;
        for d in &b[start..j.min(start + 9)] {
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
        }
        i = j;
    }
    let offset = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => UtcOffset::UTC,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let oh = num(i + 1, 2)?;
            lit(i + 3, b':')?;
            let om = num(i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(err());
            }
            let secs = (oh * 3600 + om * 60) as i32;
            UtcOffset::from_whole_seconds(if sign == b'-' { -secs } else { secs })
                .map_err(|_| err())?
        }
        _ => return Err(err()),
    };
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| TimeError::Month(s.to_owned()))?;
    let date = Date::from_calendar_date(year as i32, month, day as u8)
        .map_err(|_| TimeError::Day(s.to_owned()))?;
    let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
        .map_err(|_| TimeError::Clock(s.to_owned()))?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// Formats as `YYYY-MM-DDTHH:MM:SSZ` in UTC, dropping sub-second precision.
pub fn format_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_rfc3339_forms() {
        let z = parse_rfc3339("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(z.unix_timestamp(), 1_704_164_645);
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05.123Z")
                .unwrap()
                .millisecond(),
            123
        );
        assert_eq!(
            parse_rfc3339("2024-01-02T04:04:05+01:00").unwrap(),
            z,
            "same instant"
        );
        assert_eq!(
            format_utc(parse_rfc3339("2016-08-19T15:58:42+02:00").unwrap()),
            "2016-08-19T13:58:42Z"
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05Z",
            "2024-02-30T03:04:05Z",
            "2024-13-02T03:04:05Z",
            "2024-01-02T24:04:05Z",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05Zx",
            "24-01-02T03:04:05Z",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_are_go_s() {
        let e = |s: &str| parse_rfc3339(s).unwrap_err().to_string();
        assert_eq!(
            e("2024-01-02"),
            r#"parsing time "2024-01-02" as "2006-01-02T15:04:05Z07:00""#
        );
        assert_eq!(
            e("2024-13-02T03:04:05Z"),
            r#"parsing time "2024-13-02T03:04:05Z": month out of range"#
        );
        assert_eq!(
            e("2024-02-30T03:04:05Z"),
            r#"parsing time "2024-02-30T03:04:05Z": day out of range"#
        );
        assert_eq!(
            e("2024-01-02T24:04:05Z"),
            r#"parsing time "2024-01-02T24:04:05Z": hour, minute or second out of range"#
        );
    }
}
