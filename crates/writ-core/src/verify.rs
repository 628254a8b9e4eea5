//! Verification: observed state against approved desired state. Only equality verifies.

use crate::change::{Change, Observation};
use crate::error::Refusal;

/// Indices of the operations whose observed state differs from what was approved. Fails if the
/// observations do not cover every operation exactly once.
pub fn mismatches(change: &Change, observations: &[Observation]) -> Result<Vec<usize>, Refusal> {
    let report = |detail: String| Refusal::InconsistentReport { change: change.id.clone(), detail };
    if observations.len() != change.ops.len() {
        return Err(report(format!(
            "{} observations for {} operations",
            observations.len(),
            change.ops.len()
        )));
    }
    let mut bad = Vec::new();
    for (index, op) in change.ops.iter().enumerate() {
        let mut matching = observations.iter().filter(|o| o.op == index);
        let (Some(observation), None) = (matching.next(), matching.next()) else {
            return Err(report(format!("operation {index} must be observed exactly once")));
        };
        let wanted = op.action.leaves_present();
        if observation.present != wanted {
            bad.push(index);
        }
    }
    Ok(bad)
}
