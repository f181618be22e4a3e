//! CAIP-2 network identifiers (`eip155:8453`).

use std::fmt;
use std::str::FromStr;

/// A blockchain network, as CAIP-2 names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    /// An EVM chain by its chain id.
    Evm(u64),
    /// Any other namespace, kept as written (`solana:...`).
    Other(String),
}

impl Network {
    pub fn evm_chain_id(&self) -> Option<u64> {
        match self {
            Network::Evm(id) => Some(*id),
            Network::Other(_) => None,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Evm(id) => write!(f, "eip155:{id}"),
            Network::Other(s) => f.write_str(s),
        }
    }
}

/// Why a string is not a CAIP-2 network id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CAIP-2 network id such as \"eip155:8453\"")]
pub struct NetworkParseError(pub String);

impl FromStr for Network {
    type Err = NetworkParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || NetworkParseError(s.to_owned());
        let (namespace, reference) = s.split_once(':').ok_or_else(err)?;
        let valid_namespace = (3..=8).contains(&namespace.len())
            && namespace.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let valid_reference = (1..=32).contains(&reference.len())
            && reference.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_namespace || !valid_reference {
            return Err(err());
        }
        if namespace == "eip155" {
            let id = reference.parse::<u64>().map_err(|_| err())?;
            if reference.starts_with('0') {
                return Err(err());
            }
            return Ok(Network::Evm(id));
        }
        Ok(Network::Other(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("eip155:8453".parse::<Network>().unwrap(), Network::Evm(8453));
        assert_eq!(Network::Evm(31337).to_string(), "eip155:31337");
        let sol = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".parse::<Network>().unwrap();
        assert_eq!(sol.to_string(), "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
        for bad in ["8453", "eip155:", "eip155:0x1", "eip155:01", "EIP155:1", "eip155:1:2"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
