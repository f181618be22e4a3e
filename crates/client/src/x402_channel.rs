//! The payer's side of an x402 `batch-settlement` channel (`scheme_batch_settlement_evm.md`): a deposit into the
//! escrow (`x402BatchSettlement`) relayed by the seller, from an ERC-3009 authorization to the ERC-3009 deposit
//! collector or, when the offer asks (`assetTransferMethod: permit2`, for tokens without ERC-3009), a Permit2
//! transfer to the Permit2 deposit collector (the payer must have approved Permit2 on the token); then one
//! cumulative voucher per call, a deposit again to top up, and a `refund` for what was not spent. It signs exactly
//! what the official `@x402/evm` client signs (the same channel config, channel id, voucher, deposit nonce and
//! Permit2 witness), so it pays any seller the official client pays.
//!
//! An [`X402Channel`] keeps what the payer has promised (the cumulative amount of its last voucher), like
//! [`crate::session::EvmSession`] does for MPP; each payload goes in a `PAYMENT-SIGNATURE` header answering the
//! 402's `batch-settlement` requirements ([`X402Channel::credential`]).

use alloy::primitives::{Address, B256, U256, aliases::U40};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolStruct, eip712_domain};
use serde_json::{Value, json};

use paygate_chain::escrow::{self, BatchSettlement::ChannelConfig, ReceiveWithAuthorization};
use paygate_proto::x402;

use crate::reconcile::AuthorizationNonce;
use crate::session::SessionError;

/// How a deposit leaves the payer's wallet, as the offer asks (`extra.assetTransferMethod`; `eip3009` when it
/// does not say, as the official client reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepositTransfer {
    /// An ERC-3009 `receiveWithAuthorization` for the ERC-3009 deposit collector, signed in the token's domain.
    Eip3009,
    /// A Permit2 `PermitWitnessTransferFrom` for the Permit2 deposit collector, signed in Permit2's domain.
    Permit2,
}

impl DepositTransfer {
    pub(crate) fn of(requirements: &x402::PaymentRequirements) -> Result<DepositTransfer, String> {
        match requirements.extra.as_ref().and_then(|e| e.get("assetTransferMethod")) {
            None => Ok(DepositTransfer::Eip3009),
            Some(method) => match method.as_str() {
                Some("eip3009") => Ok(DepositTransfer::Eip3009),
                Some("permit2") => Ok(DepositTransfer::Permit2),
                other => Err(format!(
                    "batch-settlement deposits by {} are not supported (eip3009 and permit2 are)",
                    other.unwrap_or("?")
                )),
            },
        }
    }
}

/// What signs a deposit.
#[derive(Debug, Clone)]
enum DepositSigning {
    /// ERC-3009, in the token's EIP-712 domain (name, version).
    Erc3009 {
        token_domain: (String, String),
    },
    Permit2,
}

/// One channel to one seller, as its payer keeps it.
#[derive(Debug, Clone)]
pub struct X402Channel {
    signer: PrivateKeySigner,
    chain_id: u64,
    config: ChannelConfig,
    channel_id: B256,
    deposits: DepositSigning,
    resource: x402::ResourceInfo,
    requirements: x402::PaymentRequirements,
    /// The nonce of the last deposit signed.
    deposit_nonce: AuthorizationNonce,
    /// The deposit in escrow, as far as this payer made it.
    pub deposit: u128,
    /// The cumulative amount of the last voucher signed.
    pub cumulative: u128,
}

fn extra<'a>(requirements: &'a x402::PaymentRequirements, name: &str) -> Result<&'a Value, SessionError> {
    let value = requirements.extra.as_ref().and_then(|e| e.get(name));
    value.ok_or_else(|| SessionError::NotASession(format!("the batch-settlement offer has no extra.{name}")))
}

impl X402Channel {
    /// A new channel (salt `salt`) answering `requirements` (a `batch-settlement` offer), signed by `signer`
    /// (who pays and signs its vouchers), for a token whose EIP-712 domain is `token_domain` (name, version;
    /// needed for ERC-3009 deposits only).
    pub fn new(
        signer: PrivateKeySigner,
        resource: &x402::ResourceInfo,
        requirements: &x402::PaymentRequirements,
        token_domain: Option<(String, String)>,
        salt: B256,
    ) -> Result<X402Channel, SessionError> {
        let not = |what: &str| SessionError::NotASession(format!("the batch-settlement offer's {what}"));
        let chain_id = x402::v1::chain_id(&requirements.network).ok_or_else(|| not("network"))?;
        let deposits = match DepositTransfer::of(requirements).map_err(SessionError::NotASession)? {
            DepositTransfer::Eip3009 => {
                DepositSigning::Erc3009 { token_domain: token_domain.ok_or_else(|| not("token's EIP-712 domain"))? }
            }
            DepositTransfer::Permit2 => DepositSigning::Permit2,
        };
        let withdraw_delay = extra(requirements, "withdrawDelay")?.as_u64().ok_or_else(|| not("withdrawDelay"))?;
        let receiver_authorizer: Address = extra(requirements, "receiverAuthorizer")?
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| not("receiverAuthorizer"))?;
        let config = ChannelConfig {
            payer: signer.address(),
            payerAuthorizer: signer.address(),
            receiver: requirements.pay_to.parse().map_err(|_| not("payTo"))?,
            receiverAuthorizer: receiver_authorizer,
            token: requirements.asset.parse().map_err(|_| not("asset"))?,
            withdrawDelay: U40::try_from(withdraw_delay).map_err(|_| not("withdrawDelay"))?,
            salt,
        };
        let channel_id = escrow::channel_id(&config, chain_id);
        Ok(X402Channel {
            signer,
            chain_id,
            config,
            channel_id,
            resource: resource.clone(),
            requirements: requirements.clone(),
            deposits,
            deposit_nonce: AuthorizationNonce::Erc3009(B256::ZERO),
            deposit: 0,
            cumulative: 0,
        })
    }

    /// A channel this payer opened before, as its spend log keeps it.
    pub fn restore(
        signer: PrivateKeySigner,
        resource: &x402::ResourceInfo,
        requirements: &x402::PaymentRequirements,
        token_domain: Option<(String, String)>,
        record: &crate::spend_sessions::SessionRecord,
    ) -> Result<X402Channel, SessionError> {
        let salt = record.salt.parse().map_err(|_| SessionError::NotASession("the recorded salt".into()))?;
        let mut channel = X402Channel::new(signer, resource, requirements, token_domain, salt)?;
        if format!("{:#x}", channel.channel_id) != record.channel_id.to_lowercase() {
            return Err(SessionError::NotASession("the offer names another channel's terms".into()));
        }
        channel.deposit = record.deposit();
        channel.cumulative = record.cumulative();
        Ok(channel)
    }

    pub fn channel_id(&self) -> B256 {
        self.channel_id
    }

    /// The channel's salt (part of its config, so of its id).
    pub fn salt(&self) -> B256 {
        self.config.salt
    }

    /// The nonce of the last deposit signed, which the spend log keeps to ask the chain later whether the deposit
    /// moved.
    pub(crate) fn deposit_nonce(&self) -> AuthorizationNonce {
        self.deposit_nonce
    }

    fn voucher_json(&self, cumulative: u128) -> Value {
        let digest = escrow::voucher_digest(self.channel_id, cumulative, self.chain_id);
        let signature = self.signer.sign_hash_sync(&digest).expect("a local key signs");
        json!({
            "channelId": format!("{:#x}", self.channel_id),
            "maxClaimableAmount": cumulative.to_string(),
            "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        })
    }

    /// A `deposit` payload: `amount` into the escrow (the first deposit opens the channel), its authorization
    /// valid until `valid_before` (`salt` makes an ERC-3009 nonce; a Permit2 nonce is random), and a voucher for
    /// `cumulative`.
    fn deposit_payload(&mut self, amount: u128, cumulative: u128, salt: B256, valid_before: u64) -> Value {
        let authorization = match self.deposits.clone() {
            DepositSigning::Erc3009 { token_domain } => {
                self.erc3009_authorization(&token_domain, amount, salt, valid_before)
            }
            DepositSigning::Permit2 => self.permit2_authorization(amount, valid_before),
        };
        self.deposit += amount;
        json!({
            "type": "deposit",
            "channelConfig": escrow::config_json(&self.config),
            "voucher": self.voucher_json(cumulative),
            "deposit": { "amount": amount.to_string(), "authorization": authorization },
        })
    }

    fn erc3009_authorization(
        &mut self,
        (name, version): &(String, String),
        amount: u128,
        salt: B256,
        valid_before: u64,
    ) -> Value {
        let nonce = escrow::deposit_nonce(self.channel_id, salt);
        self.deposit_nonce = AuthorizationNonce::Erc3009(nonce);
        let signed = ReceiveWithAuthorization {
            from: self.config.payer,
            to: escrow::ERC3009_DEPOSIT_COLLECTOR,
            value: U256::from(amount),
            validAfter: U256::ZERO,
            validBefore: U256::from(valid_before),
            nonce,
        };
        let domain = eip712_domain! {
            name: name.clone(),
            version: version.clone(),
            chain_id: self.chain_id,
            verifying_contract: self.config.token,
        };
        let signature = self.signer.sign_hash_sync(&signed.eip712_signing_hash(&domain)).expect("a local key signs");
        json!({ "erc3009Authorization": {
            "validAfter": "0",
            "validBefore": valid_before.to_string(),
            "salt": format!("{salt:#x}"),
            "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        }})
    }

    fn permit2_authorization(&mut self, amount: u128, deadline: u64) -> Value {
        let nonce = U256::from_be_bytes(B256::random().0);
        self.deposit_nonce = AuthorizationNonce::Permit2(nonce);
        let digest =
            escrow::permit2_deposit_digest(self.config.token, amount, nonce, deadline, self.channel_id, self.chain_id);
        let signature = self.signer.sign_hash_sync(&digest).expect("a local key signs");
        json!({ "permit2Authorization": {
            "from": self.config.payer.to_checksum(None),
            "permitted": { "token": self.config.token.to_checksum(None), "amount": amount.to_string() },
            "spender": escrow::PERMIT2_DEPOSIT_COLLECTOR.to_checksum(None),
            "nonce": nonce.to_string(),
            "deadline": deadline.to_string(),
            "witness": { "channelId": format!("{:#x}", self.channel_id) },
            "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        }})
    }

    /// Opens the channel: deposit `deposit` and pay the first call (`price`).
    pub fn open(&mut self, deposit: u128, price: u128, valid_before: u64) -> Result<Value, SessionError> {
        if price > deposit {
            return Err(SessionError::OverDeposit { needed: price });
        }
        self.cumulative = price;
        Ok(self.deposit_payload(deposit, price, B256::random(), valid_before))
    }

    /// A `voucher` payload: pay one more call of `price`.
    pub fn voucher(&mut self, price: u128) -> Result<Value, SessionError> {
        let needed = self.cumulative + price;
        if needed > self.deposit {
            return Err(SessionError::OverDeposit { needed });
        }
        self.cumulative = needed;
        Ok(
            json!({ "type": "voucher", "channelConfig": escrow::config_json(&self.config), "voucher": self.voucher_json(needed) }),
        )
    }

    /// One more call of `price`, topping the deposit up by `amount` in the same payload (a `deposit` on the open
    /// channel).
    pub fn voucher_with_top_up(&mut self, price: u128, amount: u128, salt: B256, valid_before: u64) -> Value {
        self.cumulative += price;
        self.deposit_payload(amount, self.cumulative, salt, valid_before)
    }

    /// A `refund` payload: everything not spent back, with a voucher for exactly what was spent.
    pub fn refund(&self) -> Value {
        json!({
            "type": "refund",
            "channelConfig": escrow::config_json(&self.config),
            "voucher": self.voucher_json(self.cumulative),
        })
    }

    /// The `PAYMENT-SIGNATURE` header value carrying `payload`.
    pub fn credential(&self, payload: Value) -> String {
        let payment = x402::PaymentPayload {
            x402_version: 2,
            resource: Some(self.resource.clone()),
            accepted: self.requirements.clone(),
            payload,
            extensions: None,
        };
        x402::encode_header(&payment)
    }
}

#[cfg(test)]
mod tests {
    use paygate_chain::devtoken::dev_account;

    use super::*;

    fn requirements() -> x402::PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "batch-settlement", "network": "eip155:31337", "amount": "10000",
            "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USD Coin", "version": "2", "withdrawDelay": 900,
                      "receiverAuthorizer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"},
        }))
        .unwrap()
    }

    /// The channel of `hashes_match_the_official_client` in `paygate_chain::escrow` (payer dev account 0, salt
    /// zero): the same id as the official client computes.
    #[test]
    fn the_channel_id_is_the_official_clients() {
        let resource = x402::ResourceInfo { url: "http://x/".into(), description: None, mime_type: None };
        let domain = ("USD Coin".to_owned(), "2".to_owned());
        let channel = X402Channel::new(dev_account(0), &resource, &requirements(), Some(domain), B256::ZERO).unwrap();
        let config = ChannelConfig { salt: B256::ZERO, ..channel.config.clone() };
        assert_eq!(channel.channel_id(), escrow::channel_id(&config, 31337));
        assert_eq!(config.payer, alloy::primitives::address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"));
    }

    #[test]
    fn vouchers_count_up_within_the_deposit_and_a_top_up_adds_to_it() {
        let resource = x402::ResourceInfo { url: "http://x/".into(), description: None, mime_type: None };
        let domain = ("USD Coin".to_owned(), "2".to_owned());
        let mut channel =
            X402Channel::new(dev_account(1), &resource, &requirements(), Some(domain), B256::ZERO).unwrap();
        let open = channel.open(30_000, 10_000, 2_000_000_000).unwrap();
        assert_eq!(
            (open["type"].as_str(), open["voucher"]["maxClaimableAmount"].as_str()),
            (Some("deposit"), Some("10000"))
        );
        assert_eq!(
            channel.deposit_nonce(),
            AuthorizationNonce::Erc3009(escrow::deposit_nonce(
                channel.channel_id(),
                open["deposit"]["authorization"]["erc3009Authorization"]["salt"].as_str().unwrap().parse().unwrap()
            ))
        );
        channel.voucher(10_000).unwrap();
        channel.voucher(10_000).unwrap();
        assert_eq!(channel.voucher(10_000).unwrap_err(), SessionError::OverDeposit { needed: 40_000 });
        let top_up = channel.voucher_with_top_up(10_000, 50_000, B256::repeat_byte(1), 2_000_000_000);
        assert_eq!(
            (top_up["deposit"]["amount"].as_str(), top_up["voucher"]["maxClaimableAmount"].as_str()),
            (Some("50000"), Some("40000"))
        );
        assert_eq!((channel.deposit, channel.cumulative), (80_000, 40_000));
        assert_eq!(channel.refund()["voucher"]["maxClaimableAmount"], "40000");
    }

    /// An offer that asks for Permit2 deposits gets a Permit2 `PermitWitnessTransferFrom` for the deposit
    /// collector, bound to the channel by its witness and signed by the payer in Permit2's domain (no token domain
    /// needed); the spend log keeps its unordered nonce, and a top-up signs a new one.
    #[test]
    fn a_permit2_offer_gets_permit2_deposits_bound_to_the_channel() {
        let resource = x402::ResourceInfo { url: "http://x/".into(), description: None, mime_type: None };
        let mut requirements = requirements();
        requirements.extra.as_mut().unwrap().insert("assetTransferMethod".into(), "permit2".into());
        let payer = dev_account(1);
        let mut channel = X402Channel::new(payer.clone(), &resource, &requirements, None, B256::ZERO).unwrap();
        let open = channel.open(30_000, 10_000, 2_000_000_000).unwrap();
        let permit = &open["deposit"]["authorization"]["permit2Authorization"];
        assert!(open["deposit"]["authorization"].get("erc3009Authorization").is_none(), "{open}");
        assert_eq!(permit["spender"], escrow::PERMIT2_DEPOSIT_COLLECTOR.to_checksum(None));
        assert_eq!(permit["permitted"]["amount"], "30000");
        assert_eq!(permit["witness"]["channelId"], format!("{:#x}", channel.channel_id()));
        let nonce: U256 = permit["nonce"].as_str().unwrap().parse().unwrap();
        assert_eq!(channel.deposit_nonce(), AuthorizationNonce::Permit2(nonce));
        assert_eq!(channel.deposit_nonce().to_string(), format!("permit2:{nonce}"));
        let digest = escrow::permit2_deposit_digest(
            channel.config.token,
            30_000,
            nonce,
            2_000_000_000,
            channel.channel_id(),
            31337,
        );
        let signature: alloy::primitives::Signature = permit["signature"].as_str().unwrap().parse().unwrap();
        assert_eq!(signature.recover_address_from_prehash(&digest).unwrap(), payer.address());

        channel.voucher_with_top_up(10_000, 50_000, B256::repeat_byte(1), 2_000_000_000);
        assert_ne!(channel.deposit_nonce(), AuthorizationNonce::Permit2(nonce), "a new nonce for the top-up");
        assert_eq!((channel.deposit, channel.cumulative), (80_000, 20_000));

        // An ERC-3009 offer cannot be paid without the token's domain; an unknown method not at all.
        let err = X402Channel::new(payer.clone(), &resource, &super::tests::requirements(), None, B256::ZERO);
        assert!(matches!(err, Err(SessionError::NotASession(_))));
        requirements.extra.as_mut().unwrap().insert("assetTransferMethod".into(), "permit3".into());
        let err = X402Channel::new(payer, &resource, &requirements, None, B256::ZERO).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the challenge is not an evm session: batch-settlement deposits by permit3 are not supported (eip3009 and permit2 are)"
        );
    }
}
