//! `WWW-Authenticate: Payment` challenges: the RFC 9110 auth-param grammar, parsed in one linear pass.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{DecodeError, b64, jcs, limits};

/// One payment challenge. `request` is held decoded; on the wire it is base64url of its JCS form.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// The binding of all other parameters (an HMAC in paygate); never empty.
    pub id: String,
    pub realm: String,
    /// Payment method, lowercase (`evm`, `tempo`, `stripe`, `lightning`).
    pub method: String,
    /// Payment intent (`charge`).
    pub intent: String,
    /// Method-specific request object.
    pub request: Value,
    pub description: Option<String>,
    /// Body digest, `sha-256=<base64>`, for requests with a body.
    pub digest: Option<String>,
    /// RFC 3339 expiry.
    pub expires: Option<String>,
    /// The credential header the client must use when it is not `Authorization`.
    pub header: Option<String>,
    /// Server data echoed verbatim: base64url of JCS JSON.
    pub opaque: Option<String>,
}

/// Why a challenge could not be written as a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("parameter {0} contains a line break")]
    LineBreak(&'static str),
}

impl Challenge {
    /// The `request` parameter as sent: base64url (no padding) of the JCS text.
    pub fn request_b64(&self) -> String {
        b64::url_encode(jcs::canonicalize(&self.request).as_bytes())
    }

    /// The header value, parameters in mppx's order, every value a quoted-string.
    pub fn to_header(&self) -> Result<String, FormatError> {
        let request = self.request_b64();
        ChallengeParams {
            id: &self.id,
            realm: &self.realm,
            method: &self.method,
            intent: &self.intent,
            request: &request,
            description: self.description.as_deref(),
            digest: self.digest.as_deref(),
            expires: self.expires.as_deref(),
            header: self.header.as_deref(),
            opaque: self.opaque.as_deref(),
        }
        .to_header()
    }
}

/// A challenge's parameters as they go on the wire, borrowed: how a server that keeps the encoded `request`
/// of each offer writes challenges without re-encoding it.
#[derive(Debug, Clone, Copy)]
pub struct ChallengeParams<'a> {
    pub id: &'a str,
    pub realm: &'a str,
    pub method: &'a str,
    pub intent: &'a str,
    /// base64url of the JCS request.
    pub request: &'a str,
    pub description: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub expires: Option<&'a str>,
    pub header: Option<&'a str>,
    pub opaque: Option<&'a str>,
}

impl ChallengeParams<'_> {
    /// The header value, parameters in mppx's order, every value a quoted-string.
    pub fn to_header(&self) -> Result<String, FormatError> {
        let params: [(&'static str, Option<&str>); 10] = [
            ("id", Some(self.id)),
            ("realm", Some(self.realm)),
            ("method", Some(self.method)),
            ("intent", Some(self.intent)),
            ("request", Some(self.request)),
            ("description", self.description),
            ("digest", self.digest),
            ("expires", self.expires),
            ("header", self.header),
            ("opaque", self.opaque),
        ];
        let mut out = String::with_capacity(64 + params.iter().map(|(_, v)| v.map_or(0, str::len) + 16).sum::<usize>());
        out.push_str(super::SCHEME);
        let mut first = true;
        for (name, value) in params {
            let Some(value) = value else { continue };
            let mut plain = true;
            for b in value.bytes() {
                match b {
                    b'\r' | b'\n' => return Err(FormatError::LineBreak(name)),
                    b'\\' | b'"' | 0x80.. => plain = false,
                    _ => {}
                }
            }
            out.push_str(if first { " " } else { ", " });
            first = false;
            out.push_str(name);
            out.push_str("=\"");
            if plain {
                out.push_str(value);
            } else {
                for c in value.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        c if (c as u32) > 0xff => {
                            // Header values are byte strings; mppx writes and reads these escapes.
                            let mut units = [0u16; 2];
                            for unit in c.encode_utf16(&mut units) {
                                out.push_str(&format!("\\u{unit:04x}"));
                            }
                        }
                        c => out.push(c),
                    }
                }
            }
            out.push('"');
        }
        Ok(out)
    }
}

/// Parses the first `Payment` challenge of a `WWW-Authenticate` value.
pub fn parse_challenge(value: &str) -> Result<Challenge, DecodeError> {
    parse_challenges(value)
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(DecodeError::Grammar("no Payment challenge".into())))
}

/// Parses every `Payment` challenge of a `WWW-Authenticate` value (several may be joined by commas, and other
/// schemes may sit between them). Each challenge parses or fails on its own.
pub fn parse_challenges(value: &str) -> Vec<Result<Challenge, DecodeError>> {
    if let Err(e) = limits::check_len(value, limits::MAX_CHALLENGE_HEADER_BYTES) {
        return vec![Err(e)];
    }
    let starts = scheme_starts(value);
    let mut out = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate().take(limits::MAX_CHALLENGES) {
        let end = starts.get(i + 1).copied().unwrap_or(value.len());
        out.push(parse_params(&value[start + super::SCHEME.len()..end]).and_then(Challenge::from_params));
    }
    out
}

/// Byte offsets where a `Payment` scheme token starts: outside quotes, at the start or after a comma, and
/// followed by whitespace or the end.
fn scheme_starts(value: &str) -> Vec<usize> {
    let bytes = value.as_bytes();
    let token = super::SCHEME.as_bytes();
    let mut starts = Vec::new();
    let (mut in_quotes, mut escaped) = (false, false);
    let mut boundary = true; // only whitespace since the start or the last comma
    for (i, &b) in bytes.iter().enumerate() {
        if in_quotes {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_quotes = true;
                boundary = false;
            }
            b',' => boundary = true,
            b' ' | b'\t' => {}
            _ => {
                if boundary
                    && bytes.len() >= i + token.len()
                    && bytes[i..i + token.len()].eq_ignore_ascii_case(token)
                    && bytes.get(i + token.len()).is_none_or(|c| *c == b' ' || *c == b'\t')
                {
                    starts.push(i);
                }
                boundary = false;
            }
        }
    }
    starts
}

/// Parses `name=value` pairs up to the first token that is not followed by `=` (the start of another scheme,
/// or trailing junk), rejecting duplicates. An unterminated quoted-string ends the list.
fn parse_params(input: &str) -> Result<Vec<(String, String)>, DecodeError> {
    let bytes = input.as_bytes();
    let mut params: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-') {
            i += 1;
        }
        if i == key_start {
            break;
        }
        let key = input[key_start..i].to_ascii_lowercase();
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            break;
        }
        i += 1;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        let value = if bytes.get(i) == Some(&b'"') {
            match read_quoted(input, i + 1) {
                Some((value, next)) => {
                    i = next;
                    value
                }
                None => break,
            }
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            input[start..i].trim().to_owned()
        };
        if params.iter().any(|(k, _)| *k == key) {
            return Err(DecodeError::Grammar(format!("duplicate parameter {key}")));
        }
        params.push((key, value));
    }
    Ok(params)
}

/// Reads a quoted-string body starting after the opening quote; `None` when it never closes.
fn read_quoted(input: &str, start: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = input[start..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return Some((out, start + offset + 1)),
            '\\' => {
                let (_, next) = chars.next()?;
                if next == 'u' {
                    let rest = &input[start + offset + 2..];
                    let hex = rest.get(..4).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                    if let Some(hex) = hex {
                        // Read a UTF-16 unit; pair surrogates written as two escapes.
                        let unit = u16::from_str_radix(hex, 16).ok()?;
                        for _ in 0..4 {
                            chars.next();
                        }
                        out.push_str(&decode_utf16_escape(unit, &mut chars));
                        continue;
                    }
                }
                out.push(next);
            }
            c => out.push(c),
        }
    }
    None
}

fn decode_utf16_escape(unit: u16, chars: &mut std::str::CharIndices<'_>) -> String {
    if !(0xD800..0xDC00).contains(&unit) {
        return char::from_u32(unit as u32).unwrap_or('\u{FFFD}').to_string();
    }
    // A high surrogate: expect `\uDCxx` next.
    let rest = chars.as_str();
    if let Some(low) = rest.strip_prefix("\\u").and_then(|r| r.get(..4)).and_then(|h| u16::from_str_radix(h, 16).ok())
        && (0xDC00..0xE000).contains(&low)
    {
        for _ in 0..6 {
            chars.next();
        }
        return String::from_utf16_lossy(&[unit, low]);
    }
    '\u{FFFD}'.to_string()
}

impl Challenge {
    fn from_params(params: Vec<(String, String)>) -> Result<Challenge, DecodeError> {
        let get = |name: &str| params.iter().position(|(k, _)| k == name).map(|i| params[i].1.clone());
        let required = |v: Option<String>, name: &str| -> Result<String, DecodeError> {
            v.ok_or_else(|| DecodeError::Grammar(format!("missing parameter {name}")))
        };
        let id = required(get("id"), "id")?;
        if id.is_empty() {
            return Err(DecodeError::Grammar("empty id".into()));
        }
        let realm = required(get("realm"), "realm")?;
        let method = required(get("method"), "method")?;
        let intent = required(get("intent"), "intent")?;
        let request = required(get("request"), "request")?;
        Ok(Challenge {
            id,
            realm,
            method,
            intent,
            request: decode_request(&request)?,
            description: get("description"),
            digest: get("digest"),
            expires: get("expires"),
            header: get("header"),
            opaque: get("opaque"),
        })
    }
}

/// Decodes a `request` parameter: base64url of a JSON object, at most [`limits::MAX_MPP_REQUEST_BYTES`].
pub(crate) fn decode_request(encoded: &str) -> Result<Value, DecodeError> {
    limits::check_len(encoded, limits::MAX_MPP_REQUEST_BYTES)?;
    let bytes = b64::url_decode(encoded)?;
    limits::check_json_depth(&bytes)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(DecodeError::json)?;
    if !value.is_object() {
        return Err(DecodeError::Json("request is not a JSON object".into()));
    }
    Ok(value)
}

/// The JSON form of a challenge inside a credential: the same parameters, `request` as its base64url string.
#[derive(Serialize, Deserialize)]
struct ChallengeEcho {
    id: String,
    realm: String,
    method: String,
    intent: String,
    request: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    /// A string; legacy mppx clients sent the decoded object, which is normalized back to its string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    opaque: Option<Value>,
}

impl Serialize for Challenge {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ChallengeEcho {
            id: self.id.clone(),
            realm: self.realm.clone(),
            method: self.method.clone(),
            intent: self.intent.clone(),
            request: self.request_b64(),
            description: self.description.clone(),
            digest: self.digest.clone(),
            expires: self.expires.clone(),
            header: self.header.clone(),
            opaque: self.opaque.clone().map(Value::String),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Challenge {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let echo = ChallengeEcho::deserialize(deserializer)?;
        if echo.id.is_empty() {
            return Err(D::Error::custom("empty challenge id"));
        }
        let opaque = match echo.opaque {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(object @ Value::Object(_)) => Some(b64::url_encode(jcs::canonicalize(&object).as_bytes())),
            Some(_) => return Err(D::Error::custom("opaque is neither a string nor an object")),
        };
        Ok(Challenge {
            id: echo.id,
            realm: echo.realm,
            method: echo.method,
            intent: echo.intent,
            request: decode_request(&echo.request).map_err(D::Error::custom)?,
            description: echo.description,
            digest: echo.digest,
            expires: echo.expires,
            header: echo.header,
            opaque,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Challenge {
        Challenge {
            id: "abc".into(),
            realm: "api.example.com".into(),
            method: "evm".into(),
            intent: "charge".into(),
            request: json!({"amount": "10", "currency": "0x1"}),
            description: Some("Pay \"here\" \\ now — thanks".into()),
            digest: None,
            expires: Some("2026-01-01T00:00:00Z".into()),
            header: None,
            opaque: Some("e30".into()),
        }
    }

    #[test]
    fn header_round_trips_with_escapes_and_non_latin1() {
        let c = sample();
        let header = c.to_header().unwrap();
        assert!(header.is_ascii(), "{header}");
        assert_eq!(parse_challenge(&header).unwrap(), c);
    }

    #[test]
    fn astral_characters_round_trip_as_surrogate_pairs() {
        let mut c = sample();
        c.description = Some("pay \u{1F600}".into());
        assert_eq!(parse_challenge(&c.to_header().unwrap()).unwrap(), c);
    }

    #[test]
    fn several_challenges_in_one_value_and_other_schemes_between() {
        let a = sample().to_header().unwrap();
        let mut other = sample();
        other.id = "second".into();
        let b = other.to_header().unwrap();
        let joined = format!("{a}, Bearer realm=\"x\", {b}");
        let parsed: Vec<_> = parse_challenges(&joined).into_iter().map(Result::unwrap).collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].id, "second");
    }

    #[test]
    fn echo_json_carries_request_as_string_and_normalizes_object_opaque() {
        let c = sample();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["request"], c.request_b64());
        let mut legacy = v.clone();
        legacy["opaque"] = json!({});
        let back: Challenge = serde_json::from_value(legacy).unwrap();
        assert_eq!(back.opaque.as_deref(), Some("e30"));
    }
}
