//! Overriding the sizes of the enrollment and Service maps at load time.

/// Sizes of `AMBIT_ENROLLED` and `AMBIT_SERVICES`; `None` keeps the object's size
/// ([`MAX_ENROLLED`](ambit_ebpf_common::MAX_ENROLLED),
/// [`MAX_SERVICES`](ambit_ebpf_common::MAX_SERVICES)).
///
/// Only a newly created map gets the override: maps already pinned under the pin
/// directory are reused as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapCapacity {
    pub enrolled: Option<u32>,
    pub services: Option<u32>,
}

impl MapCapacity {
    /// The overrides as (map name, entries), for `EbpfLoader::set_max_entries`.
    pub fn overrides(&self) -> impl Iterator<Item = (&'static str, u32)> {
        [(ambit_ebpf_common::map_names::ENROLLED, self.enrolled), (ambit_ebpf_common::map_names::SERVICES, self.services)]
            .into_iter()
            .filter_map(|(name, size)| size.map(|s| (name, s)))
    }
}

impl std::str::FromStr for MapCapacity {
    type Err = String;

    /// `ENROLLED,SERVICES`, both entry counts above 0.
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not ENROLLED,SERVICES (two entry counts above 0)");
        let (enrolled, services) = text.split_once(',').ok_or_else(invalid)?;
        let count = |n: &str| n.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(invalid);
        Ok(Self { enrolled: Some(count(enrolled)?), services: Some(count(services)?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_counts() {
        assert_eq!("3,1024".parse(), Ok(MapCapacity { enrolled: Some(3), services: Some(1024) }));
        for bad in ["", "3", "0,5", "3,", "a,b", "3,5,7"] {
            assert!(bad.parse::<MapCapacity>().is_err(), "{bad}");
        }
    }
}
