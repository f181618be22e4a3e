//! What an option answering when its settlement is submitted (`wait = "submitted"`) has served but the chain has
//! not confirmed yet, per payer: the value at risk if a submitted transfer never lands. Under the operator's cap
//! a payment is answered once the node took its transfer; a payer over the cap waits for confirmation, as with
//! `wait = "confirmed"`. Kept in this process (each instance caps what it answered for).

use std::collections::HashMap;
use std::sync::Mutex;

use alloy::primitives::Address;

/// Unconfirmed value per payer, within a cap.
#[derive(Debug, Default)]
pub(crate) struct Unconfirmed {
    /// The most one payer may have unconfirmed; no cap when `None`.
    cap: Option<u128>,
    by_payer: Mutex<HashMap<Address, u128>>,
}

impl Unconfirmed {
    pub(crate) fn new(cap: Option<u128>) -> Unconfirmed {
        Unconfirmed { cap, by_payer: Mutex::default() }
    }

    /// Counts `amount` as unconfirmed for `payer` if that stays within the cap; whether it did.
    pub(crate) fn take(&self, payer: Address, amount: u128) -> bool {
        let mut by_payer = self.by_payer.lock().unwrap_or_else(|p| p.into_inner());
        let unconfirmed = by_payer.entry(payer).or_default();
        let after = unconfirmed.saturating_add(amount);
        if self.cap.is_some_and(|cap| after > cap) {
            return false;
        }
        *unconfirmed = after;
        true
    }

    /// `amount` of `payer`'s was confirmed (or decided otherwise).
    pub(crate) fn release(&self, payer: Address, amount: u128) {
        let mut by_payer = self.by_payer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(unconfirmed) = by_payer.get_mut(&payer) {
            *unconfirmed = unconfirmed.saturating_sub(amount);
            if *unconfirmed == 0 {
                by_payer.remove(&payer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payer_over_the_cap_waits_until_earlier_payments_are_confirmed() {
        let payer = Address::repeat_byte(1);
        let unconfirmed = Unconfirmed::new(Some(20));
        assert!(unconfirmed.take(payer, 10) && unconfirmed.take(payer, 10));
        assert!(!unconfirmed.take(payer, 1), "over the cap");
        assert!(unconfirmed.take(Address::repeat_byte(2), 20), "the cap is per payer");
        unconfirmed.release(payer, 10);
        assert!(unconfirmed.take(payer, 10));
        assert!(Unconfirmed::new(None).take(payer, u128::MAX), "no cap");
    }
}
