//! Timestamps, in the three shapes we write: Unix seconds, RFC 3339 (UTC,
//! seconds, in manifests and sidecars), and the compact form used in names
//! (`20261124T150102Z`, `20261124T150102.123Z`), which sorts by time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch (0 for a clock before it).
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-11-24T15:01:02Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `2026-11-24T15:01:02Z` for Unix seconds.
pub fn rfc3339_unix(secs: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Now, as Unix seconds and RFC 3339.
pub fn now() -> (u64, String) {
    let t = SystemTime::now();
    (unix(t), rfc3339(t))
}

/// `20261124T150102Z`, or with `millis` `20261124T150102.123Z`: for names.
pub fn compact(t: SystemTime, millis: bool) -> String {
    let s = if millis {
        humantime::format_rfc3339_millis(t).to_string()
    } else {
        rfc3339(t)
    };
    s.chars().filter(|c| *c != '-' && *c != ':').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(unix(t), 1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339_unix(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(compact(t, false), "20261118T110640Z");
        assert_eq!(compact(t, true), "20261118T110640.123Z");
    }
}
