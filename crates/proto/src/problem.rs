//! RFC 9457 problem details: the `application/problem+json` body of every rejection.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of a problem body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// One problem details object. Extension members (for example `challengeId`, `reason`, `requestId`, or the
/// x402 v1 `accepts` array on a 402) sit beside the standard members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI that identifies the kind of problem; stable, so clients can switch on it.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind, the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension members.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(kind: impl Into<String>, title: impl Into<String>, status: u16) -> Self {
        Problem { kind: kind.into(), title: title.into(), status, detail: None, extensions: Map::new() }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_extension(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and a JSON map always serializes.
        serde_json::to_string(self).expect("problem serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_sit_beside_standard_members() {
        let p = Problem::new("urn:x", "X", 403).with_detail("d").with_extension("reason", "replayed");
        let v: Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(v["type"], "urn:x");
        assert_eq!(v["status"], 403);
        assert_eq!(v["reason"], "replayed");
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}
