//! Settling what a crash left in doubt. A payment that died between signing and the server's answer stays
//! `pending` in the spend log; its signed authorization may or may not have been settled. The chain knows:
//! the token's `authorizationState(payer, nonce)` says whether it was used (then the `AuthorizationUsed` log
//! gives the transaction), and an unused one past its `validBefore` can never be. A pay-first transfer is
//! decided by its receipt: mined and successful is money spent, reverted is nothing spent.

use std::collections::HashMap;
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use paygate_chain::Chain;
use paygate_chain::abi::{AuthorizationUse, authorization_use};

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
    let nonce: B256 = nonce.parse().map_err(|_| "nonce is not 32 bytes of hex".to_owned())?;
    let token: Address = row.asset.parse().map_err(|_| "asset is not an address".to_owned())?;
    match authorization_use(chain, token, payer, nonce).await.map_err(|e| e.to_string())? {
        AuthorizationUse::Unused => Ok(Some((false, None))),
        AuthorizationUse::Used { tx } => Ok(Some((true, tx.map(|h| h.to_string())))),
    }
}

/// Decides every `pending` row of `log` that the chains in `chains` (by chain id) can decide.
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
    Ok(done)
}
