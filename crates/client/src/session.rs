//! The payer's side of an MPP `evm` session (`draft-evm-session-00`): a channel opened once with an ERC-3009
//! deposit that the payee relays, then one cumulative voucher per call, top-ups, and a cooperative close.
//! No released MPP SDK implements this method yet (mppx 0.11.0 has `evm` charge only), so paygate's own client
//! pays sessions; it signs the draft's types exactly as `paygate serve` and the escrow check them.
//!
//! An [`EvmSession`] keeps what the payer has promised (the cumulative amount of its last voucher); each payload
//! it makes goes in an `Authorization: Payment` credential answering the session's challenge
//! ([`EvmSession::credential`]).

use alloy::primitives::{Address, B256, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolStruct, eip712_domain};
use serde_json::{Value, json};

use paygate_chain::escrow::ReceiveWithAuthorization;
use paygate_chain::session_escrow::{self, ChannelTerms};
use paygate_proto::mpp::{Challenge, Credential};

/// Why a session challenge cannot be paid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the challenge is not an evm session: {0}")]
    NotASession(String),
    #[error("the session's deposit does not cover a cumulative {needed}")]
    OverDeposit { needed: u128 },
}

/// One channel to one payee, as its payer keeps it.
#[derive(Debug, Clone)]
pub struct EvmSession {
    signer: PrivateKeySigner,
    chain_id: u64,
    escrow: Address,
    terms: ChannelTerms,
    /// The token's EIP-712 name and version (its ERC-3009 domain).
    token_domain: (String, String),
    channel_id: B256,
    /// The ERC-3009 nonce of the last deposit signed (the open or a top-up).
    deposit_nonce: B256,
    /// The deposit in escrow, as far as this payer made it.
    pub deposit: u128,
    /// The cumulative amount of the last voucher signed.
    pub cumulative: u128,
}

fn field<'a>(request: &'a Value, path: &[&str]) -> Result<&'a Value, SessionError> {
    path.iter()
        .try_fold(request, |v, key| v.get(key))
        .ok_or_else(|| SessionError::NotASession(format!("request.{} is missing", path.join("."))))
}

fn address(request: &Value, path: &[&str]) -> Result<Address, SessionError> {
    let text = field(request, path)?.as_str().unwrap_or_default();
    text.parse().map_err(|_| SessionError::NotASession(format!("request.{} is not an address", path.join("."))))
}

impl EvmSession {
    /// A new channel (salt `salt`) answering `challenge`, signed by `signer` (who pays and signs its vouchers),
    /// for a token whose EIP-712 domain is `token_domain` (name, version).
    pub fn new(
        signer: PrivateKeySigner,
        challenge: &Challenge,
        token_domain: (String, String),
        salt: B256,
    ) -> Result<EvmSession, SessionError> {
        if challenge.method != "evm" || challenge.intent != "session" {
            return Err(SessionError::NotASession(format!("{} {}", challenge.method, challenge.intent)));
        }
        let request = &challenge.request;
        let chain_id = field(request, &["methodDetails", "chainId"])?
            .as_u64()
            .ok_or_else(|| SessionError::NotASession("request.methodDetails.chainId is not a number".into()))?;
        let escrow = address(request, &["methodDetails", "escrowContract"])?;
        let terms = ChannelTerms {
            payer: signer.address(),
            payee: address(request, &["recipient"])?,
            token: address(request, &["currency"])?,
            salt,
            authorized_signer: Address::ZERO,
        };
        let channel_id = terms.channel_id(escrow, chain_id);
        let deposit_nonce = terms.open_nonce();
        Ok(EvmSession {
            signer,
            chain_id,
            escrow,
            terms,
            token_domain,
            channel_id,
            deposit_nonce,
            deposit: 0,
            cumulative: 0,
        })
    }

    /// A channel this payer opened before, as its spend log keeps it.
    pub fn restore(
        signer: PrivateKeySigner,
        challenge: &Challenge,
        token_domain: (String, String),
        record: &crate::spend_sessions::SessionRecord,
    ) -> Result<EvmSession, SessionError> {
        let salt = record.salt.parse().map_err(|_| SessionError::NotASession("the recorded salt".into()))?;
        let mut session = EvmSession::new(signer, challenge, token_domain, salt)?;
        if format!("{:#x}", session.channel_id) != record.channel_id.to_lowercase() {
            return Err(SessionError::NotASession("the challenge names another channel's terms".into()));
        }
        session.deposit = record.deposit();
        session.cumulative = record.cumulative();
        Ok(session)
    }

    pub fn channel_id(&self) -> B256 {
        self.channel_id
    }

    /// The `did:pkh` that names the payer in credentials.
    pub fn source(&self) -> String {
        format!("did:pkh:eip155:{}:{}", self.chain_id, self.terms.payer)
    }

    fn sign_voucher(&self, cumulative: u128) -> String {
        let digest = session_escrow::voucher_digest(self.channel_id, cumulative, self.chain_id, self.escrow);
        let signature = self.signer.sign_hash_sync(&digest).expect("a local key signs");
        format!("0x{}", alloy::hex::encode(signature.as_bytes()))
    }

    /// An ERC-3009 authorization moving `amount` to the escrow with `nonce`, valid until `valid_before`.
    fn authorize(&self, amount: u128, nonce: B256, valid_before: u64) -> (Value, String) {
        let signed = ReceiveWithAuthorization {
            from: self.terms.payer,
            to: self.escrow,
            value: U256::from(amount),
            validAfter: U256::ZERO,
            validBefore: U256::from(valid_before),
            nonce,
        };
        let domain = eip712_domain! {
            name: self.token_domain.0.clone(),
            version: self.token_domain.1.clone(),
            chain_id: self.chain_id,
            verifying_contract: self.terms.token,
        };
        let signature = self.signer.sign_hash_sync(&signed.eip712_signing_hash(&domain)).expect("a local key signs");
        let authorization = json!({
            "from": self.terms.payer.to_checksum(None),
            "to": self.escrow.to_checksum(None),
            "value": amount.to_string(),
            "validAfter": "0",
            "validBefore": valid_before.to_string(),
            "nonce": format!("{nonce:#x}"),
        });
        (authorization, format!("0x{}", alloy::hex::encode(signature.as_bytes())))
    }

    /// `open` by authorization: deposit `deposit` and pay the first call (`price`).
    pub fn open(&mut self, deposit: u128, price: u128, valid_before: u64) -> Result<Value, SessionError> {
        if price > deposit {
            return Err(SessionError::OverDeposit { needed: price });
        }
        self.deposit_nonce = self.terms.open_nonce();
        let (authorization, signature) = self.authorize(deposit, self.deposit_nonce, valid_before);
        self.deposit = deposit;
        self.cumulative = price;
        Ok(json!({
            "action": "open",
            "type": "authorization",
            "channelId": format!("{:#x}", self.channel_id),
            "authorization": authorization,
            "signature": signature,
            "cumulativeAmount": price.to_string(),
            "voucherSignature": self.sign_voucher(price),
            "salt": format!("{:#x}", self.terms.salt),
        }))
    }

    /// `voucher`: pay one more call of `price`.
    pub fn voucher(&mut self, price: u128) -> Result<Value, SessionError> {
        let needed = self.cumulative + price;
        if needed > self.deposit {
            return Err(SessionError::OverDeposit { needed });
        }
        self.cumulative = needed;
        Ok(self.voucher_for(needed))
    }

    /// A `voucher` payload for any cumulative amount (what a client that lost its count, or a test, sends).
    pub fn voucher_for(&self, cumulative: u128) -> Value {
        json!({
            "action": "voucher",
            "channelId": format!("{:#x}", self.channel_id),
            "cumulativeAmount": cumulative.to_string(),
            "signature": self.sign_voucher(cumulative),
        })
    }

    /// A call was not charged (its upstream failed and no receipt came back): its voucher is taken back.
    pub fn not_charged(&mut self, price: u128) {
        self.cumulative = self.cumulative.saturating_sub(price);
    }

    /// `voucher` for one more call of `price`, topping the deposit up by `amount` in the same credential.
    pub fn voucher_with_top_up(&mut self, price: u128, amount: u128, salt: B256, valid_before: u64) -> Value {
        let mut top_up = self.top_up(amount, salt, valid_before);
        top_up["action"] = "topUp".into();
        self.cumulative += price;
        let mut voucher = self.voucher_for(self.cumulative);
        voucher["deposit"] = top_up;
        voucher
    }

    /// `topUp` by authorization: add `amount` to the deposit.
    pub fn top_up(&mut self, amount: u128, salt: B256, valid_before: u64) -> Value {
        self.deposit_nonce = session_escrow::top_up_nonce(self.channel_id, amount, self.terms.payer, salt);
        let (authorization, signature) = self.authorize(amount, self.deposit_nonce, valid_before);
        self.deposit += amount;
        json!({
            "action": "topUp",
            "type": "authorization",
            "channelId": format!("{:#x}", self.channel_id),
            "authorization": authorization,
            "signature": signature,
            "salt": format!("{salt:#x}"),
            "additionalDeposit": amount.to_string(),
        })
    }

    /// The ERC-3009 nonce of the last deposit signed (the open or a top-up), which the spend log keeps to ask the
    /// token later whether the deposit moved.
    pub fn deposit_nonce(&self) -> B256 {
        self.deposit_nonce
    }

    /// `close`: the final voucher, for everything paid.
    pub fn close(&self) -> Value {
        json!({
            "action": "close",
            "channelId": format!("{:#x}", self.channel_id),
            "cumulativeAmount": self.cumulative.to_string(),
            "signature": self.sign_voucher(self.cumulative),
        })
    }

    /// The `Authorization` header value carrying `payload` in answer to `challenge`.
    pub fn credential(&self, challenge: &Challenge, payload: Value) -> String {
        let credential = Credential { challenge: challenge.clone(), payload, source: Some(self.source()) };
        credential.to_header()
    }
}
