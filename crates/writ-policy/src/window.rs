//! Maintenance windows: the recurring windows a policy allows (`allowed_windows = ["Tue-Thu
//! 22:00-02:00 Europe/Berlin"]`) and the one window a change carries, read in IANA time zones
//! from the time zone database compiled into the binary (so the answer never depends on the
//! machine). A recurring window opens on each of its days at its start, local time, and closes
//! at its end, on the next day if the end is not after the start.

use std::fmt;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use writ_core::change::Window;
use writ_core::time::Timestamp;

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// A window that recurs on some days of the week, in a time zone.
#[derive(Clone, Debug)]
pub struct Recurring {
    text: String,
    /// Monday first.
    days: [bool; 7],
    open: Time,
    close: Time,
    zone: TimeZone,
}

impl PartialEq for Recurring {
    fn eq(&self, other: &Recurring) -> bool {
        self.text == other.text
    }
}

impl Eq for Recurring {}

impl fmt::Display for Recurring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The time zone `name` names in the compiled-in database.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.len() > 64 || name.is_empty() {
        return Err(format!("{:?} is not a time zone name", name.chars().take(40).collect::<String>()));
    }
    TimeZone::get(name)
        .map_err(|_| format!("unknown time zone {name:?}: use an IANA name such as Europe/Berlin or UTC"))
}

fn weekday(text: &str) -> Result<usize, String> {
    let lower = text.to_ascii_lowercase();
    DAYS.iter()
        .position(|(name, _)| lower == *name)
        .ok_or_else(|| format!("{text:?} is not a day: use Mon, Tue, Wed, Thu, Fri, Sat or Sun"))
}

fn clock(text: &str) -> Result<Time, String> {
    let bad = || format!("{text:?} is not a time of day: use HH:MM, 00:00 to 24:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if h == 24 && m == 0 {
        // The end of the day: the next day's midnight (see `occurrence`).
        return Ok(Time::midnight());
    }
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

impl Recurring {
    /// Parses `DAYS HH:MM-HH:MM ZONE`: days as `daily`, one day (`Sat`), a range (`Tue-Thu`,
    /// `Fri-Mon`) or a list (`Mon,Wed,Fri`).
    pub fn parse(text: &str) -> Result<Recurring, String> {
        let text = text.trim();
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days_text, hours, zone_name] = parts.as_slice() else {
            return Err(format!(
                "window {text:?}: expected DAYS HH:MM-HH:MM ZONE, for example \"Tue-Thu 22:00-02:00 Europe/Berlin\""
            ));
        };
        let mut days = [false; 7];
        if days_text.eq_ignore_ascii_case("daily") {
            days = [true; 7];
        } else {
            for item in days_text.split(',') {
                let (from, to) = item.split_once(['-', '\u{2013}']).unwrap_or((item, item));
                let (from, to) = (weekday(from)?, weekday(to)?);
                let mut day = from;
                loop {
                    if let Some(slot) = days.get_mut(day) {
                        *slot = true;
                    }
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
        }
        let (open, close) = hours
            .split_once(['-', '\u{2013}'])
            .ok_or_else(|| format!("window {text:?}: hours must be HH:MM-HH:MM"))?;
        if open == "24:00" {
            return Err(format!("window {text:?}: a window opens at 00:00 to 23:59"));
        }
        let (open, close) = (clock(open)?, clock(close)?);
        Ok(Recurring { text: text.to_owned(), days, open, close, zone: zone(zone_name)? })
    }

    /// The occurrence that opens on `date` (local), if the window recurs that day.
    fn occurrence(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        let index = DAYS.iter().position(|(_, d)| *d == date.weekday())?;
        if !self.days.get(index).copied().unwrap_or(false) {
            return None;
        }
        let close_date = if self.close <= self.open { date.tomorrow().ok()? } else { date };
        let at = |date: Date, time: Time| {
            DateTime::from_parts(date, time)
                .to_zoned_datetime(self.zone.clone())
                .ok()
                .map(|z| Timestamp::from_millis(z.timestamp().as_millisecond()))
        };
        Some((at(date, self.open)?, at(close_date, self.close)?))
    }

    fn local_date(&self, at: Timestamp) -> Option<Date> {
        let ts = jiff::Timestamp::from_millisecond(at.as_millis()).ok()?;
        Some(ts.to_zoned_datetime(self.zone.clone()).date())
    }

    /// Whether one occurrence of this window holds all of `window`.
    pub fn holds(&self, window: &Window) -> bool {
        let Some(day) = self.local_date(window.start) else { return false };
        [day.yesterday().ok(), Some(day)]
            .into_iter()
            .flatten()
            .filter_map(|d| self.occurrence(d))
            .any(|(open, close)| open <= window.start && window.end <= close)
    }

    /// The first occurrence that has not closed by `now` (it may be open already).
    pub fn next(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let mut day = self.local_date(now)?.yesterday().ok()?;
        for _ in 0..9 {
            if let Some((open, close)) = self.occurrence(day)
                && close > now
            {
                return Some((open, close));
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// `start`–`end` in this window's zone, for a message.
    pub fn local(&self, (start, end): (Timestamp, Timestamp)) -> String {
        format!("{} to {} {}", local(start, &self.zone), local(end, &self.zone), self.zone_name())
    }

    fn zone_name(&self) -> &str {
        self.zone.iana_name().unwrap_or("UTC")
    }
}

fn local(at: Timestamp, zone: &TimeZone) -> String {
    jiff::Timestamp::from_millisecond(at.as_millis())
        .map(|ts| ts.to_zoned_datetime(zone.clone()).strftime("%a %Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| at.to_rfc3339())
}

/// Reads a change's window: `start` and `end` as RFC 3339 instants (`2026-12-08T21:00:00Z`)
/// or as local date-times in `zone` (`2026-12-08T22:00`), and the zone it is given in.
pub fn concrete(start: &str, end: &str, zone_name: &str) -> Result<Window, String> {
    let tz = zone(zone_name)?;
    let instant = |text: &str, what: &str| -> Result<Timestamp, String> {
        if let Some(at) = Timestamp::parse_rfc3339(text) {
            return Ok(at);
        }
        let civil: DateTime = text.parse().map_err(|_| {
            format!("window {what} {text:?}: use RFC 3339 (2026-12-08T21:00:00Z) or a local time (2026-12-08T22:00)")
        })?;
        let zoned =
            civil.to_zoned_datetime(tz.clone()).map_err(|e| format!("window {what} {text:?}: {e}"))?;
        Ok(Timestamp::from_millis(zoned.timestamp().as_millisecond()))
    };
    let name = tz.iana_name().unwrap_or(zone_name);
    Window::new(instant(start, "start")?, instant(end, "end")?, name).map_err(|e| e.to_string())
}

/// `window` in its own zone, for people (`Tue 2026-12-08 22:00 to Wed 2026-12-09 02:00
/// Europe/Berlin`).
pub fn describe(window: &Window) -> String {
    match zone(&window.zone) {
        Ok(tz) => format!("{} to {} {}", local(window.start, &tz), local(window.end, &tz), window.zone),
        Err(_) => format!("{} to {}", window.start, window.end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_window_across_midnight_holds_what_falls_inside_one_occurrence() {
        let w = Recurring::parse("Tue-Thu 22:00-02:00 Europe/Berlin").unwrap();
        // Tuesday 2026-12-08, 22:00-02:00 Berlin is 21:00Z-01:00Z (winter, UTC+1).
        let inside = concrete("2026-12-08T22:30", "2026-12-09T01:30", "Europe/Berlin").unwrap();
        assert!(w.holds(&inside));
        let whole = concrete("2026-12-08T21:00:00Z", "2026-12-09T01:00:00Z", "UTC").unwrap();
        assert!(w.holds(&whole), "the same occurrence given in UTC");
        for (start, end, why) in [
            ("2026-12-08T21:59", "2026-12-09T01:00", "opens a minute early"),
            ("2026-12-08T23:00", "2026-12-09T02:01", "closes a minute late"),
            ("2026-12-07T22:00", "2026-12-08T01:00", "a Monday"),
            ("2026-12-11T22:00", "2026-12-12T01:00", "a Friday"),
            ("2026-12-08T22:00", "2026-12-10T01:00", "spans two occurrences"),
        ] {
            let window = concrete(start, end, "Europe/Berlin").unwrap();
            assert!(!w.holds(&window), "{why}");
        }
        // Thursday's occurrence ends on Friday morning.
        assert!(w.holds(&concrete("2026-12-11T00:00", "2026-12-11T02:00", "Europe/Berlin").unwrap()));
    }

    #[test]
    fn summer_time_moves_the_instants_not_the_local_hours() {
        let w = Recurring::parse("daily 01:00-03:00 Europe/Berlin").unwrap();
        let summer = concrete("2026-07-01T23:00:00Z", "2026-07-02T01:00:00Z", "UTC").unwrap();
        let winter = concrete("2026-12-01T00:00:00Z", "2026-12-01T02:00:00Z", "UTC").unwrap();
        assert!(w.holds(&summer) && w.holds(&winter));
        assert!(!w.holds(&concrete("2026-12-01T23:00:00Z", "2026-12-02T01:00:00Z", "UTC").unwrap()));
    }

    #[test]
    fn next_is_the_first_occurrence_not_yet_closed() {
        let w = Recurring::parse("Sat 00:00-24:00 UTC").unwrap();
        // Friday 2026-12-04 noon: the next is Saturday all day.
        let next = w.next(at("2026-12-04T12:00:00Z")).unwrap();
        assert_eq!(next, (at("2026-12-05T00:00:00Z"), at("2026-12-06T00:00:00Z")));
        // During Saturday, the open one.
        assert_eq!(w.next(at("2026-12-05T13:00:00Z")).unwrap(), next);
        let lists = Recurring::parse("Mon,Fri-Sun 09:00-10:00 UTC").unwrap();
        let from_tuesday = lists.next(at("2026-12-01T12:00:00Z")).unwrap().0;
        assert_eq!(from_tuesday, at("2026-12-04T09:00:00Z"));
    }

    #[test]
    fn malformed_windows_say_what_is_expected() {
        for bad in [
            "Tue-Thu 22:00-02:00",
            "Tuesday 22:00-02:00 UTC",
            "Tue 22-02 UTC",
            "Tue 25:00-02:00 UTC",
            "Tue 22:00-02:00 Mars/Olympus",
            "Tue 24:00-02:00 UTC",
        ] {
            assert!(Recurring::parse(bad).is_err(), "{bad}");
        }
        for (start, end, zone) in [
            ("2026-12-08T22:00", "2026-12-08T21:00", "UTC"),
            ("2026-12-08T22:00", "2026-12-20T22:00", "UTC"),
            ("tomorrow", "2026-12-08T21:00", "UTC"),
            ("2026-12-08T22:00", "2026-12-08T23:00", "Nowhere/Town"),
        ] {
            assert!(concrete(start, end, zone).is_err(), "{start} {end} {zone}");
        }
        let named = concrete("2026-12-08T22:00", "2026-12-08T23:00", "Europe/Berlin").unwrap();
        assert_eq!(describe(&named), "Tue 2026-12-08 22:00 to Tue 2026-12-08 23:00 Europe/Berlin");
    }
}
