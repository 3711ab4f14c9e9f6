//! The one rule for "the coordinator" that every capability of the host core uses: the
//! present host (Up or Suspect, this one included) with the lowest node id.

use crate::config::NodeId;

/// The coordinator among `me` and the other hosts `present` (those whose state is
/// present: Up or Suspect).
pub fn coordinator(me: NodeId, present: impl IntoIterator<Item = NodeId>) -> NodeId {
    present.into_iter().fold(me, NodeId::min)
}

/// Whether `me` coordinates, with the other hosts `present`.
pub fn is_coordinator(me: NodeId, present: impl IntoIterator<Item = NodeId>) -> bool {
    coordinator(me, present) == me
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_present_host_coordinates() {
        assert_eq!(coordinator(3, [2, 5]), 2);
        assert_eq!(coordinator(1, [2, 5]), 1);
        assert_eq!(coordinator(4, []), 4, "alone, this host coordinates");
        assert!(is_coordinator(2, [3]));
        assert!(!is_coordinator(2, [1, 3]));
    }
}
