//! EventBridge schedule expressions: `rate(5 minutes)` and
//! `cron(minutes hours day-of-month month day-of-week year)`, evaluated in UTC.
//!
//! Supported cron syntax: `*`, `?`, single values, ranges `a-b`, lists `a,b`, steps `a/n` and
//! `*/n`, month and weekday names (`JAN`, `MON`; Sunday is 1), `L` (last day of the month in
//! day-of-month, Saturday in day-of-week) and `nL` (last weekday n of the month).
//! Not supported: `W` and `#`.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    Rate(Duration),
    Cron(Cron),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    /// None = `?` or `*`
    days: Option<Vec<u32>>,
    last_day: bool,
    months: Vec<u32>,
    /// 1 = Sunday; None = `?` or `*`
    weekdays: Option<Vec<u32>>,
    last_weekday: Option<u32>,
    years: Option<Vec<u32>>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Expression {
    pub fn parse(text: &str) -> Result<Expression, String> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
            let (value, unit) = inner
                .trim()
                .split_once(' ')
                .ok_or_else(|| format!("'{text}': expected rate(<value> <unit>)"))?;
            let value: i64 = value
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("'{text}': rate value must be a positive integer"))?;
            let unit = unit.trim();
            let seconds = match unit {
                "minute" | "minutes" => 60,
                "hour" | "hours" => 3600,
                "day" | "days" => 86_400,
                _ => return Err(format!("'{text}': unknown rate unit '{unit}'")),
            };
            if (value == 1) != unit.ends_with(|c| c != 's') {
                return Err(format!(
                    "'{text}': use the singular unit for 1 and the plural otherwise"
                ));
            }
            return Ok(Expression::Rate(Duration::seconds(value * seconds)));
        }
        if let Some(inner) = text.strip_prefix("cron(").and_then(|t| t.strip_suffix(')')) {
            return Cron::parse(inner)
                .map(Expression::Cron)
                .map_err(|e| format!("'{text}': {e}"));
        }
        if let Some(inner) = text.strip_prefix("at(").and_then(|t| t.strip_suffix(')')) {
            return Err(format!(
                "'{text}': one-time at({inner}) schedules are not supported locally"
            ));
        }
        Err(format!("'{text}' is neither rate(...) nor cron(...)"))
    }

    /// The first firing time strictly after `after`. A rate counts from `started` (when the
    /// runner began), as a rule counts from its creation.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        started: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate(every) => {
                let elapsed = (after - started).num_seconds().max(0);
                let step = every.num_seconds();
                Some(started + Duration::seconds((elapsed / step + 1) * step))
            }
            Expression::Cron(cron) => cron.next_after(after),
        }
    }
}

fn parse_value(text: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Ok(v) = text.parse::<u32>() {
        return Ok(v);
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
        .map(|i| i as u32 + base)
        .ok_or_else(|| format!("'{text}' is not a valid value"))
}

fn parse_field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let mut values = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step in '{part}'"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (parse_value(a, names, min)?, parse_value(b, names, min)?)
        } else {
            let v = parse_value(range, names, min)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("'{part}' is outside {min}-{max}"));
        }
        values.extend((lo..=hi).step_by(step as usize));
    }
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

impl Cron {
    fn parse(text: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [min, hour, dom, month, dow, year] = fields.as_slice() else {
            return Err(format!("expected 6 fields, got {}", fields.len()));
        };
        if (*dom == "?") == (*dow == "?") && !(*dom == "*" && *dow == "?") {
            return Err("exactly one of day-of-month and day-of-week must be '?'".to_owned());
        }
        if dom.contains(['W', '#']) || dow.contains(['W', '#']) {
            return Err("W and # are not supported locally".to_owned());
        }
        let (days, last_day) = match *dom {
            "?" | "*" => (None, false),
            "L" => (None, true),
            other => (Some(parse_field(other, 1, 31, &[])?), false),
        };
        let (weekdays, last_weekday) = match *dow {
            "?" | "*" => (None, None),
            "L" => (Some(vec![7]), None),
            other => match other.strip_suffix('L') {
                Some(day) => (None, Some(parse_value(day, &DAYS, 1)?)),
                None => (Some(parse_field(other, 1, 7, &DAYS)?), None),
            },
        };
        Ok(Cron {
            minutes: parse_field(min, 0, 59, &[])?,
            hours: parse_field(hour, 0, 23, &[])?,
            days,
            last_day,
            months: parse_field(month, 1, 12, &MONTHS)?,
            weekdays,
            last_weekday,
            years: match *year {
                "*" | "?" => None,
                other => Some(parse_field(other, 1970, 2199, &[])?),
            },
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let last = last_day_of_month(date);
        let weekday = date.weekday().number_from_sunday();
        if self.last_day {
            return date.day() == last;
        }
        if let Some(days) = &self.days {
            return days.contains(&date.day());
        }
        if let Some(day) = self.last_weekday {
            return weekday == day && date.day() + 7 > last;
        }
        if let Some(weekdays) = &self.weekdays {
            return weekdays.contains(&weekday);
        }
        true
    }

    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after + Duration::minutes(1);
        let mut date = start.date_naive();
        let mut first_day = true;
        // Ten years of days is far more than any valid expression needs.
        for _ in 0..3660 {
            let year_ok = self
                .years
                .as_ref()
                .is_none_or(|y| y.contains(&(date.year() as u32)));
            if year_ok && self.months.contains(&date.month()) && self.day_matches(date) {
                for &hour in &self.hours {
                    for &minute in &self.minutes {
                        if first_day && (hour, minute) < (start.hour(), start.minute()) {
                            continue;
                        }
                        let time = date.and_hms_opt(hour, minute, 0)?;
                        return Some(Utc.from_utc_datetime(&time));
                    }
                }
            }
            first_day = false;
            date = date.succ_opt()?;
        }
        None
    }
}

fn last_day_of_month(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").to_utc()
    }

    fn next(expr: &str, after: &str) -> String {
        Expression::parse(expr)
            .expect(expr)
            .next_after(at(after), at(after))
            .expect("fires")
            .to_rfc3339()
    }

    #[test]
    fn cron_expressions() {
        assert_eq!(
            next("cron(0 2 * * ? *)", "2030-01-15T12:00:00Z"),
            "2030-01-16T02:00:00+00:00"
        );
        assert_eq!(
            next("cron(0/15 * * * ? *)", "2030-01-15T12:07:30Z"),
            "2030-01-15T12:15:00+00:00"
        );
        // Last day of month, month end in February of a leap year.
        assert_eq!(
            next("cron(30 23 L * ? *)", "2028-02-10T00:00:00Z"),
            "2028-02-29T23:30:00+00:00"
        );
        // Weekdays: MON-FRI at 09:00; 2030-01-19 is a Saturday.
        assert_eq!(
            next("cron(0 9 ? * MON-FRI *)", "2030-01-19T10:00:00Z"),
            "2030-01-21T09:00:00+00:00"
        );
        // Last Friday of the month (6 = FRI).
        assert_eq!(
            next("cron(0 0 ? * 6L *)", "2030-01-01T00:00:00Z"),
            "2030-01-25T00:00:00+00:00"
        );
        assert_eq!(
            next("cron(0 0 1 JAN,JUL ? 2031)", "2030-03-01T00:00:00Z"),
            "2031-01-01T00:00:00+00:00"
        );
        assert!(Expression::parse("cron(0 0 * * * *)").is_err());
        assert!(Expression::parse("cron(0 0 * *)").is_err());
        assert!(Expression::parse("cron(61 0 * * ? *)").is_err());
    }

    #[test]
    fn rate_expressions() {
        let e = Expression::parse("rate(5 minutes)").expect("rate");
        let start = at("2030-01-15T12:00:00Z");
        assert_eq!(
            e.next_after(at("2030-01-15T12:07:00Z"), start),
            Some(at("2030-01-15T12:10:00Z"))
        );
        assert!(Expression::parse("rate(1 day)").is_ok());
        assert!(Expression::parse("rate(1 days)").is_err());
        assert!(Expression::parse("rate(0 minutes)").is_err());
        assert!(Expression::parse("rate(2 weeks)").is_err());
    }
}
