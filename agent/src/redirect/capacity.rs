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
