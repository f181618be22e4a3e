//! The x402 402 as a server writes it, serialized from borrowed parts: a gateway makes a 402 for every unpaid
//! request, and these types let it write the offers it computed once per route without copying them into the
//! owned types of [`super`]. Each serializes exactly as its owned counterpart does, byte for byte (the tests
//! below check it), so a client cannot tell which one wrote the header.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The key under `extra` where paygate binds an offer to its challenge.
pub const BINDING_KEY: &str = "paygate";

/// A v2 `accepts[]` entry with the server's binding added to `extra` (as [`super::PaymentRequirements`] whose
/// `extra` holds `paygate` beside the scheme's fields).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundRequirements<'a> {
    pub scheme: &'a str,
    pub network: &'a str,
    pub amount: &'a str,
    pub asset: &'a str,
    pub pay_to: &'a str,
    pub max_timeout_seconds: u64,
    pub extra: BoundExtra<'a>,
}

/// A scheme's `extra` with the binding under [`BINDING_KEY`].
#[derive(Debug)]
pub struct BoundExtra<'a> {
    pub base: &'a Map<String, Value>,
    pub binding: Binding<'a>,
}

/// What binds an offer to its challenge: the id, its expiry and the 402's nonce. (Fields in the order of their
/// names, as a map of them serializes whether or not maps keep insertion order.)
#[derive(Debug, Serialize)]
pub struct Binding<'a> {
    pub expires: &'a str,
    pub id: &'a str,
    pub nonce: &'a str,
}

/// Whether `serde_json::Map` keeps insertion order (its `preserve_order` feature, which another crate of a build
/// may turn on) or sorts its keys: [`BoundExtra`] writes its keys in the order the owned map would.
fn maps_keep_insertion_order() -> bool {
    static KEEPS: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        let mut map = Map::new();
        map.insert("b".into(), Value::Null);
        map.insert("a".into(), Value::Null);
        map.keys().next().is_some_and(|k| k == "b")
    });
    *KEEPS
}

impl Serialize for BoundExtra<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.base.len() + 1))?;
        let mut bound = false;
        for (key, value) in self.base {
            if key == BINDING_KEY {
                continue;
            }
            if !bound && !maps_keep_insertion_order() && key.as_str() > BINDING_KEY {
                map.serialize_entry(BINDING_KEY, &self.binding)?;
                bound = true;
            }
            map.serialize_entry(key, value)?;
        }
        if !bound {
            map.serialize_entry(BINDING_KEY, &self.binding)?;
        }
        map.end()
    }
}

/// The `PAYMENT-REQUIRED` header's document (as [`super::PaymentRequired`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired<'a> {
    pub x402_version: u32,
    pub error: &'a str,
    pub resource: Resource<'a>,
    pub accepts: Vec<BoundRequirements<'a>>,
    pub extensions: &'a Map<String, Value>,
}

/// The resource a 402 is about (as [`super::ResourceInfo`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource<'a> {
    pub url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<&'a str>,
}

/// A v1 `accepts[]` entry (as [`super::v1::PaymentRequirements`] with a media type).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct V1Requirements<'a> {
    pub scheme: &'a str,
    pub network: &'a str,
    pub max_amount_required: &'a str,
    pub asset: &'a str,
    pub pay_to: &'a str,
    pub resource: &'a str,
    pub description: &'a str,
    pub mime_type: &'a str,
    /// Always `null`: no output schema is declared.
    pub output_schema: Option<()>,
    pub max_timeout_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<&'a Map<String, Value>>,
}

/// The 402 body: an RFC 9457 problem whose extension members are also x402 v1's 402 body (`x402Version`,
/// `error`, `accepts`), so one body serves problem-aware clients and v1 clients alike.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    pub reason: &'a str,
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x402_version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accepts: Vec<V1Requirements<'a>>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::x402::{PaymentRequirements, ResourceInfo, v1};

    fn extra() -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("name".into(), json!("USD Coin"));
        extra.insert("version".into(), json!("2"));
        extra
    }

    #[test]
    fn the_borrowed_402_serializes_as_the_owned_one_byte_for_byte() {
        let base = extra();
        let mut extensions = Map::new();
        extensions.insert("payment-identifier".into(), json!({ "info": { "required": false } }));
        let borrowed = PaymentRequired {
            x402_version: 2,
            error: "PAYMENT-SIGNATURE header is required",
            resource: Resource { url: "https://api.example/v1/quote", description: Some("A quote"), mime_type: None },
            accepts: vec![BoundRequirements {
                scheme: "exact",
                network: "eip155:8453",
                amount: "10000",
                asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                pay_to: "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
                max_timeout_seconds: 60,
                extra: BoundExtra {
                    base: &base,
                    binding: Binding { id: "id1", expires: "2026-12-03T00:00:00Z", nonce: "n1" },
                },
            }],
            extensions: &extensions,
        };
        let mut owned_extra = extra();
        owned_extra
            .insert(BINDING_KEY.into(), json!({ "id": "id1", "expires": "2026-12-03T00:00:00Z", "nonce": "n1" }));
        let owned = crate::x402::PaymentRequired {
            x402_version: 2,
            error: Some("PAYMENT-SIGNATURE header is required".into()),
            resource: ResourceInfo {
                url: "https://api.example/v1/quote".into(),
                description: Some("A quote".into()),
                mime_type: None,
            },
            accepts: vec![PaymentRequirements {
                scheme: "exact".into(),
                network: "eip155:8453".into(),
                amount: "10000".into(),
                asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
                pay_to: "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720".into(),
                max_timeout_seconds: 60,
                extra: Some(owned_extra),
            }],
            extensions: Some(extensions.clone()),
        };
        assert_eq!(serde_json::to_string(&borrowed).unwrap(), serde_json::to_string(&owned).unwrap());
    }

    #[test]
    fn borrowed_v1_offers_serialize_as_the_owned_ones_byte_for_byte() {
        let base = extra();
        let borrowed = V1Requirements {
            scheme: "exact",
            network: "base",
            max_amount_required: "10000",
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            pay_to: "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
            resource: "https://api.example/v1/quote",
            description: "",
            mime_type: "application/json",
            output_schema: None,
            max_timeout_seconds: 60,
            extra: Some(&base),
        };
        let owned = v1::PaymentRequirements {
            scheme: "exact".into(),
            network: "base".into(),
            max_amount_required: "10000".into(),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            pay_to: "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720".into(),
            resource: "https://api.example/v1/quote".into(),
            description: String::new(),
            mime_type: Some("application/json".into()),
            output_schema: None,
            max_timeout_seconds: 60,
            extra: Some(extra()),
        };
        assert_eq!(serde_json::to_string(&borrowed).unwrap(), serde_json::to_string(&owned).unwrap());
    }
}
