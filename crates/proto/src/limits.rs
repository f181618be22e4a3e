//! Size limits on everything this crate decodes. They are generous for honest clients (MPP asks servers to
//! accept credentials of at least 4 KiB; x402 payloads are under 2 KiB) and small enough that no header can
//! make the gateway allocate or recurse much.

/// The largest payment header value (`PAYMENT-SIGNATURE`, `X-PAYMENT`, `Authorization: Payment`) decoded.
pub const MAX_CREDENTIAL_HEADER_BYTES: usize = 16 * 1024;

/// The largest `WWW-Authenticate` or `PAYMENT-REQUIRED` value a client decodes.
pub const MAX_CHALLENGE_HEADER_BYTES: usize = 64 * 1024;

/// The largest decoded MPP `request` parameter (mppx refuses more than 16 KiB too).
pub const MAX_MPP_REQUEST_BYTES: usize = 16 * 1024;

/// The deepest JSON nesting accepted in a credential. Real payloads nest four levels.
pub const MAX_JSON_DEPTH: usize = 16;

/// The most challenges read from one 402.
pub const MAX_CHALLENGES: usize = 64;

/// Rejects values over `limit` bytes before any decoding work.
pub fn check_len(value: &str, limit: usize) -> Result<(), crate::DecodeError> {
    if value.len() > limit {
        return Err(crate::DecodeError::TooLarge { len: value.len(), limit });
    }
    Ok(())
}

/// Rejects JSON text nested deeper than [`MAX_JSON_DEPTH`], scanning bytes only (strings are skipped), so that
/// a hostile credential cannot make the parser recurse.
pub fn check_json_depth(bytes: &[u8]) -> Result<(), crate::DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(crate::DecodeError::Json(format!("nested deeper than {MAX_JSON_DEPTH} levels")));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit_counts_only_structure() {
        assert!(check_json_depth(br#"{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[["}"#).is_ok());
        let deep = "[".repeat(MAX_JSON_DEPTH + 1);
        assert!(check_json_depth(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_JSON_DEPTH);
        assert!(check_json_depth(ok.as_bytes()).is_ok());
    }
}
