//! A linearizability checker for recorded histories: Wing & Gong's search with Lowe's cache of
//! (operations linearized, model state), as Knossos and Porcupine do it.
//!
//! Why not a crate: `stateright`'s `LinearizabilityTester` (0.31) is the one Rust checker over
//! a recorded history, but its search keeps no cache of the configurations it has seen, so a
//! history that is *not* linearizable — the one a checker exists to find — costs it every
//! interleaving of the concurrent operations before it answers: k reads of one value in flight
//! together are k! orders, per round. With the cache, a configuration is visited once; the
//! cost is bounded by the states reachable through the concurrency window. The checker is
//! tested below on histories known to be bad and known to be good.
//!
//! An operation whose outcome is unknown (a timeout, a 503) may take effect at any point after
//! it was invoked, or never: it has no return event of its own, the search may linearize it
//! with any result, and it need not be linearized at all.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification: the state a model holds, and whether an operation with this
/// input may return this output from that state (then the state after it).
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    /// `None`: the output is impossible from `state`. `output` is `None` for an operation whose
    /// outcome is unknown: any output it could return is allowed.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One recorded operation: invoked and returned at these times (µs), or `output: None` when
/// its outcome is unknown (then `returned` is ignored).
#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    pub invoked: u64,
    pub returned: u64,
    pub input: I,
    pub output: Option<O>,
}

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return entry.
    matching: usize,
    prev: usize,
    next: usize,
}

/// Whether the history is linearizable against `model`. `max_steps` bounds the search; past
/// it the answer is `None` (undecided), reported as such rather than as a pass.
pub fn linearizable<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Option<bool> {
    // Events sorted by time; an unknown operation returns at "infinity". At equal times a
    // call sorts after a return (the operations are then not concurrent: conservative).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2 + 1);
    for (i, op) in history.iter().enumerate() {
        events.push((op.invoked, true, i));
        let returned = if op.output.is_some() {
            op.returned
        } else {
            u64::MAX
        };
        events.push((returned, false, i));
    }
    events.sort_by_key(|&(time, is_call, op)| (time, is_call, op));
    // entries[0] is the head sentinel.
    let n = events.len();
    let mut entries: Vec<Entry> = Vec::with_capacity(n + 1);
    entries.push(Entry {
        op: usize::MAX,
        is_call: false,
        matching: 0,
        prev: 0,
        next: 1,
    });
    let mut return_at = vec![0usize; history.len()];
    for (i, &(_, is_call, op)) in events.iter().enumerate() {
        let index = i + 1;
        if !is_call {
            return_at[op] = index;
        }
        entries.push(Entry {
            op,
            is_call,
            matching: 0,
            prev: index - 1,
            next: if index == n { usize::MAX } else { index + 1 },
        });
    }
    if n == 0 {
        return Some(true);
    }
    for entry in entries.iter_mut().skip(1) {
        if entry.is_call {
            entry.matching = return_at[entry.op];
        }
    }
    let known = history.iter().filter(|op| op.output.is_some()).count();

    let words = history.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut known_linearized = 0usize;
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut calls: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut entry = entries[0].next;
    let mut steps = 0u64;

    let lift = |entries: &mut Vec<Entry>, at: usize| {
        let Entry {
            prev,
            next,
            matching,
            ..
        } = entries[at];
        entries[prev].next = next;
        if next != usize::MAX {
            entries[next].prev = prev;
        }
        let Entry { prev, next, .. } = entries[matching];
        entries[prev].next = next;
        if next != usize::MAX {
            entries[next].prev = prev;
        }
    };
    let unlift = |entries: &mut Vec<Entry>, at: usize| {
        let matching = entries[at].matching;
        let Entry { prev, next, .. } = entries[matching];
        entries[prev].next = matching;
        if next != usize::MAX {
            entries[next].prev = matching;
        }
        let Entry { prev, next, .. } = entries[at];
        entries[prev].next = at;
        if next != usize::MAX {
            entries[next].prev = at;
        }
    };

    loop {
        if known_linearized == known {
            // What remains are unknown operations: they may never have taken effect.
            return Some(true);
        }
        steps += 1;
        if steps > max_steps {
            return None;
        }
        if entry != usize::MAX {
            let current = entries[entry];
            let op = &history[current.op];
            if current.is_call {
                if let Some(next_state) = model.step(&state, &op.input, op.output.as_ref()) {
                    let mut with = linearized.clone();
                    with[current.op / 64] |= 1 << (current.op % 64);
                    if cache.insert((with.clone(), next_state.clone())) {
                        calls.push((entry, std::mem::replace(&mut state, next_state)));
                        linearized = with;
                        if op.output.is_some() {
                            known_linearized += 1;
                        }
                        lift(&mut entries, entry);
                        entry = entries[0].next;
                        continue;
                    }
                }
                entry = current.next;
                continue;
            }
            if op.output.is_none() {
                // The return of an unknown operation sorts after every known one: every known
                // operation is placed, which the check at the top of the loop has seen.
                entry = current.next;
                continue;
            }
        }
        // Past the end of the list, or a known operation returned before it could be placed:
        // undo the last choice.
        let Some((at, previous)) = calls.pop() else {
            return Some(false);
        };
        let op = entries[at].op;
        linearized[op / 64] &= !(1 << (op % 64));
        if history[op].output.is_some() {
            known_linearized -= 1;
        }
        state = previous;
        unlift(&mut entries, at);
        entry = entries[at].next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of integers with write, read and compare-and-set.
    struct Register;

    #[derive(Debug)]
    enum In {
        Write(i64),
        Read,
        Cas(i64, i64),
    }

    #[derive(Debug, PartialEq)]
    enum Out {
        Ok,
        Value(i64),
        Swapped(bool),
    }

    impl Model for Register {
        type State = i64;
        type Input = In;
        type Output = Out;
        fn init(&self) -> i64 {
            0
        }
        fn step(&self, state: &i64, input: &In, output: Option<&Out>) -> Option<i64> {
            match (input, output) {
                (In::Write(v), None | Some(Out::Ok)) => Some(*v),
                (In::Read, None) => Some(*state),
                (In::Read, Some(Out::Value(v))) => (v == state).then_some(*state),
                (In::Cas(from, to), None) => Some(if state == from { *to } else { *state }),
                (In::Cas(from, to), Some(Out::Swapped(swapped))) => {
                    match (state == from, swapped) {
                        (true, true) => Some(*to),
                        (false, false) => Some(*state),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
    }

    fn op(invoked: u64, returned: u64, input: In, output: Option<Out>) -> Operation<In, Out> {
        Operation {
            invoked,
            returned,
            input,
            output,
        }
    }

    fn check(history: &[Operation<In, Out>]) -> bool {
        linearizable(&Register, history, 10_000_000).expect("decided")
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let history = [
            op(0, 10, In::Write(1), Some(Out::Ok)),
            op(20, 30, In::Read, Some(Out::Value(0))),
        ];
        assert!(!check(&history));
        // Concurrent with the write, either value is fine.
        let history = [
            op(0, 10, In::Write(1), Some(Out::Ok)),
            op(5, 30, In::Read, Some(Out::Value(0))),
        ];
        assert!(check(&history));
    }

    #[test]
    fn two_winning_compare_and_sets_from_one_value_are_caught() {
        let history = [
            op(0, 10, In::Cas(0, 1), Some(Out::Swapped(true))),
            op(0, 10, In::Cas(0, 2), Some(Out::Swapped(true))),
        ];
        assert!(!check(&history));
        let history = [
            op(0, 10, In::Cas(0, 1), Some(Out::Swapped(true))),
            op(0, 10, In::Cas(1, 2), Some(Out::Swapped(true))),
            op(11, 12, In::Read, Some(Out::Value(2))),
        ];
        assert!(check(&history));
    }

    #[test]
    fn reads_must_agree_on_one_order() {
        // Two writers, two readers seeing them in opposite orders: not linearizable.
        let history = [
            op(0, 100, In::Write(1), Some(Out::Ok)),
            op(0, 100, In::Write(2), Some(Out::Ok)),
            op(10, 20, In::Read, Some(Out::Value(1))),
            op(30, 40, In::Read, Some(Out::Value(2))),
            op(50, 60, In::Read, Some(Out::Value(1))),
        ];
        assert!(!check(&history));
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let took_effect = [
            op(0, 0, In::Write(7), None),
            op(20, 30, In::Read, Some(Out::Value(7))),
        ];
        assert!(check(&took_effect));
        let never = [
            op(0, 0, In::Write(7), None),
            op(20, 30, In::Read, Some(Out::Value(0))),
        ];
        assert!(check(&never));
        // But not both: once seen, it cannot be undone.
        let both = [
            op(0, 0, In::Write(7), None),
            op(20, 30, In::Read, Some(Out::Value(7))),
            op(40, 50, In::Read, Some(Out::Value(0))),
        ];
        assert!(!check(&both));
        // And not before it was invoked.
        let early = [
            op(20, 30, In::Read, Some(Out::Value(7))),
            op(40, 0, In::Write(7), None),
        ];
        assert!(!check(&early));
    }

    #[test]
    fn a_long_bad_history_of_commuting_reads_is_decided_quickly() {
        // 4 readers × 200 rounds of the same value, then a stale read: a search without a
        // cache would try 24^200 orders before answering; this one decides within a million
        // steps.
        let mut history = vec![op(0, 1, In::Write(1), Some(Out::Ok))];
        for round in 0..200u64 {
            for _ in 0..4 {
                history.push(op(
                    10 + round * 10,
                    15 + round * 10,
                    In::Read,
                    Some(Out::Value(1)),
                ));
            }
        }
        history.push(op(5_000, 5_001, In::Read, Some(Out::Value(0))));
        assert_eq!(linearizable(&Register, &history, 1_000_000), Some(false));
    }
}
