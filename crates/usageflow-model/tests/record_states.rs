//! The record state machine against the spec's record transitions
//! (shared/spec/connect-usage.md §5.3), written out here independently of the code.

use proptest::prelude::*;
use usageflow_model::{RecordState, RecordStep};

fn step(i: usize) -> RecordStep {
    match i % 8 {
        0 => RecordStep::Validate,
        1 => RecordStep::Invalidate,
        2 => RecordStep::Reupload,
        3 => RecordStep::Submit,
        4 => RecordStep::Reject,
        5 => RecordStep::Approve,
        6 => RecordStep::Close { external_billing_id: "INV-1".into() },
        _ => RecordStep::Close { external_billing_id: String::new() },
    }
}

/// The allowed moves.
fn allowed(from: RecordState, step: &RecordStep) -> Option<RecordState> {
    use RecordState::*;
    match (from, step) {
        (Uploaded, RecordStep::Validate) => Some(Validated),
        (Uploaded, RecordStep::Invalidate) => Some(Invalid),
        (Invalid | Validated | Rejected, RecordStep::Reupload) => Some(Uploaded),
        (Validated, RecordStep::Submit) => Some(Pending),
        (Pending | Accepted, RecordStep::Reject) => Some(Rejected),
        (Pending, RecordStep::Approve) => Some(Accepted),
        (Accepted, RecordStep::Close { external_billing_id }) if !external_billing_id.is_empty() => Some(Closed),
        _ => None,
    }
}

proptest! {
    #[test]
    fn records_move_only_as_the_table_allows(steps in prop::collection::vec(0usize..8, 0..80)) {
        let mut state = RecordState::Uploaded;
        for i in steps {
            let s = step(i);
            let got = state.next("UR-2026-11-0000-0001-0000-0001", &s);
            prop_assert_eq!(got.as_ref().ok().copied(), allowed(state, &s), "{:?} by {:?}", state, s);
            if let Ok(next) = got {
                state = next;
            }
        }
        // A closed record never reopens.
        if state == RecordState::Closed {
            for i in 0..8 {
                prop_assert!(state.next("UR", &step(i)).is_err());
            }
        }
    }
}
