//! Simulator scenarios.

/// All scenarios of this crate.
pub fn all() -> Vec<Box<dyn servent_sim::Scenario>> {
    Vec::new()
}
