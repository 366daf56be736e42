//! A rule's GEP-1731 `retry`, checked and with Ambit's defaults applied (see README,
//! "GAMMA semantics"): no `retry`, or `attempts: 0`, means one attempt per request.

use std::str::FromStr;
use std::time::Duration;

use ambit_proxy_core::routes::{RetryCodes, RetryPolicy, DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, MAX_ATTEMPTS};

use super::rules::{invalid, RuleError};
use super::spec::RetrySpec;

/// The rule's retry policy (None: no retries), or why the rule is invalid.
pub fn retry_policy(spec: Option<&RetrySpec>) -> Result<Option<RetryPolicy>, RuleError> {
    let Some(spec) = spec else { return Ok(None) };
    let attempts = match spec.attempts {
        None => DEFAULT_ATTEMPTS,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_ATTEMPTS)
            .ok_or_else(|| invalid(format!("retry.attempts {n} is not in 0..{MAX_ATTEMPTS}")))?,
    };
    let backoff = match spec.backoff.as_deref() {
        None => DEFAULT_BACKOFF,
        Some(text) => {
            let d = gateway_api::Duration::from_str(text).map_err(|e| invalid(format!("retry.backoff {text:?}: {e}")))?;
            Duration::new(d.as_secs(), d.subsec_nanos())
        }
    };
    let codes = RetryCodes::new(spec.codes.iter().flatten().copied()).map_err(|e| invalid(format!("retry.codes: {e}")))?;
    Ok((attempts > 0).then_some(RetryPolicy { attempts, backoff, codes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(attempts: Option<i64>, backoff: Option<&str>, codes: &[i64]) -> RetrySpec {
        RetrySpec { attempts, backoff: backoff.map(str::to_owned), codes: (!codes.is_empty()).then(|| codes.to_vec()) }
    }

    #[test]
    fn defaults_apply_to_what_is_not_set() {
        assert_eq!(retry_policy(None), Ok(None));
        let policy = retry_policy(Some(&spec(None, None, &[]))).unwrap().unwrap();
        assert_eq!((policy.attempts, policy.backoff), (DEFAULT_ATTEMPTS, DEFAULT_BACKOFF));
        assert!(policy.codes.is_empty());
        assert_eq!(retry_policy(Some(&spec(Some(0), None, &[503]))), Ok(None), "zero attempts: no retries");
    }

    #[test]
    fn set_values_are_kept() {
        let policy = retry_policy(Some(&spec(Some(3), Some("250ms"), &[503, 502]))).unwrap().unwrap();
        assert_eq!(policy.attempts, 3);
        assert_eq!(policy.backoff, Duration::from_millis(250));
        assert_eq!(policy.codes.iter().collect::<Vec<_>>(), [502, 503]);
    }

    #[test]
    fn invalid_values_name_the_field() {
        let message = |s: RetrySpec| retry_policy(Some(&s)).unwrap_err().message;
        assert!(message(spec(Some(-1), None, &[])).contains("retry.attempts -1"));
        assert!(message(spec(Some(11), None, &[])).contains("retry.attempts 11"));
        assert!(message(spec(None, Some("soon"), &[])).contains("retry.backoff \"soon\""));
        assert!(message(spec(None, None, &[503, 200])).contains("retry code 200"));
    }
}
