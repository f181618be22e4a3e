//! Refunds the payer did not ask for. A seller closes an idle channel on its own (x402: a `refund` of the unspent
//! deposit; MPP: a `close`), and the rest of the deposit is back in the wallet, but no answer to this client said
//! so, and a seller's word in a 402 proves nothing. The escrow does: for each channel the spend log still expects
//! money back from (its deposits, less what came back and what its last voucher allows, is above zero), the
//! escrow's state gives what was refunded in all, and what the log has not recorded yet becomes one `refund` row,
//! paid, that gives the budgets back exactly that, once.
//!
//! Invariant: the `refund` rows of a channel never add up to more than its escrow refunded. Each is written in a
//! `BEGIN IMMEDIATE` transaction that first reads what is recorded, and the payer's own close subtracts what was
//! recorded while it waited for its seller ([`SpendLog::close_session`]).

use std::collections::HashMap;
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use paygate_chain::{Chain, ChainError, escrow, session_escrow};
use sqlx::{Row, SqliteConnection};

use crate::spend::{SpendError, SpendLog, now_ms, unavailable};

/// What the spend log holds of one channel's money, in atomic units.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChannelMoney {
    channel_id: String,
    /// `x402` or `mpp`: which escrow's state to read.
    protocol: String,
    network: String,
    escrow: String,
    /// What its paid deposits moved into the escrow, and what the budgets counted for them (micro-dollars).
    deposited: u128,
    deposited_usd: u128,
    /// What its `refund` rows gave back.
    refunded: u128,
    /// What its last voucher allows the seller.
    cumulative: u128,
    /// What the spend log says the channel holds (its session's `deposit`: lowered when the seller stated less),
    /// and whether it is open there.
    holds: u128,
    open: bool,
    /// A deposit whose fate is unknown yet: the escrow's state cannot be read against the log until it is decided.
    deposit_pending: bool,
    /// The first deposit row, whose request and asset a refund row repeats.
    first_deposit: i64,
}

impl ChannelMoney {
    /// Whether the log still expects money back from the channel.
    fn owes_payer(&self) -> bool {
        !self.deposit_pending && self.deposited > self.refunded.saturating_add(self.cumulative)
    }

    /// Whether a seller said the channel was refunded, and the log has not recorded it: closed (MPP's 410) or
    /// holding less than its deposits less its refunds (x402's stated balance), while money is still owed.
    fn refund_suspected(&self) -> bool {
        self.owes_payer() && (!self.open || self.holds < self.deposited - self.refunded)
    }
}

/// What the escrow says of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OnChain {
    /// Refunded or withdrawn to the payer, in all.
    refunded: u128,
    /// What the channel still holds, when the escrow keeps it open (x402's channels are never closed).
    holds: Option<u128>,
    /// Finalized: nothing more can be paid from it.
    closed: bool,
}

fn amount(text: &str) -> Result<u128, SpendError> {
    text.parse().map_err(|_| SpendError::Corrupt(format!("amount {text:?}")))
}

/// The money of every channel (or of `only`), from its session and its `deposit` and `refund` rows.
async fn channel_money(db: &mut SqliteConnection, only: Option<&str>) -> Result<Vec<ChannelMoney>, SpendError> {
    let rows = sqlx::query(
        "SELECT s.channel_id, s.network, s.escrow, s.cumulative, s.deposit, s.state AS session_state, l.id, \
         l.protocol, l.kind, l.state, l.amount_atomic, l.usd_micros \
         FROM sessions s JOIN spend_log l ON l.channel_id = s.channel_id \
         WHERE l.kind IN ('deposit', 'refund') AND (? IS NULL OR s.channel_id = ?) ORDER BY l.id",
    )
    .bind(only)
    .bind(only)
    .fetch_all(&mut *db)
    .await
    .map_err(unavailable)?;
    let mut channels: Vec<ChannelMoney> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let text = |c: &str| row.try_get::<String, _>(c).map_err(|e| SpendError::Corrupt(e.to_string()));
        let channel_id = text("channel_id")?;
        let at = match index.get(&channel_id) {
            Some(&at) => at,
            None => {
                index.insert(channel_id.clone(), channels.len());
                channels.push(ChannelMoney {
                    channel_id,
                    protocol: String::new(),
                    network: text("network")?,
                    escrow: text("escrow")?,
                    deposited: 0,
                    deposited_usd: 0,
                    refunded: 0,
                    cumulative: amount(&text("cumulative")?)?,
                    holds: amount(&text("deposit")?)?,
                    open: text("session_state")? == "open",
                    deposit_pending: false,
                    first_deposit: 0,
                });
                channels.len() - 1
            }
        };
        let channel = &mut channels[at];
        let (kind, state, atomic) = (text("kind")?, text("state")?, amount(&text("amount_atomic")?)?);
        match (kind.as_str(), state.as_str()) {
            ("deposit", "paid") => {
                // Saturating: a log edited by hand must not panic here (no real amount comes near 2^128).
                channel.deposited = channel.deposited.saturating_add(atomic);
                let usd: i64 = row.try_get("usd_micros").map_err(|e| SpendError::Corrupt(e.to_string()))?;
                channel.deposited_usd = channel.deposited_usd.saturating_add(u128::from(usd.unsigned_abs()));
            }
            ("deposit", "pending") => channel.deposit_pending = true,
            ("refund", state) if state != "failed" => channel.refunded = channel.refunded.saturating_add(atomic),
            _ => {}
        }
        if kind == "deposit" && channel.first_deposit == 0 {
            channel.first_deposit = row.try_get("id").map_err(|e| SpendError::Corrupt(e.to_string()))?;
            channel.protocol = text("protocol")?;
        }
    }
    Ok(channels)
}

/// What the escrow of `channel` on `chain` says; `None` for a protocol with no escrow to read.
async fn on_chain(chain: &dyn Chain, channel: &ChannelMoney) -> Result<Option<OnChain>, String> {
    let id: B256 = channel.channel_id.parse().map_err(|_| "the channel id is not 32 bytes of hex".to_owned())?;
    let escrow: Address = channel.escrow.parse().map_err(|_| "the escrow is not an address".to_owned())?;
    let read = |e: ChainError| e.to_string();
    Ok(match channel.protocol.as_str() {
        "x402" => {
            // The balance is what was deposited less what was refunded or withdrawn: claims leave it as it is.
            let state = escrow::channel_state(chain, escrow, id).await.map_err(read)?;
            let refunded = channel.deposited.saturating_sub(state.balance);
            Some(OnChain { refunded, holds: Some(state.balance), closed: false })
        }
        "mpp" => {
            let state = session_escrow::channel(chain, escrow, id).await.map_err(read)?;
            let refunded = if state.finalized { state.deposit.saturating_sub(state.settled) } else { 0 };
            Some(OnChain { refunded, holds: None, closed: state.finalized })
        }
        _ => None,
    })
}

/// `usd` micro-dollars scaled to `part` of `whole` atomic units, rounded down (a refund never gives the budgets
/// back more than its share of what they counted).
pub(crate) fn usd_share(usd: u128, part: u128, whole: u128) -> u128 {
    if whole == 0 {
        return 0;
    }
    // In 256 bits: the product of two amounts does not fit in 128.
    let share = U256::from(usd) * U256::from(part) / U256::from(whole);
    u128::try_from(share).unwrap_or(u128::MAX)
}

impl SpendLog {
    /// Records what `chain` says of `channel` in one transaction: a `refund` row for what the escrow refunded
    /// beyond the log's `refund` rows, the channel's deposit lowered to what it holds, and a finalized channel
    /// closed. Nothing when the channel's money moved since it was read. Whether a refund row was written.
    async fn record_chain_refund(&self, read: &ChannelMoney, chain: OnChain) -> Result<bool, SpendError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let now = channel_money(&mut tx, Some(&read.channel_id)).await?;
        let Some(now) = now.first().filter(|now| now.deposited == read.deposited && !now.deposit_pending) else {
            return Ok(false);
        };
        let refund = chain.refunded.min(now.deposited).saturating_sub(now.refunded);
        if refund > 0 {
            let usd = usd_share(now.deposited_usd, refund, now.deposited);
            let usd =
                -i64::try_from(usd).map_err(|_| SpendError::Corrupt("a refund beyond a budget's range".into()))?;
            sqlx::query(
                "INSERT INTO spend_log (at_ms, method, url, host, protocol, network, asset, amount_atomic, usd_micros, \
                 state, kind, channel_id, reference) SELECT ?, method, url, host, protocol, network, asset, ?, ?, \
                 'paid', 'refund', channel_id, 'reconciled: refunded on chain' FROM spend_log WHERE id = ?",
            )
            .bind(now_ms())
            .bind(refund.to_string())
            .bind(usd)
            .bind(now.first_deposit)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        if let Some(holds) = chain.holds.filter(|&holds| now.holds > holds) {
            sqlx::query("UPDATE sessions SET deposit = ? WHERE channel_id = ?")
                .bind(holds.to_string())
                .bind(&read.channel_id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        if chain.closed && now.open {
            sqlx::query("UPDATE sessions SET state = 'closed' WHERE channel_id = ?")
                .bind(&read.channel_id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(refund > 0)
    }

    /// Whether a seller said a channel was refunded and the log has not recorded it yet: then `reconcile` has
    /// something to ask the chain about (`paygate pay` runs it first).
    pub async fn refunds_suspected(&self) -> Result<bool, SpendError> {
        let mut db = self.pool.acquire().await.map_err(unavailable)?;
        Ok(channel_money(&mut db, None).await?.iter().any(ChannelMoney::refund_suspected))
    }

    /// What the `refund` rows of channel `channel_id` gave back, in atomic units.
    pub(crate) async fn refunded(&self, channel_id: &str) -> Result<u128, SpendError> {
        let mut db = self.pool.acquire().await.map_err(unavailable)?;
        refunded_in(&mut db, channel_id).await
    }
}

/// What the `refund` rows of channel `channel_id` gave back, read on `db` (inside a transaction).
pub(crate) async fn refunded_in(db: &mut SqliteConnection, channel_id: &str) -> Result<u128, SpendError> {
    Ok(channel_money(db, Some(channel_id)).await?.first().map_or(0, |c| c.refunded))
}

/// Gives the budgets back what the escrows of the channels in `log` refunded without the payer asking, as far as
/// `chains` (by chain id) can tell. How many channels had such a refund; a chain that cannot be read fails it
/// with the channel's first deposit row.
pub(crate) async fn record_refunds(
    log: &SpendLog,
    chains: &HashMap<u64, Arc<dyn Chain>>,
) -> Result<usize, crate::ReconcileError> {
    let channels = {
        let mut db = log.pool.acquire().await.map_err(unavailable)?;
        channel_money(&mut db, None).await?
    };
    let mut refunds = 0;
    for channel in channels.iter().filter(|c| c.owes_payer()) {
        let chain_id = channel.network.strip_prefix("eip155:").and_then(|id| id.parse::<u64>().ok());
        let Some(chain) = chain_id.and_then(|id| chains.get(&id)) else { continue };
        let failed = |message| crate::ReconcileError::Chain { id: channel.first_deposit, message };
        let Some(state) = on_chain(chain.as_ref(), channel).await.map_err(failed)? else { continue };
        refunds += usize::from(log.record_chain_refund(channel, state).await?);
    }
    Ok(refunds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::{AssetBook, Offer, parse_offers};
    use crate::policy::Policy;
    use crate::spend::{Entry, SpendState};
    use crate::spend_sessions::SessionRecord;

    const CHANNEL: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

    fn offer() -> Offer {
        let body = serde_json::json!({"x402Version": 1, "accepts": [{
            "scheme": "exact", "network": "base", "maxAmountRequired": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "resource": "https://x/y", "maxTimeoutSeconds": 60}]});
        parse_offers(&Default::default(), body.to_string().as_bytes(), &AssetBook::builtin()).unwrap().remove(0)
    }

    fn entry<'a>(offer: &'a Offer, kind: &'static str, amount: u128, usd: i64) -> Entry<'a> {
        Entry { method: "GET", url: "https://x/y", host: "x", offer, amount, usd, kind, channel_id: Some(CHANNEL) }
    }

    /// A log with one channel: 50,000 deposited (paid), 20,000 of it allowed by the last voucher.
    async fn log_with_channel(offer: &Offer) -> (SpendLog, SessionRecord) {
        let log = SpendLog::in_memory().await.unwrap();
        let session = SessionRecord {
            channel_id: CHANNEL.into(),
            host: "x".into(),
            method: "GET".into(),
            url: "https://x/y".into(),
            network: "eip155:8453".into(),
            escrow: "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003".into(),
            payee: offer.pay_to.clone(),
            asset: offer.asset.clone(),
            salt: "0x00".into(),
            deposit: "50000".into(),
            cumulative: "20000".into(),
            state: "open".into(),
            opened_at_ms: 0,
            updated_at_ms: 0,
        };
        let deposit = entry(offer, "deposit", 50_000, 50_000);
        let now = now_ms();
        let voucher = entry(offer, "voucher", 20_000, 0);
        let (id, _) = log.open_session(&Policy::default(), deposit, voucher, &session, now).await.unwrap();
        log.finish(id, SpendState::Paid, None, None).await.unwrap();
        (log, session)
    }

    async fn money(log: &SpendLog) -> ChannelMoney {
        let mut db = log.pool.acquire().await.unwrap();
        channel_money(&mut db, None).await.unwrap().remove(0)
    }

    #[tokio::test]
    async fn a_refund_the_chain_showed_while_the_payer_closed_is_given_back_once() {
        let offer = offer();
        let closed = OnChain { refunded: 30_000, holds: None, closed: true };

        // Found on chain while the payer's close waited for its seller: the close records the rest, nothing.
        let (log, session) = log_with_channel(&offer).await;
        let before = log.refunded(CHANNEL).await.unwrap();
        assert!(money(&log).await.owes_payer());
        assert!(!log.refunds_suspected().await.unwrap(), "nobody said it was refunded");
        assert!(log.record_chain_refund(&money(&log).await, closed).await.unwrap());
        log.close_session(&session, entry(&offer, "refund", 30_000, -30_000), before, "0xabc", now_ms()).await.unwrap();
        assert_eq!(log.refunded(CHANNEL).await.unwrap(), 30_000);
        assert_eq!(log.spent("x", now_ms()).await.unwrap().total, 20_000);
        assert!(!money(&log).await.owes_payer());
        assert!(!log.refunds_suspected().await.unwrap());

        // Closed by the payer first: the chain's refund is the close's, and nothing more is recorded.
        let (log, session) = log_with_channel(&offer).await;
        log.close_session(&session, entry(&offer, "refund", 30_000, -30_000), 0, "0xabc", now_ms()).await.unwrap();
        assert!(!log.record_chain_refund(&money(&log).await, closed).await.unwrap());
        assert_eq!(log.refunded(CHANNEL).await.unwrap(), 30_000);
        assert_eq!(log.spent("x", now_ms()).await.unwrap().total, 20_000);
    }

    #[tokio::test]
    async fn a_refund_is_suspected_where_a_seller_stated_less_or_closed_until_it_is_recorded() {
        let offer = offer();
        let (log, session) = log_with_channel(&offer).await;
        // x402: the seller stated the channel holds 20,000 of the 50,000.
        assert!(log.shrink_session(CHANNEL, 50_000, 20_000).await.unwrap());
        assert!(log.refunds_suspected().await.unwrap());
        let refunded = OnChain { refunded: 30_000, holds: Some(20_000), closed: false };
        assert!(log.record_chain_refund(&money(&log).await, refunded).await.unwrap());
        assert!(!log.refunds_suspected().await.unwrap());

        // MPP: the seller answered 410; the channel is closed in the log with its rest owed.
        let (log, _) = log_with_channel(&offer).await;
        log.forget_session(&session.channel_id).await.unwrap();
        assert!(log.refunds_suspected().await.unwrap());
        let closed = OnChain { refunded: 30_000, holds: None, closed: true };
        assert!(log.record_chain_refund(&money(&log).await, closed).await.unwrap());
        assert!(!log.refunds_suspected().await.unwrap());
    }

    #[tokio::test]
    async fn a_chain_refund_is_recorded_only_against_the_deposits_it_was_read_with() {
        let offer = offer();
        let (log, _) = log_with_channel(&offer).await;
        let read = money(&log).await;
        // A top-up signed since: its fate unknown, the escrow's balance cannot be read against the log.
        let top_up = entry(&offer, "deposit", 50_000, 50_000);
        let (policy, voucher) = (Policy::default(), entry(&offer, "voucher", 10_000, 0));
        log.advance_session(&policy, voucher, Some(top_up), 20_000, 30_000, now_ms()).await.unwrap().unwrap();
        let held = OnChain { refunded: 30_000, holds: Some(20_000), closed: false };
        assert!(!log.record_chain_refund(&read, held).await.unwrap());
        assert_eq!(log.refunded(CHANNEL).await.unwrap(), 0);
        assert!(!money(&log).await.owes_payer(), "a pending deposit leaves the channel undecided");
    }

    #[test]
    fn a_refund_gets_its_share_of_the_budgets_rounded_down_and_exact_for_huge_amounts() {
        assert_eq!(usd_share(50_000, 30_000, 50_000), 30_000);
        assert_eq!(usd_share(10, 1, 3), 3);
        assert_eq!(usd_share(7, 5, 0), 0);
        // 10^24 atomic units of an 18-decimal token worth $1,000,000 (10^12 micro-dollars): a third of it.
        let whole = 10u128.pow(24);
        assert_eq!(usd_share(10u128.pow(12), whole / 3, whole), 333_333_333_333);
        assert_eq!(usd_share(u128::MAX, u128::MAX / 2, u128::MAX), u128::MAX / 2);
        assert_eq!(usd_share(u128::MAX - 1, u128::MAX - 2, u128::MAX), u128::MAX - 3);
    }
}
