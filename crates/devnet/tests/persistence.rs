//! The state file: a devnet restarted on it continues the same chain (balances, nonces, token storage, old
//! receipts and logs), and a file that is not a devnet state of this chain is refused with an error.

mod common;

use std::sync::Arc;

use alloy::primitives::U256;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::{Chain, TxSender, devtoken};
use paygate_devnet::{DEFAULT_CHAIN_ID, Devnet, DevnetConfig, DevnetError};

use common::{authorization, mined};

fn config(path: &std::path::Path) -> DevnetConfig {
    DevnetConfig { state_file: Some(path.to_owned()), ..DevnetConfig::default() }
}

#[tokio::test]
async fn a_restart_on_the_state_file_keeps_balances_nonces_and_receipts() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("devnet.json");
    let token = devtoken::test_usdc_address();
    let (payer, payee, settler) =
        (devtoken::dev_account(1).address(), devtoken::dev_account(9).address(), devtoken::dev_account(0).address());

    let first = Arc::new(Devnet::new(config(&path)).unwrap());
    assert!(path.exists(), "the genesis state is saved at once");
    let auth = authorization(1, payee, 777, DEFAULT_CHAIN_ID);
    let sender = TxSender::new(first.clone(), devtoken::dev_account(0));
    let hash = sender.send(token, auth.transfer_call()).await.unwrap();
    let receipt = mined(first.as_ref(), hash).await;
    assert!(receipt.status());
    let payer_balance = devtoken::balance_of(first.as_ref(), token, payer).await.unwrap();
    let settler_eth = first.balance(settler);
    let block_time = first.block_timestamp(1).await.unwrap();
    drop(sender);
    drop(first);

    let second = Arc::new(Devnet::new(config(&path)).unwrap());
    assert_eq!(second.block_number().await.unwrap(), 1);
    assert_eq!(second.block_timestamp(1).await.unwrap(), block_time);
    assert_eq!(second.receipt(hash).await.unwrap(), Some(receipt), "the old receipt, unchanged");
    assert_eq!(devtoken::balance_of(second.as_ref(), token, payer).await.unwrap(), payer_balance);
    assert_eq!(
        devtoken::balance_of(second.as_ref(), token, payee).await.unwrap(),
        U256::from(1_000_000_000_000u64 + 777)
    );
    assert_eq!(second.balance(settler), settler_eth);
    assert_eq!(second.pending_nonce(settler).await.unwrap(), 1);
    let used = Filter::new()
        .address(token)
        .event_signature(Eip3009Token::AuthorizationUsed::SIGNATURE_HASH)
        .topic1(payer.into_word())
        .topic2(auth.nonce)
        .from_block(0);
    assert_eq!(second.logs(used).await.unwrap().len(), 1, "old logs are still found");

    // The token's storage came back too: the authorization stays used, and the chain goes on from nonce 1.
    let replay = second.call(
        alloy::rpc::types::TransactionRequest::default().from(settler).to(token).input(auth.transfer_call().into()),
    );
    assert!(replay.await.is_err(), "the used authorization still reverts after the restart");
    let sender = TxSender::new(second.clone(), devtoken::dev_account(0));
    let again = authorization(1, payee, 1, DEFAULT_CHAIN_ID);
    let hash = sender.send(token, again.transfer_call()).await.unwrap();
    assert_eq!(mined(second.as_ref(), hash).await.block_number, Some(2));
    assert_eq!(second.pending_nonce(settler).await.unwrap(), 2);
    drop(sender);
    drop(second);

    let third = Devnet::new(config(&path)).unwrap();
    assert_eq!(third.block_number().await.unwrap(), 2, "the block mined after the restart was saved too");
    let leftovers: Vec<_> =
        std::fs::read_dir(directory.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["devnet.json"], "no temporary file is left behind");
}

#[test]
fn a_state_file_of_another_chain_or_not_a_state_at_all_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("devnet.json");
    Devnet::new(config(&path)).unwrap();
    let other_chain = DevnetConfig { chain_id: 5, ..config(&path) };
    assert!(matches!(
        Devnet::new(other_chain),
        Err(DevnetError::ChainIdMismatch { file: DEFAULT_CHAIN_ID, config: 5, .. })
    ));

    for garbage in ["", "{}", "not json", r#"{"version":1,"chain_id":402402,"accounts":{},"blocks":[],"receipts":[]}"#]
    {
        std::fs::write(&path, garbage).unwrap();
        let result = Devnet::new(config(&path));
        assert!(matches!(result, Err(DevnetError::Corrupt { .. })), "{garbage:?} gave {result:?}");
    }

    let unwritable = directory.path().join("missing-directory").join("devnet.json");
    assert!(matches!(Devnet::new(config(&unwritable)), Err(DevnetError::Write { .. })));
}
