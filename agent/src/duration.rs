//! Durations on the command line, in the Gateway API's duration syntax (GEP-2257:
//! `500ms`, `10s`, `1m30s`, `1h`), the same one route timeouts use.

use std::str::FromStr;
use std::time::Duration;

/// Parses a GEP-2257 duration for a command-line flag.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = gateway_api::Duration::from_str(text)
        .map_err(|e| format!("invalid duration {text:?} (use e.g. 500ms, 10s, 1m30s): {e}"))?;
    Ok(Duration::new(parsed.as_secs(), parsed.subsec_nanos()))
}

/// Parses a GEP-2257 duration that must be longer than zero (a timeout of zero would
/// cut every connection at once).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("duration {text:?} must be longer than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_must_be_longer_than_zero() {
        assert_eq!(parse_positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("fast").is_err());
    }

    #[test]
    fn parses_the_gateway_api_syntax() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
