//! One order for the invitation rows a multi-row write locks: by id.
//!
//! Two transactions that lock the same rows in opposite orders deadlock, and the
//! database aborts one of them whole (PostgreSQL's 40P01, InnoDB's deadlock victim):
//! two admins sending overlapping selections sorted differently would see one of the
//! sends fail as a conflict for no reason. `record_transitions` therefore writes in id
//! order, as `expire_due` and PostgreSQL's outbox completion already lock (invitation
//! before its entries), and reports in the caller's order. (MySQL's completion locks
//! its entry first; the deadlocks that allows are retried, and a race still lost is
//! a lost claim.)

use invite_core::{Transition, TransitionReport};

/// The indices of `transitions` by invitation id; equal ids keep the caller's order,
/// so a repeated transition is still the stale second one.
pub(crate) fn by_id(transitions: &[Transition]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..transitions.len()).collect();
    order.sort_by_key(|&i| transitions[i].invitation.id);
    order
}

/// The report of `transitions` in the caller's order, `applied[i]` telling whether the
/// `i`th was persisted.
pub(crate) fn report(transitions: &[Transition], applied: &[bool]) -> TransitionReport {
    let mut report = TransitionReport::default();
    for (t, &done) in transitions.iter().zip(applied) {
        if done {
            report.applied.push(t.invitation.id);
        } else {
            report.stale.push(t.invitation.id);
        }
    }
    report
}
