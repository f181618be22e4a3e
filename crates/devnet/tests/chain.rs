//! The devnet as a chain: what genesis holds, how blocks are made and stamped, and how it refuses transactions
//! a node refuses (with a `ChainError`, never a panic).

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::TransactionRequest;
use paygate_chain::{Chain, ChainError, TxSender, devtoken};
use paygate_devnet::{DEFAULT_CHAIN_ID, Devnet, DevnetConfig};

use common::{mined, now, raw_transaction, transfer};

const ETHER: u128 = 1_000_000_000_000_000_000;

/// Runs `init_code` as a contract creation in a simulation and reads the 32-byte word it returns.
async fn probe(devnet: &Devnet, init_code: &[u8]) -> U256 {
    let out = devnet.call(TransactionRequest::default().input(Bytes::copy_from_slice(init_code).into())).await.unwrap();
    U256::from_be_slice(&out)
}

/// `<opcode> PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN`: returns one block value.
fn returning(opcode: u8) -> [u8; 9] {
    [opcode, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3]
}
const TIMESTAMP: u8 = 0x42;
const NUMBER: u8 = 0x43;

#[tokio::test]
async fn genesis_holds_the_token_and_funds_every_configured_dev_account() {
    let config = DevnetConfig {
        chain_id: 777_001,
        dev_accounts: 3,
        usdc_per_account: U256::from(5_000_000u64),
        eth_per_account: U256::from(7 * ETHER),
        state_file: None,
    };
    let devnet = Devnet::new(config).unwrap();
    assert_eq!(devnet.chain_id(), 777_001);
    assert_eq!(devnet.block_number().await.unwrap(), 0);
    let token = devtoken::test_usdc_address();
    assert!(!devnet.code(token).await.unwrap().is_empty(), "the test token is deployed at its CREATE2 address");
    assert!(!devnet.code(devtoken::CREATE2_DEPLOYER).await.unwrap().is_empty(), "the CREATE2 deployer is there");
    for index in 0..3 {
        let account = devtoken::dev_account(index).address();
        assert_eq!(devtoken::balance_of(&devnet, token, account).await.unwrap(), U256::from(5_000_000u64));
        assert_eq!(devnet.balance(account), U256::from(7 * ETHER));
        assert_eq!(devnet.pending_nonce(account).await.unwrap(), 0, "dev account {index} has sent nothing");
    }
    let unfunded = devtoken::dev_account(3).address();
    assert_eq!(devtoken::balance_of(&devnet, token, unfunded).await.unwrap(), U256::ZERO);
    assert_eq!(devnet.balance(unfunded), U256::ZERO);
}

#[tokio::test]
async fn the_default_config_is_chain_402402_with_ten_rich_accounts() {
    let devnet = Devnet::new(DevnetConfig::default()).unwrap();
    assert_eq!(devnet.chain_id(), DEFAULT_CHAIN_ID);
    assert_eq!(DEFAULT_CHAIN_ID, 402_402);
    let token = devtoken::test_usdc_address();
    for index in 0..10 {
        let account = devtoken::dev_account(index).address();
        let usdc = devtoken::balance_of(&devnet, token, account).await.unwrap();
        assert_eq!(usdc, U256::from(1_000_000_000_000u64), "1,000,000 USDC for dev account {index}");
        assert_eq!(devnet.balance(account), U256::from(10_000 * ETHER));
    }
    assert_eq!(devtoken::balance_of(&devnet, token, devtoken::dev_account(10).address()).await.unwrap(), U256::ZERO);
}

#[tokio::test]
async fn each_transaction_gets_the_next_block_stamped_with_the_wall_clock() {
    let devnet = Arc::new(Devnet::new(DevnetConfig::default()).unwrap());
    let genesis_time = devnet.block_timestamp(0).await.unwrap().expect("block 0");
    assert!(genesis_time.abs_diff(now()) <= 2, "genesis at {genesis_time}, now {}", now());

    // Simulations run in the pending block: the next number, stamped now.
    assert_eq!(probe(&devnet, &returning(NUMBER)).await, U256::from(1));
    assert!(probe(&devnet, &returning(TIMESTAMP)).await.to::<u64>().abs_diff(now()) <= 2);

    let sender = TxSender::new(devnet.clone(), devtoken::dev_account(2));
    let recipient = devtoken::dev_account(3).address();
    let mut blocks = Vec::new();
    for round in 0..4 {
        if round == 2 {
            // Let the wall clock move on by at least a second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let hash = sender.send(devtoken::test_usdc_address(), transfer(recipient, 1)).await.unwrap();
        let receipt = mined(devnet.as_ref(), hash).await;
        let number = receipt.block_number.expect("mined in a block");
        let timestamp = devnet.block_timestamp(number).await.unwrap().expect("the block exists");
        assert!(timestamp.abs_diff(now()) <= 2, "block {number} at {timestamp}, now {}", now());
        blocks.push((number, timestamp));
    }
    assert_eq!(blocks.iter().map(|(number, _)| *number).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(blocks.windows(2).all(|pair| pair[0].1 <= pair[1].1), "timestamps never go back: {blocks:?}");
    assert!(blocks[2].1 > blocks[1].1, "the clock moved between rounds 1 and 2: {blocks:?}");
    assert_eq!(devnet.block_number().await.unwrap(), 4);
    assert_eq!(devnet.block_timestamp(5).await.unwrap(), None, "no block 5 yet");
}

#[tokio::test]
async fn malformed_misdirected_and_stale_transactions_are_refused() {
    let devnet = Arc::new(Devnet::new(DevnetConfig::default()).unwrap());
    let signer = devtoken::dev_account(4);
    let token = devtoken::test_usdc_address();
    let good = raw_transaction(&signer, DEFAULT_CHAIN_ID, 0, token, transfer(Address::repeat_byte(9), 1));

    let mut garbage: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(&[0x02]),
        Bytes::from_static(&[0xff; 40]),
        Bytes::from_static(&[0x05, 0xc0]),
        good.slice(..good.len() - 1),
    ];
    let mut trailing = good.to_vec();
    trailing.push(0);
    garbage.push(trailing.into());
    for raw in garbage {
        match devnet.send_raw_transaction(raw.clone()).await {
            Err(ChainError::Rpc { code: -32602, .. }) => {}
            other => panic!("{raw} gave {other:?}"),
        }
    }

    let other_chain = raw_transaction(&signer, 1, 0, token, transfer(Address::repeat_byte(9), 1));
    match devnet.send_raw_transaction(other_chain).await {
        Err(ChainError::Rpc { code: -32000, message }) => assert!(message.contains("chain id"), "{message}"),
        other => panic!("a transaction for chain 1 gave {other:?}"),
    }

    let ahead = raw_transaction(&signer, DEFAULT_CHAIN_ID, 5, token, transfer(Address::repeat_byte(9), 1));
    let refused = devnet.send_raw_transaction(ahead).await;
    assert_eq!(refused, Err(ChainError::Rpc { code: -32000, message: "nonce too high".into() }));

    let broke = raw_transaction(&devtoken::dev_account(42), DEFAULT_CHAIN_ID, 0, token, transfer(signer.address(), 1));
    match devnet.send_raw_transaction(broke).await {
        Err(ChainError::Rpc { code: -32000, message }) => assert!(message.contains("insufficient funds"), "{message}"),
        other => panic!("a transaction from an account without ETH gave {other:?}"),
    }
    assert_eq!(devnet.block_number().await.unwrap(), 0, "nothing refused was mined");

    let hash = devnet.send_raw_transaction(good.clone()).await.unwrap();
    assert!(mined(devnet.as_ref(), hash).await.status());
    assert_eq!(devnet.pending_nonce(signer.address()).await.unwrap(), 1);
    let replayed = devnet.send_raw_transaction(good).await;
    assert!(matches!(replayed, Err(ChainError::Rpc { code: -32000, .. })), "{replayed:?}");
    let stale = raw_transaction(&signer, DEFAULT_CHAIN_ID, 0, token, transfer(Address::repeat_byte(8), 2));
    let refused = devnet.send_raw_transaction(stale).await;
    assert_eq!(refused, Err(ChainError::Rpc { code: -32000, message: "nonce too low".into() }));
    assert_eq!(devnet.block_number().await.unwrap(), 1);
}

#[tokio::test]
async fn a_reverting_transaction_is_mined_with_status_zero_and_costs_gas() {
    let devnet = Arc::new(Devnet::new(DevnetConfig::default()).unwrap());
    let not_minter = devtoken::dev_account(5);
    let token = devtoken::test_usdc_address();
    let mint = alloy::sol_types::SolCall::abi_encode(&paygate_chain::abi::Eip3009Token::mintCall {
        to: not_minter.address(),
        amount: U256::from(1),
    });

    let simulated = devnet
        .call(
            TransactionRequest::default().from(not_minter.address()).to(token).input(Bytes::from(mint.clone()).into()),
        )
        .await;
    match simulated {
        Err(ChainError::Reverted { message, data }) => {
            assert_eq!(message, "execution reverted: not minter");
            assert!(data.is_some_and(|data| !data.is_empty()));
        }
        other => panic!("mint by a non-minter simulated as {other:?}"),
    }

    let eth_before = devnet.balance(not_minter.address());
    let raw = raw_transaction(&not_minter, DEFAULT_CHAIN_ID, 0, token, mint.into());
    let hash = devnet.send_raw_transaction(raw).await.unwrap();
    let receipt = mined(devnet.as_ref(), hash).await;
    assert!(!receipt.status(), "the revert is mined with status 0");
    assert_eq!(receipt.block_number, Some(1));
    assert_eq!(devnet.pending_nonce(not_minter.address()).await.unwrap(), 1, "a mined revert uses its nonce");
    let fee = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    assert!(fee > U256::ZERO);
    assert_eq!(devnet.balance(not_minter.address()), eth_before - fee, "the revert still pays for its gas");
    assert_eq!(
        devtoken::balance_of(devnet.as_ref(), token, not_minter.address()).await.unwrap(),
        U256::from(1_000_000_000_000u64)
    );
}
