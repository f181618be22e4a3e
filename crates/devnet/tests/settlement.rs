//! Payments on the devnet the way paygate makes them: EIP-3009 authorizations signed with the repository's
//! signing code, settled through `TxSender` and through the gateway's own EIP-3009 rail, replays refused,
//! and many settlements at once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::SolEvent;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::{Chain, ChainError, SendError, TxSender, devtoken};
use paygate_core::clock::SystemClock;
use paygate_core::method::{Asset, Eip712Domain, PaymentMethod, PaymentOption, Proof, SettleOutcome};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::RejectKind;
use paygate_devnet::{DEFAULT_CHAIN_ID, Devnet, DevnetConfig};
use paygate_methods::eip3009::{Eip3009Method, Settlement};
use serde_json::json;

use common::{authorization, mined, transfer};

async fn usdc(chain: &dyn Chain, index: u32) -> U256 {
    devtoken::balance_of(chain, devtoken::test_usdc_address(), devtoken::dev_account(index).address()).await.unwrap()
}

#[tokio::test]
async fn a_transfer_with_authorization_is_mined_logged_and_cannot_be_replayed() {
    let devnet = Arc::new(Devnet::new(DevnetConfig::default()).unwrap());
    let chain: Arc<dyn Chain> = devnet.clone();
    let token = devtoken::test_usdc_address();
    let (payer, payee, settler) = (devtoken::dev_account(1), devtoken::dev_account(9), devtoken::dev_account(0));
    let (payer_before, payee_before) = (usdc(chain.as_ref(), 1).await, usdc(chain.as_ref(), 9).await);
    let settler_eth_before = devnet.balance(settler.address());

    let auth = authorization(1, payee.address(), 12_345, DEFAULT_CHAIN_ID);
    let call = auth.transfer_call();
    let simulation = TransactionRequest::default().from(settler.address()).to(token).input(call.clone().into());
    chain.call(simulation.clone()).await.expect("the authorization simulates");

    let sender = TxSender::new(chain.clone(), settler.clone());
    let hash = sender.send(token, call.clone()).await.expect("sent");
    let receipt = mined(chain.as_ref(), hash).await;
    assert!(receipt.status(), "status 1");
    assert_eq!(receipt.transaction_hash, hash);
    assert_eq!(receipt.from, settler.address());
    assert_eq!(receipt.to, Some(token));
    assert_eq!(receipt.block_number, Some(1));
    let effective_price = u128::from(paygate_devnet::BASE_FEE_PER_GAS) + paygate_devnet::PRIORITY_FEE_PER_GAS;
    assert_eq!(receipt.effective_gas_price, effective_price, "base fee plus the suggested tip");
    assert!(receipt.gas_used > 21_000);

    // Exactly the amount moved, and the settler paid exactly gas used times the effective price in ETH.
    assert_eq!(usdc(chain.as_ref(), 1).await, payer_before - U256::from(12_345));
    assert_eq!(usdc(chain.as_ref(), 9).await, payee_before + U256::from(12_345));
    let fee = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    assert_eq!(devnet.balance(settler.address()), settler_eth_before - fee);
    assert_eq!(chain.pending_nonce(settler.address()).await.unwrap(), 1);

    // Both events, through eth_getLogs as the testkit and the reconciler filter them.
    let transfers = Filter::new()
        .address(token)
        .event_signature(Eip3009Token::Transfer::SIGNATURE_HASH)
        .topic1(payer.address().into_word())
        .topic2(payee.address().into_word())
        .from_block(0);
    let logs = chain.logs(transfers).await.unwrap();
    assert_eq!(logs.len(), 1);
    let transfer_log = &logs[0];
    assert_eq!(transfer_log.transaction_hash, Some(hash));
    assert_eq!(transfer_log.block_number, Some(1));
    assert_eq!(transfer_log.block_hash, receipt.block_hash);
    let decoded = Eip3009Token::Transfer::decode_log_data(&transfer_log.inner.data).unwrap();
    assert_eq!(decoded.value, U256::from(12_345));
    let used = Filter::new()
        .address(token)
        .event_signature(Eip3009Token::AuthorizationUsed::SIGNATURE_HASH)
        .topic1(payer.address().into_word())
        .topic2(auth.nonce)
        .from_block(0);
    let logs = chain.logs(used).await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].transaction_hash, Some(hash));
    assert_eq!(receipt.inner.logs().len(), 2, "the receipt carries both logs");
    assert!(chain.logs(Filter::new().address(token).from_block(2)).await.unwrap().is_empty(), "none after block 1");

    // The token records the authorization as used, and a replay reverts with the token's reason.
    let state = Eip3009Token::authorizationStateCall { authorizer: payer.address(), nonce: auth.nonce };
    let out = chain
        .call(TransactionRequest::default().to(token).input(alloy::sol_types::SolCall::abi_encode(&state).into()))
        .await
        .unwrap();
    assert!(<Eip3009Token::authorizationStateCall as alloy::sol_types::SolCall>::abi_decode_returns(&out).unwrap());
    let replay = chain.call(simulation.clone()).await;
    let expected = "execution reverted: FiatTokenV2: authorization is used or canceled";
    match replay {
        Err(ChainError::Reverted { message, data }) => {
            assert_eq!(message, expected);
            assert!(data.is_some());
        }
        other => panic!("the replay simulated as {other:?}"),
    }
    assert_eq!(sender.send(token, call).await, Err(SendError::WouldRevert(expected.into())));
    assert_eq!(chain.block_number().await.unwrap(), 1, "the replay was never mined");

    // ecrecover really checks: an authorization signed for another chain does not recover to the payer.
    let foreign = authorization(1, payee.address(), 1, 1);
    let request = TransactionRequest::default().to(token).input(foreign.transfer_call().into());
    match chain.call(request).await {
        Err(ChainError::Reverted { message, .. }) => {
            assert_eq!(message, "execution reverted: FiatTokenV2: invalid signature");
        }
        other => panic!("a signature for chain 1 simulated as {other:?}"),
    }
}

#[tokio::test]
async fn the_gateways_eip3009_rail_verifies_and_settles_on_the_devnet_unchanged() {
    let devnet = Arc::new(Devnet::new(DevnetConfig::default()).unwrap());
    let chain: Arc<dyn Chain> = devnet.clone();
    let payee = devtoken::dev_account(9).address();
    let option = PaymentOption {
        name: "usdc-devnet".into(),
        network: Network::Evm(DEFAULT_CHAIN_ID),
        asset: Asset {
            address: devtoken::test_usdc_address().to_checksum(None),
            symbol: devtoken::TEST_USDC_SYMBOL.into(),
            decimals: devtoken::TEST_USDC_DECIMALS,
            usd: true,
            eip712: Some(Eip712Domain {
                name: devtoken::TEST_USDC_NAME.into(),
                version: devtoken::TEST_USDC_VERSION.into(),
            }),
        },
        pay_to: payee.to_checksum(None),
        max_timeout_secs: 60,
    };
    let settlement = Settlement::Builtin {
        sender: Arc::new(TxSender::new(chain.clone(), devtoken::dev_account(0))),
        receipt_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
    };
    let rail = Eip3009Method::new(option, Some(chain.clone()), settlement, Arc::new(SystemClock)).unwrap();
    let before = usdc(chain.as_ref(), 9).await;

    let payload = json!(authorization(2, payee, 10_000, DEFAULT_CHAIN_ID).to_x402());
    let proof = Proof::X402 { version: 2, payload: &payload };
    let verified = rail.verify(proof, AtomicAmount(10_000)).await.expect("verified by simulation on the devnet");
    match rail.settle(&verified).await {
        SettleOutcome::Settled { reference } => {
            let receipt = chain.receipt(reference.parse().unwrap()).await.unwrap().expect("a receipt");
            assert!(receipt.status());
        }
        other => panic!("settlement ended {other:?}"),
    }
    assert_eq!(usdc(chain.as_ref(), 9).await, before + U256::from(10_000));

    // The same authorization again: the rail's diagnosis reads authorizationState and calls it a replay.
    let rejection = rail.verify(proof, AtomicAmount(10_000)).await.unwrap_err();
    assert_eq!(rejection.kind, RejectKind::Replayed, "{rejection:?}");
    // An authorization for more than the payer holds is diagnosed from balanceOf.
    let broke = devtoken::dev_account(11);
    let payload = json!(authorization(11, payee, 10_000, DEFAULT_CHAIN_ID).to_x402());
    let rejection = rail.verify(Proof::X402 { version: 2, payload: &payload }, AtomicAmount(10_000)).await.unwrap_err();
    assert_eq!(rejection.kind, RejectKind::InsufficientFunds, "{rejection:?} for {}", broke.address());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_senders_are_all_mined_in_their_own_blocks() {
    let config = DevnetConfig { dev_accounts: 21, ..DevnetConfig::default() };
    let devnet = Arc::new(Devnet::new(config).unwrap());
    let chain: Arc<dyn Chain> = devnet.clone();
    let token = devtoken::test_usdc_address();
    let recipient = devtoken::dev_account(0).address();
    let recipient_before = usdc(chain.as_ref(), 0).await;

    let tasks: Vec<_> = (1..=20u32)
        .map(|index| {
            let chain = chain.clone();
            tokio::spawn(async move {
                let sender = TxSender::new(chain.clone(), devtoken::dev_account(index));
                let hash = sender.send(token, transfer(recipient, u64::from(index))).await.expect("sent");
                mined(chain.as_ref(), hash).await
            })
        })
        .collect();
    let mut blocks = Vec::new();
    for task in tasks {
        let receipt = task.await.unwrap();
        assert!(receipt.status());
        blocks.push(receipt.block_number.unwrap());
    }
    blocks.sort_unstable();
    assert_eq!(blocks, (1..=20).collect::<Vec<u64>>(), "one block each, no gaps");
    for index in 1..=20u32 {
        let address = devtoken::dev_account(index).address();
        assert_eq!(chain.pending_nonce(address).await.unwrap(), 1);
        assert_eq!(usdc(chain.as_ref(), index).await, U256::from(1_000_000_000_000u64 - u64::from(index)));
    }
    assert_eq!(usdc(chain.as_ref(), 0).await, recipient_before + U256::from((1..=20u64).sum::<u64>()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_settlements_from_one_settler_get_distinct_nonces() {
    let devnet = Arc::new(Devnet::new(DevnetConfig::default()).unwrap());
    let chain: Arc<dyn Chain> = devnet.clone();
    let token = devtoken::test_usdc_address();
    let payee = devtoken::dev_account(9).address();
    let settler = devtoken::dev_account(0).address();
    let sender = Arc::new(TxSender::new(chain.clone(), devtoken::dev_account(0)));
    let payee_before = usdc(chain.as_ref(), 9).await;
    let payers_before = [usdc(chain.as_ref(), 1).await, usdc(chain.as_ref(), 2).await];

    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let (chain, sender) = (chain.clone(), sender.clone());
            let payer = 1 + (i % 2) as u32;
            tokio::spawn(async move {
                let auth = authorization(payer, payee, 100 + i, DEFAULT_CHAIN_ID);
                let hash = sender.send(token, auth.transfer_call()).await.expect("sent");
                mined(chain.as_ref(), hash).await
            })
        })
        .collect();
    let mut blocks = Vec::new();
    for task in tasks {
        let receipt = task.await.unwrap();
        assert!(receipt.status());
        assert_eq!(receipt.from, settler);
        blocks.push(receipt.block_number.unwrap());
    }
    blocks.sort_unstable();
    assert_eq!(blocks, (1..=20).collect::<Vec<u64>>());
    assert_eq!(chain.pending_nonce(settler).await.unwrap(), 20, "nonces 0 to 19, each used once");
    let total: u64 = (0..20u64).map(|i| 100 + i).sum();
    assert_eq!(usdc(chain.as_ref(), 9).await, payee_before + U256::from(total));
    let paid_by_1: u64 = (0..20u64).filter(|i| i % 2 == 0).map(|i| 100 + i).sum();
    assert_eq!(usdc(chain.as_ref(), 1).await, payers_before[0] - U256::from(paid_by_1));
    assert_eq!(usdc(chain.as_ref(), 2).await, payers_before[1] - U256::from(total - paid_by_1));
    let address_filter = Filter::new().address(token).event_signature(Eip3009Token::AuthorizationUsed::SIGNATURE_HASH);
    assert_eq!(chain.logs(address_filter.from_block(0)).await.unwrap().len(), 20);
}
