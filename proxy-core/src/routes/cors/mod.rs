//! The HTTPRoute CORS filter (GEP-1767): its validated configuration here, origins in
//! [`origin`], and what it does to one request in [`decide`].

mod decide;
mod origin;
#[cfg(test)]
mod tests;

pub use decide::{CorsOutcome, ResponseCors};
pub use origin::{InvalidOrigin, Origin, OriginPattern};

use http::{HeaderName, HeaderValue, Method};

/// A CORS filter as the route gives it (field names as in the API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsConfig {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    /// Seconds; unset means the API default, 5.
    pub max_age: Option<i64>,
}

/// Why a CORS filter is invalid (its rule is then dropped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCors {
    #[error("CORS: {0}")]
    Origin(InvalidOrigin),
    #[error("CORS: allowMethods entry {0:?} is not an HTTP method or `*`")]
    Method(String),
    #[error("CORS: {field} entry {value:?} is not a header name or `*`")]
    Header { field: &'static str, value: String },
    #[error("CORS: maxAge {0} is not in 1..=2147483647 seconds")]
    MaxAge(i64),
}

/// What a header-valued list of the filter holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Not configured: the response header is not sent.
    Unset,
    /// The configured values, joined with ", ", as the response header's value.
    List(HeaderValue),
    /// `*` is among the values (the others then add nothing).
    Wildcard,
}

impl Allowed {
    /// Builds the list from `values`, each checked by `valid`.
    fn build(values: &[String], valid: impl Fn(&str) -> bool) -> Result<Self, String> {
        if let Some(bad) = values.iter().find(|v| v.as_str() != "*" && !valid(v.as_str())) {
            return Err(bad.clone());
        }
        if values.iter().any(|v| v == "*") {
            return Ok(Self::Wildcard);
        }
        if values.is_empty() {
            return Ok(Self::Unset);
        }
        HeaderValue::from_str(&values.join(", ")).map(Self::List).map_err(|_| values.join(", "))
    }
}

/// The API default for `maxAge`.
pub const DEFAULT_MAX_AGE: u32 = 5;

/// A validated CORS filter, ready for the data path.
#[derive(Clone, Debug)]
pub struct CorsPolicy {
    origins: Vec<OriginPattern>,
    methods: Allowed,
    allow_headers: Allowed,
    expose_headers: Allowed,
    credentials: bool,
    max_age: HeaderValue,
}

impl CorsPolicy {
    pub fn new(config: &CorsConfig) -> Result<Self, InvalidCors> {
        let origins =
            config.allow_origins.iter().map(|o| OriginPattern::parse(o)).collect::<Result<_, _>>().map_err(InvalidCors::Origin)?;
        let methods = Allowed::build(&config.allow_methods, |m| Method::from_bytes(m.as_bytes()).is_ok())
            .map_err(InvalidCors::Method)?;
        let header_name = |h: &str| HeaderName::from_bytes(h.as_bytes()).is_ok();
        let allow_headers = Allowed::build(&config.allow_headers, header_name)
            .map_err(|value| InvalidCors::Header { field: "allowHeaders", value })?;
        let expose_headers = Allowed::build(&config.expose_headers, header_name)
            .map_err(|value| InvalidCors::Header { field: "exposeHeaders", value })?;
        let max_age = match config.max_age {
            None => DEFAULT_MAX_AGE,
            Some(s) => u32::try_from(s).ok().filter(|s| (1..=i32::MAX as u32).contains(s)).ok_or(InvalidCors::MaxAge(s))?,
        };
        Ok(Self {
            origins,
            methods,
            allow_headers,
            expose_headers,
            credentials: config.allow_credentials,
            max_age: HeaderValue::from(max_age),
        })
    }

    /// The `allowOrigins` entries.
    pub fn origins(&self) -> &[OriginPattern] {
        &self.origins
    }

    pub fn allows_credentials(&self) -> bool {
        self.credentials
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn valid_configuration() {
        let config = CorsConfig {
            allow_origins: strings(&["https://www.foo.com", "https://*.bar.com", "*"]),
            allow_methods: strings(&["GET", "OPTIONS"]),
            allow_headers: strings(&["x-header-1", "X-Header-2"]),
            expose_headers: strings(&["*", "x-header-3"]),
            allow_credentials: true,
            max_age: Some(3600),
        };
        let policy = CorsPolicy::new(&config).unwrap();
        assert_eq!(policy.origins().len(), 3);
        assert_eq!(policy.methods, Allowed::List(HeaderValue::from_static("GET, OPTIONS")));
        assert_eq!(policy.allow_headers, Allowed::List(HeaderValue::from_static("x-header-1, X-Header-2")));
        assert_eq!(policy.expose_headers, Allowed::Wildcard);
        assert_eq!(policy.max_age, HeaderValue::from_static("3600"));
        assert!(policy.allows_credentials());
    }

    #[test]
    fn defaults() {
        let policy = CorsPolicy::new(&CorsConfig::default()).unwrap();
        assert!(policy.origins().is_empty());
        assert_eq!(policy.methods, Allowed::Unset);
        assert_eq!(policy.max_age, HeaderValue::from_static("5"));
        assert!(!policy.allows_credentials());
    }

    #[test]
    fn invalid_configurations() {
        let bad = |f: fn(&mut CorsConfig)| {
            let mut config = CorsConfig::default();
            f(&mut config);
            CorsPolicy::new(&config).unwrap_err()
        };
        assert!(matches!(bad(|c| c.allow_origins = strings(&["foo.com"])), InvalidCors::Origin(_)));
        assert_eq!(bad(|c| c.allow_methods = strings(&["GET", "BAD METHOD"])), InvalidCors::Method("BAD METHOD".into()));
        assert!(matches!(bad(|c| c.allow_headers = strings(&["bad header"])), InvalidCors::Header { field: "allowHeaders", .. }));
        assert!(matches!(bad(|c| c.expose_headers = strings(&[""])), InvalidCors::Header { field: "exposeHeaders", .. }));
        assert_eq!(bad(|c| c.max_age = Some(0)), InvalidCors::MaxAge(0));
        assert_eq!(bad(|c| c.max_age = Some(-1)), InvalidCors::MaxAge(-1));
        assert_eq!(bad(|c| c.max_age = Some(1 << 40)), InvalidCors::MaxAge(1 << 40));
        assert!(bad(|c| c.max_age = Some(0)).to_string().starts_with("CORS: maxAge 0"));
    }
}
