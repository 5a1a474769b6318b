//! The lease length [`Ttl`], and the duration syntax (`500ms`, `30s`, `5m`)
//! shared by URLs and the command line.

use crate::{Error, Result};
use std::fmt;
use std::time::Duration;

/// How long the store keeps a hold alive without renewal: 100 ms to 24 h,
/// 30 s by default. Backends whose stores count whole seconds or sessions
/// round up and report the effective ttl on the guard.
///
/// # Examples
/// ```
/// use lock_core::Ttl;
/// use std::time::Duration;
/// assert_eq!(Ttl::default().get(), Duration::from_secs(30));
/// assert!(Ttl::new(Duration::from_millis(99)).is_err());
/// assert!(Ttl::new(Duration::from_secs(24 * 3600 + 1)).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(Duration);

impl Ttl {
    /// The shortest ttl.
    pub const MIN: Duration = Duration::from_millis(100);
    /// The longest ttl.
    pub const MAX: Duration = Duration::from_secs(24 * 3600);
    /// The default ttl, as Redisson's watchdog and etcd's session.
    pub const DEFAULT: Duration = Duration::from_secs(30);

    /// Validates `ttl`, or fails with [`Error::InvalidConfig`].
    pub fn new(ttl: Duration) -> Result<Self> {
        if ttl < Self::MIN || ttl > Self::MAX {
            return Err(Error::InvalidConfig(format!(
                "ttl {} is out of range (100ms to 24h)",
                format_duration(ttl)
            )));
        }
        Ok(Ttl(ttl))
    }

    /// The ttl as a duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The ttl in whole milliseconds (never 0).
    pub fn as_millis(self) -> u64 {
        // At most 24 h, so this fits easily.
        self.0.as_millis() as u64
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl(Self::DEFAULT)
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d` or a mix (`1m30s`). A bare
/// number is refused: units are required so that `30` is never read as
/// 30 ms by one tool and 30 s by another.
///
/// # Examples
/// ```
/// use lock_core::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert!(parse_duration("30").is_err());
/// assert!(parse_duration("-1s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = |why: &str| {
        Error::InvalidConfig(format!(
            "bad duration {text:?}: {why} (use e.g. 500ms, 30s, 5m, 2h)"
        ))
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n
                .checked_mul(60)
                .map(Duration::from_secs)
                .ok_or_else(|| bad("too large"))?,
            "h" => n
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(|| bad("too large"))?,
            "d" => n
                .checked_mul(86400)
                .map(Duration::from_secs)
                .ok_or_else(|| bad("too large"))?,
            "" => return Err(bad("missing unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        total = total.checked_add(part).ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ttl_bounds() {
        assert!(
            Ttl::new(Duration::ZERO)
                .unwrap_err()
                .to_string()
                .contains("0s")
        );
        assert!(Ttl::new(Duration::from_millis(100)).is_ok());
        assert!(Ttl::new(Duration::from_secs(86400)).is_ok());
        let years = Ttl::new(Duration::from_secs(3 * 365 * 86400)).unwrap_err();
        assert!(years.to_string().contains("out of range"), "{years}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in [
            "",
            "s",
            "10x",
            "1.5s",
            "99999999999999999999s",
            "1s-",
            " ms",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..(48 * 3600 * 1000)) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }

        #[test]
        fn parse_never_panics(s in ".{0,20}") {
            let _ = parse_duration(&s);
        }
    }
}
