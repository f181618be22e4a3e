//! The two base64 flavours of the protocols.
//!
//! x402 headers are standard base64 *with* padding (the TypeScript reference validates
//! `^[A-Za-z0-9+/]*={0,2}$`). MPP uses base64url *without* padding on output and its SDKs accept padding and
//! the standard alphabet on input, so [`url_decode`] does too.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};

const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard alphabet, padded: the x402 header encoding.
pub fn std_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64; padding may be present or not.
pub fn std_decode(text: &str) -> Result<Vec<u8>, crate::DecodeError> {
    STANDARD_LENIENT.decode(text.trim()).map_err(|_| crate::DecodeError::Base64)
}

/// URL-safe alphabet without padding: the MPP encoding.
pub fn url_encode(bytes: &[u8]) -> String {
    general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding, and also the standard alphabet, as the MPP SDKs do.
pub fn url_decode(text: &str) -> Result<Vec<u8>, crate::DecodeError> {
    let text = text.trim();
    if text.contains(['+', '/']) {
        if text.contains(['-', '_']) {
            return Err(crate::DecodeError::Base64);
        }
        return STANDARD_LENIENT.decode(text).map_err(|_| crate::DecodeError::Base64);
    }
    URL_LENIENT.decode(text).map_err(|_| crate::DecodeError::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decode_accepts_padding_and_standard_alphabet() {
        assert_eq!(url_decode("e30").unwrap(), b"{}");
        assert_eq!(url_decode("e30=").unwrap(), b"{}");
        assert_eq!(url_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(url_decode("+/8").unwrap(), vec![0xfb, 0xff]);
        assert!(url_decode("+_8").is_err());
        assert!(url_decode("e3$0").is_err());
    }

    #[test]
    fn std_round_trip_pads() {
        assert_eq!(std_encode(b"{}"), "e30=");
        assert_eq!(std_decode("e30=").unwrap(), b"{}");
        assert_eq!(std_decode("e30").unwrap(), b"{}");
        assert!(std_decode("e3-_").is_err());
    }
}
