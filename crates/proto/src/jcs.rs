//! RFC 8785 JSON Canonicalization Scheme.
//!
//! MPP clients re-serialize the `request` and `opaque` objects they parsed with JCS before echoing them, so a
//! challenge id (an HMAC over those bytes) only survives the round trip if the server emitted JCS too.

use serde::Serialize;

/// The canonical text of a JSON-serializable value.
pub fn canonicalize<T: Serialize>(value: &T) -> String {
    // Serializing plain data to JSON cannot fail: no map has non-string keys here.
    serde_json_canonicalizer::to_string(value).expect("JSON values always canonicalize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let value = json!({"b": 1, "a": {"d": [1, 2], "c": "x"}});
        assert_eq!(canonicalize(&value), r#"{"a":{"c":"x","d":[1,2]},"b":1}"#);
    }

    #[test]
    fn sorts_by_utf16_code_units_and_keeps_html_characters() {
        // "\u{e9}" (U+00E9) sorts before "\u{1F600}" (a surrogate pair starting 0xD83D) in UTF-16 order.
        let value = json!({"\u{1F600}": 1, "\u{e9}": 2, "<&>": "\u{2028}"});
        assert_eq!(canonicalize(&value), "{\"<&>\":\"\u{2028}\",\"\u{e9}\":2,\"\u{1F600}\":1}");
    }

    #[test]
    fn numbers_use_the_shortest_form() {
        assert_eq!(canonicalize(&json!([1.0, 1e21, 0.000001])), "[1,1e+21,0.000001]");
    }
}
