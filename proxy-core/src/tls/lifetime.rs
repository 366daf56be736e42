//! How long a workload certificate is valid.

use std::time::Duration;

/// A workload certificate's lifetime: 24 h by default (Istio's default workload
/// certificate TTL), at least one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertLifetime(Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a certificate lifetime of {0:?} is shorter than the minimum of one minute")]
pub struct LifetimeTooShort(pub Duration);

impl CertLifetime {
    pub const MIN: Duration = Duration::from_secs(60);
    pub const DEFAULT: CertLifetime = CertLifetime(Duration::from_secs(24 * 3600));

    pub fn new(lifetime: Duration) -> Result<Self, LifetimeTooShort> {
        if lifetime < Self::MIN {
            return Err(LifetimeTooShort(lifetime));
        }
        Ok(Self(lifetime))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl Default for CertLifetime {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_minute() {
        assert_eq!(CertLifetime::default().get(), Duration::from_secs(86_400));
        assert!(CertLifetime::new(Duration::from_secs(60)).is_ok());
        assert_eq!(CertLifetime::new(Duration::from_secs(59)), Err(LifetimeTooShort(Duration::from_secs(59))));
    }
}
