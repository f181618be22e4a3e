//! Wall-clock time as Unix seconds, behind a trait so tests can pin it (the published EIP-3009 vector is only
//! valid inside a one-minute window in February 2025).

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// A clock stopped at one instant.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_unix(&self) -> u64 {
        self.0
    }
}

/// RFC 3339 in UTC with second precision (`2026-11-23T10:00:00Z`), the form both SDKs parse.
pub fn rfc3339(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix.min(253_402_300_799) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp into Unix seconds (fractions dropped); `None` if it is not RFC 3339.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(1_740_672_089), "2025-02-27T16:01:29Z");
        assert_eq!(parse_rfc3339("2025-02-27T16:01:29Z"), Some(1_740_672_089));
        assert_eq!(parse_rfc3339("2025-02-27T16:01:29.999Z"), Some(1_740_672_089));
        assert_eq!(parse_rfc3339("2025-02-27T17:01:29+01:00"), Some(1_740_672_089));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
