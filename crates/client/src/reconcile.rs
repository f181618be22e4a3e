//! Settling what a crash left in doubt. A payment that died between signing and the server's answer stays
//! `pending` in the spend log; its signed authorization may or may not have been settled. The chain knows:
//! the token's `authorizationState(payer, nonce)` says whether an ERC-3009 authorization was used (then the
//! `AuthorizationUsed` log gives the transaction), Permit2's `nonceBitmap` whether a Permit2 one was, and an unused
//! one past its `validBefore` (deadline) can never be. A pay-first transfer is decided by its receipt: mined and
//! successful is money spent, reverted is nothing spent. The same pass asks the channels' escrows what they
//! refunded without the payer asking (`channel_refunds.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use paygate_chain::Chain;
use paygate_chain::abi::{AuthorizationUse, authorization_use};
use paygate_chain::upto::permit2_nonce_used;

use crate::spend::{SpendError, SpendLog, SpendRecord, SpendState};

/// How old an unsigned `pending` row must be before it is taken for abandoned (a payment in flight signs
/// within milliseconds of writing its row).
pub const UNSIGNED_GRACE_MS: i64 = 60_000;

/// Why reconciliation stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    SpendLog(#[from] SpendError),
    #[error("row {id}: {message}")]
    Chain { id: i64, message: String },
}

/// What a reconciliation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Settled on chain: now `paid`.
    pub settled: usize,
    /// Never settled and expired, or a pay-first transfer that reverted: now `failed`.
    pub expired: usize,
    /// Never signed (the client died before signing): now `failed`.
    pub unsigned: usize,
    /// Still undecided: not settled yet but still valid, or no chain given for their network.
    pub undecided: usize,
    /// Channels whose escrow refunded the payer without its asking (the seller's idle close): the refund is now
    /// a `refund` row that gives the budgets back what came back.
    pub refunds: usize,
}

/// An authorization's nonce as the spend log keeps it: where the chain records its use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthorizationNonce {
    /// An ERC-3009 authorization's, kept by the token (`0x` + 64 hex digits).
    Erc3009(B256),
    /// A Permit2 authorization's unordered nonce, kept by Permit2 (`permit2:<decimal>`).
    Permit2(U256),
}

impl std::fmt::Display for AuthorizationNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthorizationNonce::Erc3009(nonce) => write!(f, "{nonce:#x}"),
            AuthorizationNonce::Permit2(nonce) => write!(f, "permit2:{nonce}"),
        }
    }
}

impl std::str::FromStr for AuthorizationNonce {
    type Err = String;

    fn from_str(text: &str) -> Result<AuthorizationNonce, String> {
        match text.strip_prefix("permit2:") {
            Some(decimal) => decimal
                .parse()
                .map(AuthorizationNonce::Permit2)
                .map_err(|_| "the Permit2 nonce is not a decimal integer".to_owned()),
            None => {
                text.parse().map(AuthorizationNonce::Erc3009).map_err(|_| "the nonce is not 32 bytes of hex".to_owned())
            }
        }
    }
}

fn chain_id(network: &str) -> Option<u64> {
    network.strip_prefix("eip155:")?.parse().ok()
}

/// What the chain says of a pay-first row's transfer: `Some(true)` mined and successful, `Some(false)`
/// reverted, `None` not mined (it may still be, or never was broadcast).
async fn transfer_outcome(chain: &dyn Chain, row: &SpendRecord) -> Result<Option<bool>, String> {
    let Some(hash) = &row.nonce else { return Ok(None) };
    let hash: B256 = hash.parse().map_err(|_| "the transaction hash is not 32 bytes of hex".to_owned())?;
    Ok(chain.receipt(hash).await.map_err(|e| e.to_string())?.map(|receipt| receipt.status()))
}

async fn settlement(chain: &dyn Chain, row: &SpendRecord) -> Result<Option<(bool, Option<String>)>, String> {
    let (Some(payer), Some(nonce)) = (&row.payer, &row.nonce) else { return Ok(None) };
    let payer: Address = payer.parse().map_err(|_| "payer is not an address".to_owned())?;
    let token: Address = row.asset.parse().map_err(|_| "asset is not an address".to_owned())?;
    match nonce.parse::<AuthorizationNonce>()? {
        AuthorizationNonce::Erc3009(nonce) => {
            match authorization_use(chain, token, payer, nonce).await.map_err(|e| e.to_string())? {
                AuthorizationUse::Unused => Ok(Some((false, None))),
                AuthorizationUse::Used { tx } => Ok(Some((true, tx.map(|h| h.to_string())))),
            }
        }
        // Permit2 logs no use of a nonce: the transaction is not named.
        AuthorizationNonce::Permit2(nonce) => {
            let used = permit2_nonce_used(chain, payer, nonce).await.map_err(|e| e.to_string())?;
            Ok(Some((used, None)))
        }
    }
}

/// Decides every `pending` row of `log` that the chains in `chains` (by chain id) can decide, then records the
/// refunds their channels' escrows made without the payer asking.
pub async fn reconcile(
    log: &SpendLog,
    chains: &HashMap<u64, Arc<dyn Chain>>,
    now_ms: i64,
) -> Result<Reconciled, ReconcileError> {
    let mut done = Reconciled::default();
    for row in log.pending().await? {
        if row.nonce.is_none() {
            if now_ms - row.at_ms > UNSIGNED_GRACE_MS {
                log.finish(row.id, SpendState::Failed, None, Some("reconciled: never signed")).await?;
                done.unsigned += 1;
            } else {
                done.undecided += 1;
            }
            continue;
        }
        let Some(chain) = chain_id(&row.network).and_then(|id| chains.get(&id)) else {
            done.undecided += 1;
            continue;
        };
        let failed = |message| ReconcileError::Chain { id: row.id, message };
        if row.is_transfer() {
            match transfer_outcome(chain.as_ref(), &row).await.map_err(failed)? {
                Some(true) => {
                    let note = Some("reconciled: the transfer was mined");
                    log.finish(row.id, SpendState::Paid, row.nonce.as_deref(), note).await?;
                    done.settled += 1;
                }
                Some(false) => {
                    let note = Some("reconciled: the transfer reverted");
                    log.finish(row.id, SpendState::Failed, row.nonce.as_deref(), note).await?;
                    done.expired += 1;
                }
                None => done.undecided += 1,
            }
            continue;
        }
        match settlement(chain.as_ref(), &row).await.map_err(failed)? {
            Some((true, reference)) => {
                log.finish(row.id, SpendState::Paid, reference.as_deref(), Some("reconciled: settled on chain"))
                    .await?;
                done.settled += 1;
            }
            Some((false, _)) if row.valid_before.is_some_and(|b| b.saturating_mul(1000) < now_ms) => {
                log.finish(row.id, SpendState::Failed, None, Some("reconciled: expired unsettled")).await?;
                done.expired += 1;
            }
            _ => done.undecided += 1,
        }
    }
    // After the pending rows: a deposit decided just now makes its channel's escrow comparable with the log.
    done.refunds = crate::channel_refunds::record_refunds(log, chains).await?;
    Ok(done)
}
