//! `Payment-Receipt`: proof, sent only with a successful response, that a payment settled.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{DecodeError, b64, limits};

/// A payment receipt. Methods add fields (`challengeId`, `externalId`, ...) beside the required ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Always `"success"`.
    pub status: String,
    pub method: String,
    /// RFC 3339.
    pub timestamp: String,
    /// The settlement's reference: a transaction hash, a PaymentIntent id, a payment hash.
    pub reference: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Receipt {
    pub fn success(method: impl Into<String>, reference: impl Into<String>, timestamp: impl Into<String>) -> Self {
        Receipt {
            status: "success".into(),
            method: method.into(),
            timestamp: timestamp.into(),
            reference: reference.into(),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    pub fn to_header(&self) -> String {
        b64::url_encode(&serde_json::to_vec(self).expect("receipt serializes"))
    }

    pub fn from_header(value: &str) -> Result<Receipt, DecodeError> {
        limits::check_len(value, limits::MAX_CREDENTIAL_HEADER_BYTES)?;
        let bytes = b64::url_decode(value)?;
        limits::check_json_depth(&bytes)?;
        serde_json::from_slice(&bytes).map_err(DecodeError::json)
    }
}
