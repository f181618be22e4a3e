//! [`NonceBook`]: which nonce a key's next transaction takes, and when the node has lost one.
//!
//! A sender counts its own nonces (the node's pending count lags while its transactions reach the pool) and
//! signs with the larger of its count and the node's. That alone never recovers when the node loses a
//! transaction it had accepted (a mempool emptied by a restart, an eviction; anvil 1.7.1, by its code, drops a
//! transaction it finds invalid at mining together with every one that depends on it): every later transaction
//! of the key waits behind the missing nonce, for ever, and so does every settlement. The book notices it. A
//! read of the node's count is *fresh* when none of this sender's broadcasts completed while it was made, so the
//! node has seen all of them; when fresh reads keep finding the node's count below the sender's for `grace`, the
//! node's count is the truth, and the next transaction takes the missing nonce (it fills the gap, and the
//! transactions queued behind it are mined after it). The sender's own count stays: the node still holds the
//! transactions it signed after the gap.

use std::time::{Duration, Instant};

/// How long fresh reads must find the node behind this sender before the missing nonce is signed again: far
/// more than a load-balanced node's lag behind its siblings, far less than forever.
pub const LOST_NONCE_GRACE: Duration = Duration::from_secs(30);

/// The nonce a transaction is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigned {
    /// The next one in order.
    Next(u64),
    /// A nonce the node lost: this sender signed up to `signed_up_to` (exclusive) but the node counts only
    /// `nonce`.
    FillGap { nonce: u64, signed_up_to: u64 },
}

impl Assigned {
    pub fn nonce(self) -> u64 {
        match self {
            Assigned::Next(nonce) | Assigned::FillGap { nonce, .. } => nonce,
        }
    }
}

/// One key's nonce count in this process. Held under the sender's lock from assignment to broadcast.
#[derive(Debug)]
pub struct NonceBook {
    /// The nonce after the last this process broadcast, while the node is believed to hold them all.
    next: Option<u64>,
    /// Since when fresh reads have found the node's count below `next`.
    behind_since: Option<Instant>,
    grace: Duration,
}

impl NonceBook {
    pub fn new(grace: Duration) -> Self {
        NonceBook { next: None, behind_since: None, grace }
    }

    /// The nonce for the next transaction, given the node's pending count `node`, read `fresh` or not (see the
    /// module), at `now`.
    pub fn assign(&mut self, node: u64, fresh: bool, now: Instant) -> Assigned {
        let next = match self.next {
            Some(next) if next > node => next,
            _ => {
                self.behind_since = None;
                return Assigned::Next(node);
            }
        };
        if !fresh {
            return Assigned::Next(next);
        }
        let since = *self.behind_since.get_or_insert(now);
        if now.duration_since(since) >= self.grace {
            Assigned::FillGap { nonce: node, signed_up_to: next }
        } else {
            Assigned::Next(next)
        }
    }

    /// The transaction signed with `nonce` reached the node.
    pub fn sent(&mut self, nonce: u64) {
        self.next = Some(self.next.map_or(nonce + 1, |next| next.max(nonce + 1)));
    }

    /// The node refused a transaction, or whether it got it is unknown: the node's count is taken next.
    pub fn forget(&mut self) {
        self.next = None;
        self.behind_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn book_at(next: u64) -> NonceBook {
        let mut book = NonceBook::new(GRACE);
        book.sent(next - 1);
        book
    }

    #[test]
    fn the_larger_of_the_two_counts_is_taken() {
        let mut book = NonceBook::new(GRACE);
        let now = Instant::now();
        assert_eq!(book.assign(7, true, now), Assigned::Next(7), "nothing sent yet: the node's count");
        book.sent(7);
        assert_eq!(book.assign(7, false, now), Assigned::Next(8), "the node has not counted ours yet");
        assert_eq!(book.assign(12, true, now), Assigned::Next(12), "another instance sent some");
    }

    #[test]
    fn a_node_behind_is_believed_only_after_the_grace_and_only_on_fresh_reads() {
        let mut book = book_at(10);
        let start = Instant::now();
        assert_eq!(book.assign(6, true, start), Assigned::Next(10), "the first fresh read starts the clock");
        let later = start + GRACE;
        assert_eq!(book.assign(6, false, later), Assigned::Next(10), "a read a broadcast overtook proves nothing");
        assert_eq!(book.assign(6, true, later), Assigned::FillGap { nonce: 6, signed_up_to: 10 });
    }

    #[test]
    fn catching_up_stops_the_clock() {
        let mut book = book_at(10);
        let start = Instant::now();
        book.assign(6, true, start);
        assert_eq!(book.assign(10, true, start + Duration::from_secs(5)), Assigned::Next(10));
        assert_eq!(book.assign(6, true, start + GRACE), Assigned::Next(10), "behind again: a new clock");
    }

    #[test]
    fn filling_a_gap_keeps_the_count_and_fills_the_next_one_at_once() {
        let mut book = book_at(10);
        let start = Instant::now();
        book.assign(6, true, start);
        let fill = book.assign(6, true, start + GRACE);
        book.sent(fill.nonce());
        // The node lost 7 too: the gap is still open, and has been for the whole grace.
        assert_eq!(book.assign(7, true, start + GRACE), Assigned::FillGap { nonce: 7, signed_up_to: 10 });
        book.sent(7);
        // The transactions it kept (8 and 9) follow 7: the node's count is ours again.
        assert_eq!(book.assign(10, true, start + GRACE), Assigned::Next(10));
    }

    #[test]
    fn forgetting_takes_the_node_count_next() {
        let mut book = book_at(10);
        book.forget();
        assert_eq!(book.assign(6, true, Instant::now()), Assigned::Next(6));
    }
}
