//! The x402 `payment-identifier` extension (`specs/extensions/payment_identifier.md`): a client's idempotency key
//! for one payment. A server declares it in `PAYMENT-REQUIRED`'s `extensions`; a client that wants its retries
//! recognized echoes the declaration in its payload's `extensions` and adds `info.id`, 16 to 128 characters of
//! `[A-Za-z0-9_-]`.

use serde_json::{Map, Value, json};

/// The extension's key in `extensions`.
pub const KEY: &str = "payment-identifier";

/// Shortest and longest id.
pub const ID_LEN: std::ops::RangeInclusive<usize> = 16..=128;

/// The declaration a 402 carries, exactly as `@x402/extensions`' `declarePaymentIdentifierExtension` writes it.
pub fn declaration(required: bool) -> Value {
    json!({
        "info": { "required": required },
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": { "type": "boolean" },
                "id": { "type": "string", "minLength": ID_LEN.start(), "maxLength": ID_LEN.end(), "pattern": "^[a-zA-Z0-9_-]+$" }
            },
            "required": ["required"]
        }
    })
}

/// An id that breaks the extension's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment-identifier: {0}")]
pub struct InvalidId(pub &'static str);

/// The id a payload's `extensions` carry: `None` when the client sent none (no extension, or the declaration
/// echoed without `info.id`).
pub fn id(extensions: Option<&Map<String, Value>>) -> Result<Option<&str>, InvalidId> {
    let Some(info) = extensions.and_then(|e| e.get(KEY)).and_then(|e| e.get("info")) else { return Ok(None) };
    match info.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if !ID_LEN.contains(&id.len()) => Err(InvalidId("the id must be 16 to 128 characters")),
        Some(Value::String(id)) if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
            Err(InvalidId("the id may only hold letters, digits, '-' and '_'"))
        }
        Some(Value::String(id)) => Ok(Some(id)),
        Some(_) => Err(InvalidId("the id must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extensions(info: Value) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert(KEY.into(), json!({ "info": info }));
        map
    }

    #[test]
    fn ids_follow_the_extension_rules() {
        let good = extensions(json!({ "required": false, "id": "pay_7d5d747be160e280504c099d984bcfe0" }));
        assert_eq!(id(Some(&good)), Ok(Some("pay_7d5d747be160e280504c099d984bcfe0")));
        assert_eq!(id(None), Ok(None));
        assert_eq!(id(Some(&extensions(json!({ "required": false })))), Ok(None), "the echoed declaration");
        assert!(id(Some(&extensions(json!({ "id": "short" })))).is_err());
        assert!(id(Some(&extensions(json!({ "id": "x".repeat(129) })))).is_err());
        assert!(id(Some(&extensions(json!({ "id": "pay_with spaces_and_more" })))).is_err());
        assert!(id(Some(&extensions(json!({ "id": 1234567890123456789u64 })))).is_err());
    }
}
