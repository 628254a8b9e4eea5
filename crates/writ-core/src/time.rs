//! Instants and durations as plain integers of milliseconds, so the core never reads a clock.

use std::fmt;

use crate::error::Refusal;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The instant `duration` later; saturates instead of overflowing.
    pub fn plus(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration.as_millis()))
    }

    /// RFC 3339 in UTC with millisecond precision, for example `2026-11-23T08:31:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| t.format(&format).ok())
            .unwrap_or_else(|| format!("@{}ms", self.0))
    }

    /// Parses RFC 3339 (any offset) into a UTC instant.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok().map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A positive span of time, at most [`Duration::MAX_DAYS`] days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(i64);

impl Duration {
    /// The longest duration Writ accepts anywhere (one year).
    pub const MAX_DAYS: i64 = 366;
    const MAX_MILLIS: i64 = Self::MAX_DAYS * 86_400_000;

    pub fn from_millis(millis: i64) -> Result<Duration, Refusal> {
        if millis <= 0 || millis > Self::MAX_MILLIS {
            return Err(Refusal::InvalidDuration {
                input: format!("{millis}ms"),
                reason: "must be positive and at most 366 days",
            });
        }
        Ok(Duration(millis))
    }

    pub const fn seconds(seconds: i64) -> Duration {
        Duration(seconds * 1000)
    }

    pub const fn minutes(minutes: i64) -> Duration {
        Duration(minutes * 60_000)
    }

    pub const fn hours(hours: i64) -> Duration {
        Duration(hours * 3_600_000)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Parses `90s`, `30m`, `8h`, `7d`, `2w` and combinations such as `1h30m`.
    pub fn parse(input: &str) -> Result<Duration, Refusal> {
        let invalid = |reason| Refusal::InvalidDuration { input: input.chars().take(40).collect(), reason };
        let text = input.trim();
        if text.is_empty() {
            return Err(invalid("empty; use a number and a unit, for example 8h or 7d"));
        }
        let mut total: i64 = 0;
        let mut number: Option<i64> = None;
        for c in text.chars() {
            if let Some(digit) = c.to_digit(10) {
                let next = number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(digit)))
                    .ok_or_else(|| invalid("number too large"))?;
                number = Some(next);
                continue;
            }
            let unit_millis = match c {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 7 * 86_400_000,
                _ => return Err(invalid("unknown unit; use s, m, h, d or w")),
            };
            let count = number.take().ok_or_else(|| invalid("a unit must follow a number"))?;
            total = count
                .checked_mul(unit_millis)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| invalid("too long"))?;
        }
        if number.is_some() {
            return Err(invalid("missing unit after the last number; use s, m, h, d or w"));
        }
        Duration::from_millis(total).map_err(|_| invalid("must be positive and at most 366 days"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut wrote = false;
        for (unit, millis) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if rest >= millis {
                write!(f, "{}{unit}", rest / millis)?;
                rest %= millis;
                wrote = true;
            }
        }
        if rest > 0 || !wrote {
            write!(f, "{rest}ms")?;
        }
        Ok(())
    }
}
