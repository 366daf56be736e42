//! The HTTPRoute CORS filter (GEP-1767) into proxy-core's [`CorsPolicy`]; an invalid
//! one (a malformed origin, method or header name, or `maxAge` below 1) makes its rule
//! invalid.

use ambit_proxy_core::routes::{CorsConfig, CorsPolicy};

use super::rules::RuleError;
use super::spec::CorsSpec;
use super::status::Reason;

pub fn cors_policy(spec: &CorsSpec) -> Result<CorsPolicy, RuleError> {
    let config = CorsConfig {
        allow_origins: spec.allow_origins.clone(),
        allow_methods: spec.allow_methods.clone(),
        allow_headers: spec.allow_headers.clone(),
        expose_headers: spec.expose_headers.clone(),
        allow_credentials: spec.allow_credentials.unwrap_or(false),
        max_age: spec.max_age,
    };
    CorsPolicy::new(&config).map_err(|e| RuleError { reason: Reason::UnsupportedValue, message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> CorsSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_every_field() {
        let policy = cors_policy(&spec(serde_json::json!({
            "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
            "allowMethods": ["GET", "OPTIONS"],
            "allowHeaders": ["x-header-1"],
            "exposeHeaders": ["x-header-3"],
            "allowCredentials": true,
            "maxAge": 3600
        })))
        .unwrap();
        assert_eq!(policy.origins().len(), 2);
        assert!(policy.allows_credentials());
        assert!(!cors_policy(&CorsSpec::default()).unwrap().allows_credentials());
    }

    #[test]
    fn invalid_values_are_unsupported() {
        for bad in [
            serde_json::json!({"allowOrigins": ["foo.example"]}),
            serde_json::json!({"allowOrigins": ["https://a.*.example"]}),
            serde_json::json!({"allowMethods": ["GET POST"]}),
            serde_json::json!({"allowHeaders": ["a b"]}),
            serde_json::json!({"maxAge": 0}),
        ] {
            let error = cors_policy(&spec(bad.clone())).unwrap_err();
            assert_eq!(error.reason, Reason::UnsupportedValue, "{bad}");
            assert!(error.message.starts_with("CORS: "), "{}", error.message);
        }
    }
}
