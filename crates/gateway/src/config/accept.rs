//! `[[accept]]`: one way the seller accepts money. An entry names its rail (`rail = "eip3009"`), or the first rail
//! of `paygate_methods::registry::RAILS` that claims its fields takes it; the rail's own config type then reads
//! the entry's other fields, so each field is checked by the rail that uses it.

use std::sync::Arc;

use paygate_methods::network::{FieldError, Networks};
use paygate_methods::rail::{Common, Rail, RailConfig};
use paygate_methods::registry;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// An `[[accept]]` entry as the file has it.
#[derive(Debug, Deserialize)]
pub(super) struct RawAccept {
    /// Name for routes, the ledger and metrics; defaults to `<asset>-<network>` (lowercase), or the rail.
    #[serde(default)]
    name: Option<String>,
    /// The rail; by default the first that claims the entry.
    #[serde(default)]
    rail: Option<String>,
    #[serde(default = "default_max_timeout")]
    max_timeout_secs: u64,
    /// The rail's own fields.
    #[serde(flatten)]
    fields: toml::Table,
}

fn default_max_timeout() -> u64 {
    60
}

impl RawAccept {
    /// The entry, read by its rail.
    pub(super) fn read(self, networks: &Networks) -> Result<AcceptConfig, FieldError> {
        let rail = registry::rail_of(self.rail.as_deref(), &self.fields, networks)?;
        let settings = (rail.parse)(self.fields)?;
        Ok(AcceptConfig { common: Common { name: self.name, max_timeout_secs: self.max_timeout_secs }, rail, settings })
    }
}

/// One way the seller accepts money: an `[[accept]]` entry read by its rail.
#[derive(Debug, Clone)]
pub struct AcceptConfig {
    pub common: Common,
    pub rail: &'static Rail,
    pub settings: Arc<dyn RailConfig>,
}

/// As the file has it, with the rail named and secrets masked.
impl Serialize for AcceptConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.settings.printed();
        let mut map = serializer.serialize_map(Some(fields.len() + 3))?;
        if let Some(name) = &self.common.name {
            map.serialize_entry("name", name)?;
        }
        map.serialize_entry("rail", self.rail.name)?;
        map.serialize_entry("max_timeout_secs", &self.common.max_timeout_secs)?;
        for (key, value) in &fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
