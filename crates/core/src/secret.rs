//! A secret read from configuration (a settler key, an API key, the challenge key): it never prints, neither in
//! `Debug` output nor when a configuration is printed back.

use serde::{Deserialize, Serialize, Serializer};

/// A secret string: its `Debug` never shows the value, and it serializes as `<secret>`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Printed configs show that a secret is set, never its value.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<secret>")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret: Secret = serde_json::from_str("\"s3cr3t\"").unwrap();
        assert_eq!(secret.expose(), "s3cr3t");
        assert_eq!(format!("{secret:?}"), "<secret>");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<secret>\"");
    }
}
