//! The registry of rails: the one list of every rail paygate builds `[[accept]]` entries with. Adding a rail is a
//! module of this crate and one line here (`docs/adding-a-rail.md`).

use crate::network::{FieldError, Networks};
use crate::rail::Rail;
use crate::{batch_settlement, eip3009, evm_session, lightning, stripe, tempo, txhash, upto};

/// Every rail, in the order an entry that names no rail is offered to them: the first that claims it takes it.
pub const RAILS: &[Rail] = &[
    stripe::RAIL,
    lightning::RAIL,
    tempo::RAIL,
    eip3009::RAIL,
    txhash::RAIL,
    batch_settlement::RAIL,
    evm_session::RAIL,
    upto::RAIL,
    #[cfg(feature = "test-rail")]
    crate::test_rail::RAIL,
];

/// The rail of an `[[accept]]` entry: the one it names in `rail`, or the first that claims its fields.
pub fn rail_of(named: Option<&str>, fields: &toml::Table, networks: &Networks) -> Result<&'static Rail, FieldError> {
    match named {
        Some(name) => RAILS.iter().find(|rail| rail.name == name).ok_or_else(|| {
            let known: Vec<&str> = RAILS.iter().map(|rail| rail.name).collect();
            FieldError::entry("rail", format!("unknown rail {name:?}: one of {}", known.join(", ")))
        }),
        None => RAILS
            .iter()
            .find(|rail| (rail.claims)(fields, networks))
            .ok_or_else(|| FieldError::entry("rail", "name the rail: no rail takes this entry")),
    }
}
