//! [`CachedBook`]: a [`ChannelBook`] that remembers the channels this process last read or wrote, so that a
//! channel-paid call's reservation and charge ([`crate::channel::update_channel`]) each cost one round trip to the
//! store (the compare-and-swap) instead of two (a read, then the swap).
//!
//! Invariant: what is remembered is only ever a starting guess. Every write is a compare-and-swap on the row's
//! version, which fails when another instance (or another request here) wrote since; `update_channel` then reads
//! the row and decides again. Reads for decisions that are not writes (`channel`, the lists) always ask the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::channel::{Channel, ChannelBook, ChannelBookError};
use crate::channel_journal::{ChannelTransaction, TransactionState};

/// Past this many channels, the memory starts over (the store has them all).
const REMEMBERED: usize = 10_000;

/// A channel book that remembers the last state of each channel it saw.
pub struct CachedBook {
    book: Arc<dyn ChannelBook>,
    seen: Mutex<HashMap<String, Channel>>,
}

impl std::fmt::Debug for CachedBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedBook").finish_non_exhaustive()
    }
}

impl CachedBook {
    pub fn new(book: Arc<dyn ChannelBook>) -> CachedBook {
        CachedBook { book, seen: Mutex::new(HashMap::new()) }
    }

    fn keep(&self, channel: &Channel) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED && !seen.contains_key(&channel.id) {
            seen.clear();
        }
        seen.insert(channel.id.clone(), channel.clone());
    }

    /// Remembers the row a compare-and-swap from version `expected` wrote, when it was written.
    fn remember_swap(&self, written: bool, swap: Option<(i64, &Channel)>) {
        if written && let Some((expected, next)) = swap {
            self.keep(&Channel { version: expected + 1, ..next.clone() });
        }
    }
}

#[async_trait]
impl ChannelBook for CachedBook {
    async fn channel(&self, id: &str) -> Result<Option<Channel>, ChannelBookError> {
        let channel = self.book.channel(id).await?;
        if let Some(channel) = &channel {
            self.keep(channel);
        }
        Ok(channel)
    }

    async fn open_channel(&self, channel: &Channel) -> Result<bool, ChannelBookError> {
        self.book.open_channel(channel).await
    }

    async fn swap_channel(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError> {
        let swapped = self.book.swap_channel(expected, next).await?;
        self.remember_swap(swapped, Some((expected, next)));
        Ok(swapped)
    }

    async fn channels(&self, limit: u32) -> Result<Vec<Channel>, ChannelBookError> {
        self.book.channels(limit).await
    }

    async fn unclaimed_channels(&self, limit: u32) -> Result<Vec<Channel>, ChannelBookError> {
        self.book.unclaimed_channels(limit).await
    }

    async fn payer_channels(&self, payer: &str, option: &str) -> Result<Vec<Channel>, ChannelBookError> {
        self.book.payer_channels(payer, option).await
    }

    async fn journal_transaction(
        &self,
        transaction: &ChannelTransaction,
        swap: Option<(i64, &Channel)>,
    ) -> Result<bool, ChannelBookError> {
        let written = self.book.journal_transaction(transaction, swap).await?;
        self.remember_swap(written, swap);
        Ok(written)
    }

    async fn decide_transaction(
        &self,
        hash: &str,
        state: TransactionState,
        swap: Option<(i64, &Channel)>,
    ) -> Result<bool, ChannelBookError> {
        let written = self.book.decide_transaction(hash, state, swap).await?;
        self.remember_swap(written, swap);
        Ok(written)
    }

    async fn undecided_transactions(&self, option: &str) -> Result<Vec<ChannelTransaction>, ChannelBookError> {
        self.book.undecided_transactions(option).await
    }

    async fn channel_transactions(&self, limit: u32) -> Result<Vec<ChannelTransaction>, ChannelBookError> {
        self.book.channel_transactions(limit).await
    }

    fn recent(&self, id: &str) -> Option<Channel> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn remember(&self, written: &Channel) {
        self.keep(written);
    }
}
