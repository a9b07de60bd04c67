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

/// `2026-11-24T15:01:02.123Z` for Unix milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Unix milliseconds of `t` (0 for a clock before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A moment an operator names, as Unix milliseconds: RFC 3339 with its
/// zone (`2026-12-03T03:12:07Z`, `2026-12-03 04:12:07.5+01:00`), a time
/// relative to `now` (`10 minutes ago`, `1h30m ago`), or Unix seconds
/// (`@1796302862`, as `date -d` takes them). A time without a zone is
/// refused: whose 03:12 it is would be a guess.
pub fn parse_moment(s: &str, now: SystemTime) -> Result<u64, String> {
    let t = s.trim();
    if let Some(ago) = t.strip_suffix("ago") {
        let d = humantime::parse_duration(ago.trim()).map_err(|e| {
            format!("{s:?}: not a duration before now ({e}); e.g. \"10 minutes ago\"")
        })?;
        let at = now
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?} is before the epoch"))?;
        return Ok(unix_ms(at));
    }
    if let Some(secs) = t.strip_prefix('@') {
        let n: u64 = secs
            .parse()
            .map_err(|_| format!("{s:?}: @ takes Unix seconds, e.g. @1796302862"))?;
        return n
            .checked_mul(1000)
            .ok_or_else(|| format!("{s:?} is too far in the future"));
    }
    // The zone: Z, or an offset +HH:MM / -HH:MM after the time.
    let (local, offset_s): (String, i64) = if let Some(l) = t.strip_suffix(['Z', 'z']) {
        (l.to_owned(), 0)
    } else {
        let b = t.as_bytes();
        let zoned = b.len() > 6
            && matches!(b[b.len() - 6], b'+' | b'-')
            && b[b.len() - 3] == b':'
            && t.contains(['T', 't', ' ']);
        if !zoned {
            return Err(format!(
                "{s:?} is not a time we read: give RFC 3339 with its zone \
                 (2026-12-03T03:12:07Z, or +01:00 for the offset), a relative \
                 \"10 minutes ago\", or Unix seconds as @N"
            ));
        }
        let (l, z) = t.split_at(t.len() - 6);
        let hours: i64 = z[1..3]
            .parse()
            .map_err(|_| format!("{s:?}: bad zone offset {z}"))?;
        let mins: i64 = z[4..6]
            .parse()
            .map_err(|_| format!("{s:?}: bad zone offset {z}"))?;
        if hours > 23 || mins > 59 {
            return Err(format!("{s:?}: bad zone offset {z}"));
        }
        let sign = if z.starts_with('-') { -1 } else { 1 };
        (l.to_owned(), sign * (hours * 3600 + mins * 60))
    };
    let utc = humantime::parse_rfc3339_weak(&local)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))?;
    // The wall time in the zone minus the zone's offset is UTC.
    let shifted = if offset_s >= 0 {
        utc.checked_sub(Duration::from_secs(offset_s as u64))
    } else {
        utc.checked_add(Duration::from_secs((-offset_s) as u64))
    };
    shifted
        .map(unix_ms)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// The time a name in the compact form starts with
/// (`20261124T150102.123Z-9f31c2aa`: a chain's or a generation's), as Unix
/// milliseconds; None for a name not of that form.
pub fn parse_compact(name: &str) -> Option<u64> {
    let stamp = &name[..name.find('Z')?];
    let (date, time) = stamp.split_once('T')?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    if date.len() != 8 || hms.len() != 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    let text = format!(
        "{}-{}-{}T{}:{}:{}{frac}Z",
        &date[..4],
        &date[4..6],
        &date[6..],
        &hms[..2],
        &hms[2..4],
        &hms[4..]
    );
    humantime::parse_rfc3339(&text).ok().map(unix_ms)
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
        assert_eq!(rfc3339_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(unix_ms(t), 1_795_000_000_123);
        assert_eq!(
            parse_compact(&format!("{}-9f31c2aa", compact(t, true))),
            Some(1_795_000_000_123)
        );
        assert_eq!(parse_compact(&compact(t, false)), Some(1_795_000_000_000));
        assert_eq!(parse_compact("chain-x"), None);
        assert_eq!(parse_compact("2026111T110640Z"), None);
    }

    #[test]
    fn moments() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let ms = |s: &str| parse_moment(s, now);
        assert_eq!(ms("2026-11-18T11:06:40Z"), Ok(1_795_000_000_000));
        assert_eq!(ms("2026-11-18T11:06:40.250Z"), Ok(1_795_000_000_250));
        assert_eq!(ms("2026-11-18 11:06:40z"), Ok(1_795_000_000_000));
        assert_eq!(ms("2026-11-18T12:06:40+01:00"), Ok(1_795_000_000_000));
        assert_eq!(ms("2026-11-18T06:36:40-04:30"), Ok(1_795_000_000_000));
        assert_eq!(ms("10 minutes ago"), Ok(1_795_000_000_000 - 600_000));
        assert_eq!(ms("1h30m ago"), Ok(1_795_000_000_000 - 5_400_000));
        assert_eq!(ms("@1795000000"), Ok(1_795_000_000_000));
        // No zone: whose wall clock would be a guess.
        assert!(ms("2026-11-18T11:06:40")
            .unwrap_err()
            .contains("with its zone"));
        assert!(ms("yesterday").unwrap_err().contains("with its zone"));
        assert!(ms("ten minutes ago")
            .unwrap_err()
            .contains("not a duration"));
        assert!(ms("2026-11-18T11:06:40+25:00")
            .unwrap_err()
            .contains("bad zone offset"));
        assert!(ms("2026-13-18T11:06:40Z")
            .unwrap_err()
            .contains("not an RFC 3339 time"));
        assert!(ms("@x").unwrap_err().contains("Unix seconds"));
    }
}
