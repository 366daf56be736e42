//! Gateway API conformance profiles for a mesh: which tests count as core and which as
//! extended for MESH-HTTP and MESH-GRPC.
//!
//! A profile has a route kind and core features (`Mesh` plus that route kind). A test
//! belongs to a profile when each of its features is a core feature or an extended one;
//! the extended features of a profile are every other feature of the tests that use its
//! route kind (`MeshConsumerRoute`, `HTTPRoute303RedirectStatusCode`, ...). A test with
//! no extended feature is a core test. `MeshBasic` (feature `Mesh` only) is core in both.

/// A mesh conformance profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// The route-kind feature (`HTTPRoute`, `GRPCRoute`).
    pub route: &'static str,
}

pub const MESH_HTTP: Profile = Profile { name: "MESH-HTTP", route: "HTTPRoute" };
pub const MESH_GRPC: Profile = Profile { name: "MESH-GRPC", route: "GRPCRoute" };
pub const PROFILES: [Profile; 2] = [MESH_HTTP, MESH_GRPC];

/// The route-kind features of every profile; a test using another profile's route kind
/// is not in this one.
const ROUTE_FEATURES: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// How a test counts in a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Not part of the profile.
    None,
    Core,
    /// Extended: the extended features it needs.
    Extended(Vec<String>),
}

impl Profile {
    pub fn is_core_feature(&self, feature: &str) -> bool {
        feature == "Mesh" || feature == self.route
    }

    /// How a test with `features` counts in this profile.
    pub fn membership(&self, features: &[String]) -> Membership {
        let other_route = features.iter().any(|f| ROUTE_FEATURES.contains(&f.as_str()) && f != self.route);
        if other_route || !features.iter().any(|f| f == "Mesh") {
            return Membership::None;
        }
        let mut extended: Vec<String> = features.iter().filter(|f| !self.is_core_feature(f)).cloned().collect();
        if extended.is_empty() {
            return Membership::Core;
        }
        if !features.iter().any(|f| f == self.route) {
            return Membership::None;
        }
        extended.sort();
        extended.dedup();
        Membership::Extended(extended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mesh_basic_is_core_in_both() {
        for profile in PROFILES {
            assert_eq!(profile.membership(&features(&["Mesh"])), Membership::Core);
        }
    }

    #[test]
    fn route_kinds_select_the_profile() {
        let grpc = features(&["Mesh", "GRPCRoute"]);
        assert_eq!(MESH_GRPC.membership(&grpc), Membership::Core);
        assert_eq!(MESH_HTTP.membership(&grpc), Membership::None);
        let http = features(&["Mesh", "HTTPRoute"]);
        assert_eq!(MESH_HTTP.membership(&http), Membership::Core);
        assert_eq!(MESH_GRPC.membership(&http), Membership::None);
    }

    #[test]
    fn other_features_are_extended() {
        let consumer = features(&["Mesh", "MeshConsumerRoute", "HTTPRoute", "HTTPRouteResponseHeaderModification"]);
        assert_eq!(
            MESH_HTTP.membership(&consumer),
            Membership::Extended(features(&["HTTPRouteResponseHeaderModification", "MeshConsumerRoute"]))
        );
        assert_eq!(MESH_GRPC.membership(&consumer), Membership::None);
    }

    #[test]
    fn a_test_outside_the_mesh_is_in_no_profile() {
        assert_eq!(MESH_HTTP.membership(&features(&["Gateway", "HTTPRoute"])), Membership::None);
    }
}
