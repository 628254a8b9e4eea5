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
    /// Parses the one duration grammar Writ accepts: one or more `NUMBER UNIT` parts with units
    /// `w`, `d`, `h`, `m`, `s`, each at most once and in that order (`8h`, `1h30m`, `2w`), no
    /// blanks, no zero parts, no leading zeros; positive and at most [`Duration::MAX_DAYS`].
    pub fn parse(input: &str) -> Result<Duration, Refusal> {
        let invalid = |reason| Refusal::InvalidDuration { input: input.chars().take(40).collect(), reason };
        if input.is_empty() {
            return Err(invalid("empty; use a number and a unit, for example 8h or 7d"));
        }
        const UNITS: [(char, i64); 5] =
            [('w', 7 * 86_400_000), ('d', 86_400_000), ('h', 3_600_000), ('m', 60_000), ('s', 1_000)];
        let mut total: i64 = 0;
        let mut number = String::new();
        // The index in UNITS the next unit must come at or after.
        let mut next_unit = 0;
        for c in input.chars() {
            if c.is_ascii_digit() {
                if number == "0" {
                    return Err(invalid("a number may not start with 0"));
                }
                number.push(c);
                continue;
            }
            let Some((position, (_, unit_millis))) =
                UNITS.iter().enumerate().find(|(_, (unit, _))| *unit == c)
            else {
                return Err(invalid(
                    "unknown unit or character; use numbers and the units w, d, h, m, s (8h, 1h30m)",
                ));
            };
            if number.is_empty() {
                return Err(invalid("a unit must follow a number"));
            }
            if position < next_unit {
                return Err(invalid("each unit at most once, largest first (1d2h, not 2h1d or 1h1h)"));
            }
            next_unit = position + 1;
            let count: i64 = number.parse().map_err(|_| invalid("number too large"))?;
            if count == 0 {
                return Err(invalid("a part may not be zero"));
            }
            number.clear();
            total = count
                .checked_mul(*unit_millis)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| invalid("too long"))?;
        }
        if !number.is_empty() {
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
