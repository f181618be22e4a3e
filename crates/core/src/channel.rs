//! Payment channels as the gateway keeps them: what a payer deposited in escrow, what its vouchers allow, and
//! what the seller charged, reserved and claimed on chain. Every change of a channel is one of the pure
//! transitions here ([`Channel::reserve`], [`Channel::commit`], [`Channel::release`], [`Channel::topped_up`],
//! [`Channel::claimed_on_chain`]), written with one compare-and-swap on the channel's row ([`ChannelBook`]), so
//! that instances sharing a store can never accept more than the deposit.
//!
//! Invariant kept by every transition: `charged + reserved <= min(voucher_max, deposit)`: each call served is
//! covered by a voucher the payer signed and by money in escrow.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel_journal::{ChannelTransaction, TransactionState};
use crate::reject::{RejectKind, Rejection};

/// One channel, as the store keeps it. Amounts are atomic units of the channel's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// The channel id (`0x` + 64 hex digits), unique per escrow and chain.
    pub id: String,
    /// CAIP-2 network.
    pub network: String,
    /// The option (`[[accept]]` name) it pays.
    pub option: String,
    pub payer: String,
    pub receiver: String,
    pub token: String,
    /// What the scheme needs to claim from it later (the x402 `ChannelConfig`).
    pub config: Value,
    /// What the escrow holds for it, as last seen on chain.
    pub deposit: u128,
    /// What the seller claimed on chain so far.
    pub claimed: u128,
    /// The calls served and charged.
    pub charged: u128,
    /// Each call in flight (reserved before the upstream is called, then charged or released), by the cumulative amount of the voucher that pays it (a decimal string), with its
    /// price: a call is charged or released by its voucher, once, so that after a crash the reconciler can tell
    /// a call that was charged from one that was not.
    pub in_flight: BTreeMap<String, u128>,
    /// The highest cumulative amount a voucher allows, and that voucher's signature.
    pub voucher_max: u128,
    pub voucher_signature: String,
    /// The highest voucher whose cumulative amount is at most what is charged: what the seller settles with on
    /// an escrow that pays a voucher's whole amount (MPP `evm` session), so that no payer pays for a call that
    /// was released. `None` until a charge meets a voucher exactly.
    #[serde(default)]
    pub settleable: Option<SignedVoucher>,
    /// The row's version: every write is conditional on it.
    pub version: i64,
    /// When the row last changed (Unix milliseconds), as the store stamped it; ignored when writing.
    pub updated_at_ms: i64,
}

/// A voucher: the cumulative amount its payer allows and the signature (`0x` + hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVoucher {
    #[serde(with = "decimal")]
    pub amount: u128,
    pub signature: String,
}

/// Amounts as decimal strings in JSON: they exceed what JSON numbers carry exactly.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(amount: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&amount.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a channel refuses a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRefusal {
    /// The voucher covers less than what is charged and in flight plus this call; `needed` is what it must say.
    BelowCharged { needed: u128 },
    /// The deposit does not cover this call; `needed` is the cumulative amount the deposit must reach.
    OverDeposit { needed: u128 },
    /// Served but not yet claimed on chain, with this call, would pass the seller's cap for one channel: the call
    /// waits for the next claim.
    OverExposure { cap: u128 },
    /// The call to extend is no longer in flight (charged, released, or taken for abandoned).
    NotInFlight,
}

impl Channel {
    /// Reserves `price` for a call paid by a voucher for `voucher_max` (signature `signature`): the voucher must
    /// cover everything charged and in flight plus this call, and stay within the deposit.
    pub fn reserve(&self, price: u128, voucher_max: u128, signature: &str) -> Result<Channel, ChannelRefusal> {
        if self.is_in_flight(voucher_max) {
            return Ok(self.clone());
        }
        let needed = self.charged.saturating_add(self.reserved()).saturating_add(price);
        if voucher_max < needed {
            return Err(ChannelRefusal::BelowCharged { needed });
        }
        if needed > self.deposit || voucher_max > self.deposit {
            return Err(ChannelRefusal::OverDeposit { needed: needed.max(voucher_max) });
        }
        let mut next = self.clone();
        next.in_flight.insert(voucher_max.to_string(), price);
        if voucher_max > self.voucher_max {
            next.voucher_max = voucher_max;
            next.voucher_signature = signature.to_owned();
        }
        Ok(next)
    }

    /// [`Channel::reserve`], and only while what is charged or in flight but not claimed on chain stays within
    /// `cap` (the seller's exposure to one channel), when there is one.
    pub fn reserve_within(
        &self,
        price: u128,
        voucher_max: u128,
        signature: &str,
        cap: Option<u128>,
    ) -> Result<Channel, ChannelRefusal> {
        let exposure = self.unclaimed().saturating_add(self.reserved()).saturating_add(price);
        if let Some(cap) = cap
            && exposure > cap
        {
            return Err(ChannelRefusal::OverExposure { cap });
        }
        self.reserve(price, voucher_max, signature)
    }

    /// Reserves `more` on top of what the call paid by the voucher for `call` holds: a call paid as it is delivered
    /// (a metered stream) reserves each part just before it is sent, within the highest voucher the channel has
    /// accepted (a payer may sign ahead, or send a voucher while the call runs) and the deposit. A call no longer
    /// in flight cannot grow.
    pub fn extend(&self, call: u128, more: u128) -> Result<Channel, ChannelRefusal> {
        let key = call.to_string();
        let Some(held) = self.in_flight.get(&key) else { return Err(ChannelRefusal::NotInFlight) };
        let needed = self.charged.saturating_add(self.reserved()).saturating_add(more);
        if needed > self.deposit {
            return Err(ChannelRefusal::OverDeposit { needed });
        }
        if needed > self.voucher_max {
            return Err(ChannelRefusal::BelowCharged { needed });
        }
        let mut next = self.clone();
        next.in_flight.insert(key, held.saturating_add(more));
        Ok(next)
    }

    /// Takes a voucher that pays no call of its own (sent while a stream waits for it, or ahead of calls): the
    /// highest the channel accepted rises to `amount` when the deposit covers it; a lower one changes nothing.
    pub fn accept_voucher(&self, amount: u128, signature: &str) -> Result<Channel, ChannelRefusal> {
        if amount > self.deposit {
            return Err(ChannelRefusal::OverDeposit { needed: amount });
        }
        let mut next = self.clone();
        if amount > self.voucher_max {
            next.voucher_max = amount;
            next.voucher_signature = signature.to_owned();
        }
        Ok(next)
    }

    /// Charges the call the voucher for `voucher_max` (signed `signature`) reserved: its upstream answered.
    /// Nothing changes when that call is not in flight (already charged or released).
    pub fn commit(&self, voucher_max: u128, signature: &str) -> Channel {
        self.commit_used(voucher_max, signature, u128::MAX)
    }

    /// [`Channel::commit`] of a call whose price was known only afterwards: it charges what was `used`, at most
    /// what was reserved (the rest goes back).
    pub fn commit_used(&self, voucher_max: u128, signature: &str, used: u128) -> Channel {
        let mut next = self.clone();
        if let Some(price) = next.in_flight.remove(&voucher_max.to_string()) {
            next.charged = self.charged.saturating_add(price.min(used));
            let candidates = [(voucher_max, signature), (self.voucher_max, self.voucher_signature.as_str())];
            for (amount, signature) in candidates {
                let higher = next.settleable.as_ref().is_none_or(|s| amount > s.amount);
                if amount <= next.charged && higher && !signature.is_empty() {
                    next.settleable = Some(SignedVoucher { amount, signature: signature.to_owned() });
                }
            }
        }
        next
    }

    /// Gives back the call the voucher for `voucher_max` reserved: its upstream failed, nothing is charged.
    /// Nothing changes when that call is not in flight.
    pub fn release(&self, voucher_max: u128) -> Channel {
        let mut next = self.clone();
        next.in_flight.remove(&voucher_max.to_string());
        next
    }

    /// What the calls in flight hold: reserved, not yet charged or released.
    pub fn reserved(&self) -> u128 {
        self.in_flight.values().fold(0, |sum, price| sum.saturating_add(*price))
    }

    /// Whether the call paid by the voucher for `voucher_max` is reserved and neither charged nor released.
    pub fn is_in_flight(&self, voucher_max: u128) -> bool {
        self.in_flight.contains_key(&voucher_max.to_string())
    }

    /// The deposit as the chain now says (after a deposit or top-up landed).
    pub fn topped_up(&self, deposit: u128) -> Channel {
        let mut next = self.clone();
        next.deposit = deposit.max(self.deposit);
        next
    }

    /// Closing: what was not charged goes back to the payer, so the deposit becomes what was claimed. Only a
    /// channel with nothing in flight and everything charged claimed can close.
    pub fn closing(&self) -> Option<Channel> {
        if !self.in_flight.is_empty() || self.charged != self.claimed || self.deposit <= self.claimed {
            return None;
        }
        let mut next = self.clone();
        next.deposit = self.claimed;
        Some(next)
    }

    /// Refunding `amount` of what was not charged, as the payer asked (x402 `refund`): the deposit falls by it, so
    /// no voucher can spend the money leaving. Only a channel with nothing in flight, and `amount` at most its
    /// deposit less what it charged; what was charged stays claimable.
    pub fn refunding(&self, amount: u128) -> Option<Channel> {
        if !self.in_flight.is_empty() || amount == 0 || self.deposit.saturating_sub(self.charged) < amount {
            return None;
        }
        let mut next = self.clone();
        next.deposit -= amount;
        Some(next)
    }

    /// A refund that failed on chain: its amount is back in the deposit.
    pub fn refund_failed(&self, amount: u128) -> Channel {
        let mut next = self.clone();
        next.deposit = self.deposit.saturating_add(amount);
        next
    }

    /// Closed on chain with `settled` paid to the seller and the rest refunded: nothing is left to spend. What
    /// was charged beyond `settled` (calls no voucher met exactly) stays visible as unclaimed.
    pub fn closed(&self, settled: u128) -> Channel {
        let mut next = self.claimed_on_chain(settled);
        next.deposit = next.claimed;
        next
    }

    /// What the chain says was claimed (after a claim landed).
    pub fn claimed_on_chain(&self, claimed: u128) -> Channel {
        let mut next = self.clone();
        next.claimed = claimed.max(self.claimed);
        next
    }

    /// What an operator sees of the channel (`paygate ledger --channels`, `GET /api/channels`): amounts as decimal
    /// strings of atomic units, and what is charged but not claimed (`unclaimed`).
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "id": self.id, "option": self.option, "network": self.network, "payer": self.payer,
            "receiver": self.receiver, "token": self.token, "deposit": self.deposit.to_string(),
            "charged": self.charged.to_string(), "reserved": self.reserved().to_string(),
            "claimed": self.claimed.to_string(), "unclaimed": self.unclaimed().to_string(),
            "updated_at_ms": self.updated_at_ms,
        })
    }

    /// Charged but not yet claimed on chain: the seller's exposure to this payer.
    pub fn unclaimed(&self) -> u128 {
        self.charged.saturating_sub(self.claimed)
    }
}

/// Where channels are kept: the store, shared by every instance.
#[async_trait]
pub trait ChannelBook: Send + Sync {
    /// The channel `id`, if the gateway knows it.
    async fn channel(&self, id: &str) -> Result<Option<Channel>, ChannelBookError>;

    /// Adds a channel whose deposit is on chain; `false` when it is already known (nothing is changed).
    async fn open_channel(&self, channel: &Channel) -> Result<bool, ChannelBookError>;

    /// Writes `next` if the row's version is still `expected` (the written row's version is `expected + 1`);
    /// `false` when another writer came first.
    async fn swap_channel(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError>;

    /// Every channel, most recently changed first.
    async fn channels(&self, limit: u32) -> Result<Vec<Channel>, ChannelBookError>;

    /// Channels with value charged but not claimed on chain, oldest first.
    async fn unclaimed_channels(&self, limit: u32) -> Result<Vec<Channel>, ChannelBookError>;

    /// The channels of `payer` (checksummed) that pay option `option`.
    async fn payer_channels(&self, payer: &str, option: &str) -> Result<Vec<Channel>, ChannelBookError>;

    /// Journals `transaction` (state `sent`) before it is broadcast and, in the same write, swaps its channel
    /// from version `expected` to `next` when given (a refund lowering the deposit). `false`, with nothing
    /// written, when the swap lost to another writer.
    async fn journal_transaction(
        &self,
        transaction: &ChannelTransaction,
        swap: Option<(i64, &Channel)>,
    ) -> Result<bool, ChannelBookError>;

    /// Records what the chain decided of the journaled transaction `hash` and, in the same write, swaps its
    /// channel when given (a failed refund giving the deposit back). `false`, with nothing written, when the
    /// transaction was already decided or the swap lost.
    async fn decide_transaction(
        &self,
        hash: &str,
        state: TransactionState,
        swap: Option<(i64, &Channel)>,
    ) -> Result<bool, ChannelBookError>;

    /// The journaled transactions of option `option` the chain has not decided yet, oldest first.
    async fn undecided_transactions(&self, option: &str) -> Result<Vec<ChannelTransaction>, ChannelBookError>;

    /// The journaled transactions of every option, most recent first: what `paygate ledger --transactions` and
    /// `GET /api/channels` show.
    async fn channel_transactions(&self, limit: u32) -> Result<Vec<ChannelTransaction>, ChannelBookError>;

    /// The channel `id` as this process last read or wrote it, without asking the store: what [`update_channel`]
    /// tries first, its compare-and-swap telling whether it was still current ([`crate::channel_cache`]).
    /// `None` when the book remembers nothing.
    fn recent(&self, _id: &str) -> Option<Channel> {
        None
    }

    /// Remembers `written`, the channel as a write of [`update_channel_writing`] left it (which may be a write
    /// this book did not make itself: a charge written with its ledger row), for [`ChannelBook::recent`]. A book
    /// that remembers nothing ignores it.
    fn remember(&self, _written: &Channel) {}
}

/// A store that could not answer.
#[derive(Debug, thiserror::Error)]
#[error("channel store unavailable")]
pub struct ChannelBookError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// How many times a transition is retried when other writers keep coming first.
const SWAP_ATTEMPTS: usize = 1000;

/// How a channel's next state is written: a compare-and-swap from version `expected`, `false` when another
/// writer came first (nothing written). [`ChannelBook::swap_channel`] alone, or with the write that goes with it
/// (the paid call's ledger row: `crate::method::SettleJournal::settled_with_channel`).
#[async_trait]
pub trait ChannelWrite: Send + Sync {
    async fn write(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError>;
}

/// The channel's swap alone.
pub struct SwapOnly<'a>(pub &'a dyn ChannelBook);

#[async_trait]
impl ChannelWrite for SwapOnly<'_> {
    async fn write(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError> {
        self.0.swap_channel(expected, next).await
    }
}

/// Applies `transition` to channel `id` with compare-and-swap, reading again when another writer came first.
/// `Ok(None)` when the channel is unknown.
pub async fn update_channel<T>(
    book: &dyn ChannelBook,
    id: &str,
    transition: impl Fn(&Channel) -> Result<Channel, T>,
) -> Result<Option<Result<Channel, T>>, ChannelBookError> {
    update_channel_writing(book, id, transition, &SwapOnly(book)).await
}

/// [`update_channel`], each attempt written by `write`. A transition that changes nothing writes nothing.
pub async fn update_channel_writing<T>(
    book: &dyn ChannelBook,
    id: &str,
    transition: impl Fn(&Channel) -> Result<Channel, T>,
    write: &dyn ChannelWrite,
) -> Result<Option<Result<Channel, T>>, ChannelBookError> {
    let written = |next: Channel, expected: i64| {
        let written = Channel { version: expected + 1, ..next };
        book.remember(&written);
        Ok(Some(Ok(written)))
    };
    // First from the channel as this process last saw it: a write that wins the compare-and-swap proves it was
    // current, one round trip instead of two. Anything else it leads to (a refusal, nothing to change, a lost
    // swap) is decided again on the row as the store has it.
    if let Some(recent) = book.recent(id)
        && let Ok(next) = transition(&recent)
        && next != recent
        && write.write(recent.version, &next).await?
    {
        return written(next, recent.version);
    }
    for _ in 0..SWAP_ATTEMPTS {
        let Some(current) = book.channel(id).await? else { return Ok(None) };
        let next = match transition(&current) {
            Ok(next) => next,
            Err(refusal) => return Ok(Some(Err(refusal))),
        };
        if next == current {
            return Ok(Some(Ok(current)));
        }
        if write.write(current.version, &next).await? {
            return written(next, current.version);
        }
    }
    Err(ChannelBookError("the channel is too busy: no write won in time".into()))
}

impl From<ChannelBookError> for Rejection {
    fn from(_: ChannelBookError) -> Rejection {
        Rejection::new(RejectKind::StoreUnavailable, "store_unavailable", "the payment store is unavailable; try again")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(deposit: u128) -> Channel {
        Channel {
            id: "0x01".into(),
            network: "eip155:31337".into(),
            option: "usdc".into(),
            payer: "0xpayer".into(),
            receiver: "0xseller".into(),
            token: "0xtoken".into(),
            config: Value::Null,
            deposit,
            claimed: 0,
            charged: 0,
            voucher_max: 0,
            voucher_signature: String::new(),
            settleable: None,
            version: 0,
            updated_at_ms: 0,
            in_flight: BTreeMap::new(),
        }
    }

    #[test]
    fn a_call_is_reserved_then_charged_or_released_once_by_its_voucher() {
        let open = channel(3000);
        let held = open.reserve(1000, 1000, "0xsig1").unwrap();
        assert_eq!((held.reserved(), held.charged, held.voucher_max), (1000, 0, 1000));
        assert!(held.is_in_flight(1000));
        assert_eq!(held.reserve(1000, 1000, "0xsig1").unwrap(), held, "reserving the same voucher again is a no-op");
        let charged = held.commit(1000, "0xsig1");
        assert_eq!((charged.reserved(), charged.charged), (0, 1000));
        assert!(!charged.is_in_flight(1000));
        assert_eq!(charged.commit(1000, "0xsig1"), charged, "a call is charged once");
        assert_eq!(charged.release(1000), charged, "a charged call is not given back");
        let second = charged.reserve(1000, 2000, "0xsig2").unwrap();
        assert_eq!((second.release(2000).charged, second.release(2000).reserved()), (1000, 0));
        assert_eq!(second.voucher_signature, "0xsig2");
    }

    #[test]
    fn the_exposure_cap_holds_calls_until_a_claim() {
        let open = channel(10_000);
        let two = open.reserve_within(1000, 1000, "a", Some(2000)).unwrap().commit(1000, "a");
        let two = two.reserve_within(1000, 2000, "b", Some(2000)).unwrap();
        assert_eq!(two.reserve_within(1000, 3000, "c", Some(2000)), Err(ChannelRefusal::OverExposure { cap: 2000 }));
        assert!(two.reserve_within(1000, 3000, "c", None).is_ok(), "no cap, no limit");
        let claimed = two.commit(2000, "b").claimed_on_chain(2000);
        assert!(claimed.reserve_within(1000, 3000, "c", Some(2000)).is_ok(), "a claim makes room");
    }

    #[test]
    fn vouchers_must_cover_what_is_charged_and_in_flight_and_the_deposit_caps_it() {
        let open = channel(2000);
        let one = open.reserve(1000, 1000, "a").unwrap();
        // A second call in flight needs a voucher for 2000.
        assert_eq!(one.reserve(1000, 999, "a"), Err(ChannelRefusal::BelowCharged { needed: 2000 }));
        let two = one.reserve(1000, 2000, "b").unwrap();
        assert_eq!(two.reserve(1000, 3000, "c"), Err(ChannelRefusal::OverDeposit { needed: 3000 }));
        // A lower voucher never replaces a higher one.
        let back = two.commit(1000, "a").commit(2000, "b").topped_up(9000).reserve(1000, 9000, "d").unwrap();
        let after = back.commit(9000, "d").reserve(1000, 4000, "e").unwrap();
        assert_eq!((after.voucher_max, after.voucher_signature.as_str()), (9000, "d"));
        assert_eq!(after.unclaimed(), 3000);
        // Closing needs nothing in flight and everything charged claimed; it leaves the deposit at what was claimed.
        assert_eq!(after.closing(), None);
        let settled = after.commit(4000, "e").claimed_on_chain(4000);
        assert_eq!(settled.closing().map(|c| (c.deposit, c.charged, c.claimed)), Some((4000, 4000, 4000)));
        assert_eq!(settled.closing().unwrap().closing(), None, "a closed channel has nothing to give back");
    }

    #[test]
    fn a_refund_takes_only_what_was_not_charged_and_waits_for_calls_in_flight() {
        let charged = channel(5000).reserve(1000, 1000, "a").unwrap().commit(1000, "a");
        assert_eq!(charged.refunding(1500).map(|c| (c.deposit, c.charged)), Some((3500, 1000)));
        assert_eq!(charged.refunding(4000).map(|c| c.deposit), Some(1000), "all that was not charged");
        assert_eq!(charged.refunding(4001), None, "never what was charged");
        assert_eq!(charged.refunding(0), None);
        let busy = charged.reserve(1000, 2000, "b").unwrap();
        assert_eq!(busy.refunding(1), None, "a call in flight may still be charged");
    }

    #[test]
    fn the_settleable_voucher_never_exceeds_what_is_charged() {
        let open = channel(10_000);
        // Two calls in flight; the second (voucher 2000) is answered first: 1000 charged, no voucher says 1000.
        let two = open.reserve(1000, 1000, "a").unwrap().reserve(1000, 2000, "b").unwrap();
        let first = two.commit(2000, "b");
        assert_eq!((first.charged, first.settleable.clone()), (1000, None));
        // The other is charged: 2000, and the highest voucher says exactly that.
        let both = first.commit(1000, "a");
        assert_eq!(both.settleable, Some(SignedVoucher { amount: 2000, signature: "b".into() }));
        // A call whose upstream failed is released: its voucher (3000) is never what the seller settles with.
        let failed = both.reserve(1000, 3000, "c").unwrap().release(3000);
        let next = failed.reserve(1000, 4000, "d").unwrap().commit(4000, "d");
        assert_eq!((next.charged, next.settleable.as_ref().map(|s| s.amount)), (3000, Some(2000)));
        assert_eq!(next.reserve(1000, 3999, "e"), Err(ChannelRefusal::BelowCharged { needed: 4000 }));
        // A voucher signed ahead (5000 while 4000 is charged) waits: the seller settles 2000 until one meets
        // what is charged, here the same voucher paying the next call.
        let ahead = next.reserve(1000, 5000, "f").unwrap().commit(5000, "f");
        assert_eq!((ahead.charged, ahead.settleable.as_ref().map(|s| s.amount)), (4000, Some(2000)));
        let met = ahead.reserve(1000, 5000, "f").unwrap().commit(5000, "f");
        assert_eq!(met.settleable, Some(SignedVoucher { amount: 5000, signature: "f".into() }));
    }

    #[test]
    fn a_stream_grows_its_reservation_within_the_highest_voucher_and_the_deposit() {
        let open = channel(1000);
        // The stream's first part is paid by its own voucher (100); the rest waits for more.
        let held = open.reserve(10, 100, "a").unwrap();
        let grown = held.extend(100, 90).unwrap();
        assert_eq!((grown.reserved(), grown.charged), (100, 0));
        assert_eq!(grown.extend(100, 10), Err(ChannelRefusal::BelowCharged { needed: 110 }));
        // A voucher sent while the stream waits lets it go on; one lower than the highest changes nothing.
        let signed = grown.accept_voucher(300, "b").unwrap();
        assert_eq!(signed.accept_voucher(200, "c").unwrap(), signed);
        assert_eq!(signed.accept_voucher(1001, "d"), Err(ChannelRefusal::OverDeposit { needed: 1001 }));
        let more = signed.extend(100, 200).unwrap();
        assert_eq!(more.extend(100, 1000), Err(ChannelRefusal::OverDeposit { needed: 1300 }));
        // The end charges what was delivered; the settleable voucher is the one that meets it exactly.
        let done = more.commit_used(100, "a", 300);
        assert_eq!((done.charged, done.reserved()), (300, 0));
        assert_eq!(done.settleable.as_ref().map(|s| (s.amount, s.signature.as_str())), Some((300, "b")));
        assert_eq!(done.extend(100, 1), Err(ChannelRefusal::NotInFlight), "an ended stream cannot grow");
    }

    #[test]
    fn a_metered_call_is_charged_what_it_used_never_more_than_reserved() {
        let open = channel(10_000);
        let held = open.reserve(1000, 1000, "a").unwrap();
        let used = held.commit_used(1000, "a", 300);
        assert_eq!((used.charged, used.reserved()), (300, 0));
        let capped = open.reserve(1000, 1000, "a").unwrap().commit_used(1000, "a", 5000);
        assert_eq!(capped.charged, 1000, "usage above the reservation is capped");
        let nothing = open.reserve(1000, 1000, "a").unwrap().commit_used(1000, "a", 0);
        assert_eq!((nothing.charged, nothing.reserved()), (0, 0));
    }
}
