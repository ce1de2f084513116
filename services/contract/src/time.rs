//! Conversions between protobuf timestamps and Unix milliseconds.

use prost_types::Timestamp;

/// Milliseconds since the Unix epoch of a timestamp.
pub fn to_unix_ms(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// A timestamp from milliseconds since the Unix epoch.
pub fn from_unix_ms(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Parses an RFC 3339 timestamp such as `2026-11-20T21:40:00Z`.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_including_before_1970() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            assert_eq!(to_unix_ms(&from_unix_ms(ms)), ms);
        }
    }

    #[test]
    fn parses_rfc3339() {
        let ts = parse_rfc3339("2026-11-20T21:40:00Z").expect("valid");
        assert_eq!(ts.seconds, 1_795_210_800);
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
