//! The state a fresh devnet starts from, built the way `paygate dev fund` sets up an anvil: the dev accounts
//! hold ETH, the deterministic CREATE2 deployer is in place, the test token is deployed through it (so it lands
//! at [`devtoken::test_usdc_address`], as on every other dev chain) and each dev account is minted its test
//! USDC; the `batch-settlement` escrow's stand-ins sit at their canonical addresses (`paygate_chain::escrow`). All
//! of it is block 0; no transaction of it is recorded and every dev account starts at nonce 0.

use alloy::primitives::{Address, Bytes, TxKind, U256, hex};
use alloy::sol_types::SolCall;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::devtoken;
use revm::bytecode::Bytecode;
use revm::context::TxEnv;
use revm::state::AccountInfo;

use crate::DevnetConfig;
use crate::evm::{self, BLOCK_GAS_LIMIT, BlockPosition, WorldState};
use crate::ledger::{Block, Ledger};

/// Runtime code of the deterministic deployment proxy (Arachnid's, which anvil predeploys at
/// [`devtoken::CREATE2_DEPLOYER`]): `CREATE2(value, calldata[32..], salt = calldata[..32])`, returns the address.
const CREATE2_DEPLOYER_RUNTIME_CODE: [u8; 69] = hex!(
    "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3"
);

/// The genesis ledger `config` describes, at `timestamp`. Fails only if the committed token artifact does not
/// deploy or mint, which the error describes.
pub(crate) fn build(config: &DevnetConfig, timestamp: u64) -> Result<Ledger, String> {
    let mut state = WorldState::default();
    let dev_accounts: Vec<Address> = (0..config.dev_accounts).map(|i| devtoken::dev_account(i).address()).collect();
    for &account in &dev_accounts {
        state.insert_account_info(account, AccountInfo::from_balance(config.eth_per_account));
    }
    state.insert_account_info(
        devtoken::CREATE2_DEPLOYER,
        AccountInfo::from_bytecode(Bytecode::new_legacy(Bytes::from_static(&CREATE2_DEPLOYER_RUNTIME_CODE))),
    );
    for (address, code) in paygate_chain::escrow::dev_escrow_code() {
        state.insert_account_info(address, AccountInfo::from_bytecode(Bytecode::new_legacy(code)));
    }

    let genesis = Block::genesis(config.chain_id, timestamp);
    let position = BlockPosition { number: 0, timestamp, parent_hash: genesis.parent_hash };
    let minter = devtoken::dev_account(0).address();
    let token = devtoken::test_usdc_address();
    let step = |data: Vec<u8>, to: Address| {
        TxEnv::builder()
            .caller(minter)
            .kind(TxKind::Call(to))
            .data(data.into())
            .gas_limit(BLOCK_GAS_LIMIT)
            .gas_price(0)
            .chain_id(Some(config.chain_id))
            .build_fill()
    };

    let mut deploy = devtoken::TEST_USDC_SALT.to_vec();
    deploy.extend_from_slice(&devtoken::test_usdc_init_code());
    let deployed =
        evm::execute_genesis_step(&mut state, config.chain_id, position, step(deploy, devtoken::CREATE2_DEPLOYER))?;
    let has_code =
        state.load_account(token).is_ok_and(|account| account.info.code_hash != revm::primitives::KECCAK_EMPTY);
    if !deployed.is_success() || !has_code {
        return Err(format!("the test token did not deploy at {token}: {deployed:?}"));
    }
    if config.usdc_per_account > U256::ZERO {
        for &account in &dev_accounts {
            let mint = Eip3009Token::mintCall { to: account, amount: config.usdc_per_account }.abi_encode();
            let minted = evm::execute_genesis_step(&mut state, config.chain_id, position, step(mint, token))?;
            if !minted.is_success() {
                return Err(format!("minting test USDC to {account} failed: {minted:?}"));
            }
        }
    }
    // The genesis steps were sent from the minter; a fresh chain's accounts have sent nothing.
    match state.load_account(minter) {
        Ok(minter_account) => minter_account.info.nonce = 0,
        Err(never) => match never {},
    }
    Ok(Ledger::new(state, vec![genesis], Default::default()))
}
