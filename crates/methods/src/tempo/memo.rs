//! MPP attribution memos: the `bytes32` a client puts on its TIP-20 `transferWithMemo` to bind the transfer to
//! one server (realm) and one challenge.
//!
//! Layout (mppx 0.11 `dist/tempo/Attribution.js`, mpp-rs `src/tempo/attribution.rs`):
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..4   | tag: `keccak256("mpp")[0..4]` = `ef1ed712` |
//! | 4      | version `0x01` |
//! | 5..15  | server fingerprint: `keccak256(realm)[0..10]` |
//! | 15..25 | client fingerprint: `keccak256(clientId)[0..10]`, or zeros for an anonymous client |
//! | 25..32 | challenge nonce: `keccak256(challengeId)[0..7]` |
//!
//! A memo binds a transfer when its tag, version, server fingerprint and challenge nonce all match; the client
//! fingerprint is informational. Without this binding anyone could present someone else's transfer to the
//! recipient as payment for their own challenge ("transaction hash stealing").

use alloy::primitives::{B256, keccak256};

/// `keccak256("mpp")[0..4]`.
pub const MEMO_TAG: [u8; 4] = [0xef, 0x1e, 0xd7, 0x12];

/// The memo layout version this module reads and writes.
pub const MEMO_VERSION: u8 = 0x01;

/// The fields of an MPP attribution memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionMemo {
    pub version: u8,
    /// `keccak256(serverId)[0..10]`; the server id is the challenge realm.
    pub server_fingerprint: [u8; 10],
    /// `keccak256(clientId)[0..10]`, `None` for the anonymous (all-zero) client.
    pub client_fingerprint: Option<[u8; 10]>,
    /// `keccak256(challengeId)[0..7]`.
    pub challenge_nonce: [u8; 7],
}

fn prefix<const N: usize>(text: &str) -> [u8; N] {
    let hash = keccak256(text.as_bytes());
    let mut out = [0u8; N];
    out.copy_from_slice(&hash[..N]);
    out
}

/// The 10-byte fingerprint of a server or client id.
pub fn fingerprint(id: &str) -> [u8; 10] {
    prefix(id)
}

/// The 7-byte nonce binding a memo to a challenge id.
pub fn challenge_nonce(challenge_id: &str) -> [u8; 7] {
    prefix(challenge_id)
}

/// Encodes the attribution memo a client sends for challenge `challenge_id` of `realm` (what mppx's client
/// does before paying).
pub fn encode_memo(realm: &str, challenge_id: &str, client_id: Option<&str>) -> B256 {
    let mut memo = [0u8; 32];
    memo[..4].copy_from_slice(&MEMO_TAG);
    memo[4] = MEMO_VERSION;
    memo[5..15].copy_from_slice(&fingerprint(realm));
    if let Some(client_id) = client_id {
        memo[15..25].copy_from_slice(&fingerprint(client_id));
    }
    memo[25..].copy_from_slice(&challenge_nonce(challenge_id));
    B256::from(memo)
}

/// Whether `memo` is an MPP attribution memo at all (tag and version).
pub fn is_mpp_memo(memo: &B256) -> bool {
    memo[..4] == MEMO_TAG && memo[4] == MEMO_VERSION
}

/// The fields of an MPP attribution memo; `None` for any other memo.
pub fn decode_memo(memo: &B256) -> Option<AttributionMemo> {
    if !is_mpp_memo(memo) {
        return None;
    }
    let mut server_fingerprint = [0u8; 10];
    server_fingerprint.copy_from_slice(&memo[5..15]);
    let mut client = [0u8; 10];
    client.copy_from_slice(&memo[15..25]);
    let mut challenge_nonce = [0u8; 7];
    challenge_nonce.copy_from_slice(&memo[25..]);
    Some(AttributionMemo {
        version: memo[4],
        server_fingerprint,
        client_fingerprint: (client != [0u8; 10]).then_some(client),
        challenge_nonce,
    })
}

/// Whether `memo` binds a transfer to challenge `challenge_id` of `realm`.
pub fn is_memo_bound(memo: &B256, realm: &str, challenge_id: &str) -> bool {
    decode_memo(memo).is_some_and(|decoded| {
        decoded.server_fingerprint == fingerprint(realm) && decoded.challenge_nonce == challenge_nonce(challenge_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_keccak_of_mpp() {
        assert_eq!(keccak256(b"mpp")[..4], MEMO_TAG);
    }

    #[test]
    fn encodes_what_mppx_encodes() {
        // mppx 0.11 Attribution.encode({challengeId: "challenge-123", serverId: "api.example.com"}), also the
        // memo of the mpp-tools receipt vectors.
        let memo = encode_memo("api.example.com", "challenge-123", None);
        assert_eq!(format!("{memo:x}"), "ef1ed712011ece072f76bd8b82350e00000000000000000000eb18f2d4402269");
        // ... and with clientId "my-app".
        let memo = encode_memo("api.example.com", "challenge-123", Some("my-app"));
        assert_eq!(format!("{memo:x}"), "ef1ed712011ece072f76bd8b82350e3a180fb9d0177aa2f371eb18f2d4402269");
        let decoded = decode_memo(&memo).unwrap();
        assert_eq!(decoded.client_fingerprint, Some(fingerprint("my-app")));
        assert!(is_memo_bound(&memo, "api.example.com", "challenge-123"));
        assert!(!is_memo_bound(&memo, "api.example.com", "challenge-124"));
        assert!(!is_memo_bound(&memo, "other.example.com", "challenge-123"));
        assert!(decode_memo(&B256::repeat_byte(0xab)).is_none());
    }
}
