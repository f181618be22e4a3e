//! The networks and assets paygate knows without being told: chain ids, confirmation depths, and per network
//! the stablecoins' addresses, decimals, EIP-712 domains and the ways they can be paid.
//!
//! A config refers to them by name (`network = "base"`, `asset = "USDC"`) and may override or add any of it.
//! EIP-712 names differ per chain (`"USD Coin"` on Base, `"USDC"` on Base Sepolia): they are data here, never
//! derived from a symbol. Addresses are the issuers' canonical deployments.

/// How a token can be paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMethod {
    /// EIP-3009 `transferWithAuthorization` (x402 `exact`, MPP `evm`).
    Eip3009,
    /// A plain ERC-20 `Transfer` the payer sends, proven by its hash.
    Erc20Transfer,
    /// A TIP-20 transfer on Tempo (MPP `tempo`).
    Tip20,
}

/// A token on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetInfo {
    pub symbol: &'static str,
    pub address: &'static str,
    pub decimals: u8,
    /// A USD stablecoin: `$` prices are paid in it one to one.
    pub usd: bool,
    /// EIP-712 `(name, version)`, for EIP-3009 tokens.
    pub eip712: Option<(&'static str, &'static str)>,
    pub transfers: &'static [TransferMethod],
}

/// What kind of chain a network is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Evm,
    /// Tempo: EVM-compatible, TIP-20 tokens, MPP `tempo` payments.
    Tempo,
}

/// A network paygate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: &'static str,
    pub chain_id: u64,
    pub kind: ChainKind,
    /// Blocks a pay-first transfer must be buried under before it pays (1: its own block is enough).
    pub confirmations: u64,
    /// A public JSON-RPC endpoint, used when the config names none.
    pub public_rpc: Option<&'static str>,
    pub assets: &'static [AssetInfo],
}

use TransferMethod::{Eip3009, Erc20Transfer, Tip20};

const USDC_EIP3009: &[TransferMethod] = &[Eip3009, Erc20Transfer];
const ERC20_ONLY: &[TransferMethod] = &[Erc20Transfer];
const TIP20: &[TransferMethod] = &[Tip20, Erc20Transfer];

/// Every built-in network.
pub const NETWORKS: &[NetworkInfo] = &[
    NetworkInfo {
        name: "base",
        chain_id: 8453,
        kind: ChainKind::Evm,
        confirmations: 3,
        public_rpc: Some("https://mainnet.base.org"),
        assets: &[
            AssetInfo {
                symbol: "USDC",
                address: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                decimals: 6,
                usd: true,
                eip712: Some(("USD Coin", "2")),
                transfers: USDC_EIP3009,
            },
            AssetInfo {
                symbol: "USDT",
                address: "0xfde4C96c8593536E31F229EA8f37b2ADa2699bb2",
                decimals: 6,
                usd: true,
                eip712: None,
                transfers: ERC20_ONLY,
            },
            AssetInfo {
                symbol: "DAI",
                address: "0x50c5725949A6F0c72E6C4a641F24049A917DB0Cb",
                decimals: 18,
                usd: true,
                eip712: None,
                transfers: ERC20_ONLY,
            },
        ],
    },
    NetworkInfo {
        name: "base-sepolia",
        chain_id: 84532,
        kind: ChainKind::Evm,
        confirmations: 1,
        public_rpc: Some("https://sepolia.base.org"),
        assets: &[AssetInfo {
            symbol: "USDC",
            address: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            decimals: 6,
            usd: true,
            eip712: Some(("USDC", "2")),
            transfers: USDC_EIP3009,
        }],
    },
    NetworkInfo {
        name: "ethereum",
        chain_id: 1,
        kind: ChainKind::Evm,
        confirmations: 3,
        public_rpc: None,
        assets: &[
            AssetInfo {
                symbol: "USDC",
                address: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                decimals: 6,
                usd: true,
                eip712: Some(("USD Coin", "2")),
                transfers: USDC_EIP3009,
            },
            AssetInfo {
                symbol: "USDT",
                address: "0xdAC17F958D2ee523a2206206994597C13D831ec7",
                decimals: 6,
                usd: true,
                eip712: None,
                transfers: ERC20_ONLY,
            },
            AssetInfo {
                symbol: "DAI",
                address: "0x6B175474E89094C44Da98b954EedeAC495271d0F",
                decimals: 18,
                usd: true,
                eip712: None,
                transfers: ERC20_ONLY,
            },
        ],
    },
    NetworkInfo {
        name: "polygon",
        chain_id: 137,
        kind: ChainKind::Evm,
        confirmations: 32,
        public_rpc: None,
        assets: &[
            AssetInfo {
                symbol: "USDC",
                address: "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
                decimals: 6,
                usd: true,
                eip712: Some(("USD Coin", "2")),
                transfers: USDC_EIP3009,
            },
            AssetInfo {
                symbol: "USDT",
                address: "0xc2132D05D31c914a87C6611C10748AEb04B58e8F",
                decimals: 6,
                usd: true,
                eip712: None,
                transfers: ERC20_ONLY,
            },
            AssetInfo {
                symbol: "DAI",
                address: "0x8f3Cf7ad23Cd3CaDbD9735AFf958023239c6A063",
                decimals: 18,
                usd: true,
                eip712: None,
                transfers: ERC20_ONLY,
            },
        ],
    },
    NetworkInfo {
        name: "tempo",
        chain_id: 4217,
        kind: ChainKind::Tempo,
        confirmations: 1,
        public_rpc: Some("https://rpc.tempo.xyz"),
        assets: &[
            AssetInfo {
                symbol: "pathUSD",
                address: "0x20c0000000000000000000000000000000000000",
                decimals: 6,
                usd: true,
                eip712: None,
                transfers: TIP20,
            },
            AssetInfo {
                symbol: "USDC.e",
                address: "0x20C000000000000000000000b9537d11c60E8b50",
                decimals: 6,
                usd: true,
                eip712: None,
                transfers: TIP20,
            },
        ],
    },
    NetworkInfo {
        name: "tempo-testnet",
        chain_id: 42431,
        kind: ChainKind::Tempo,
        confirmations: 1,
        public_rpc: Some("https://rpc.moderato.tempo.xyz"),
        assets: &[AssetInfo {
            symbol: "pathUSD",
            address: "0x20c0000000000000000000000000000000000000",
            decimals: 6,
            usd: true,
            eip712: None,
            transfers: TIP20,
        }],
    },
    NetworkInfo {
        name: "anvil",
        chain_id: 31337,
        kind: ChainKind::Evm,
        confirmations: 1,
        public_rpc: Some("http://127.0.0.1:8545"),
        // The project's test token at its deterministic address (`paygate dev fund`).
        assets: &[AssetInfo {
            symbol: "USDC",
            address: "0x5f7b9bccD62f34E77c6082a12665eaDB93C56aF5",
            decimals: 6,
            usd: true,
            eip712: Some(("USD Coin", "2")),
            transfers: USDC_EIP3009,
        }],
    },
    NetworkInfo {
        name: "devnet",
        chain_id: DEVNET_CHAIN_ID,
        kind: ChainKind::Evm,
        confirmations: 1,
        // In the paygate process itself (`paygate-devnet`): no endpoint to reach.
        public_rpc: None,
        // The same test token, deployed at genesis at the same deterministic address.
        assets: &[AssetInfo {
            symbol: "USDC",
            address: "0x5f7b9bccD62f34E77c6082a12665eaDB93C56aF5",
            decimals: 6,
            usd: true,
            eip712: Some(("USD Coin", "2")),
            transfers: USDC_EIP3009,
        }],
    },
];

/// The chain id of the embedded devnet (network `devnet`), a chain of its own: `eip155:402402`.
pub const DEVNET_CHAIN_ID: u64 = 402_402;

/// A built-in network by name.
pub fn network(name: &str) -> Option<&'static NetworkInfo> {
    NETWORKS.iter().find(|n| n.name == name)
}

/// A built-in network by chain id.
pub fn network_by_chain_id(chain_id: u64) -> Option<&'static NetworkInfo> {
    NETWORKS.iter().find(|n| n.chain_id == chain_id)
}

impl NetworkInfo {
    pub fn asset(&self, symbol: &str) -> Option<&'static AssetInfo> {
        self.assets.iter().find(|a| a.symbol.eq_ignore_ascii_case(symbol))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_chain_ids_and_addresses_are_unique_and_well_formed() {
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for n in NETWORKS {
            assert!(names.insert(n.name) && ids.insert(n.chain_id), "{}", n.name);
            let mut symbols = std::collections::HashSet::new();
            for a in n.assets {
                assert!(symbols.insert(a.symbol), "{} {}", n.name, a.symbol);
                let hex = a.address.strip_prefix("0x").expect("0x address");
                assert!(hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{}", a.address);
                assert_eq!(a.eip712.is_some(), a.transfers.contains(&Eip3009), "{} {}", n.name, a.symbol);
            }
        }
    }

    #[test]
    fn eip712_names_differ_per_chain_as_deployed() {
        assert_eq!(network("base").unwrap().asset("USDC").unwrap().eip712, Some(("USD Coin", "2")));
        assert_eq!(network("base-sepolia").unwrap().asset("usdc").unwrap().eip712, Some(("USDC", "2")));
        assert_eq!(network_by_chain_id(137).unwrap().name, "polygon");
        assert!(network("base").unwrap().asset("USDT").unwrap().eip712.is_none());
    }
}
