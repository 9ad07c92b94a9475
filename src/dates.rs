//! Dates in what people write: a loose parser for the dates callers attach to conversations
//! ("4:20 pm on 8 May, 2023", "May 8, 2023", "2023-05-08T13:56:00Z"), one compact form to show
//! them in ("8 May 2023"), and relative time in a message ("yesterday", "last week", "two days
//! ago", "next month", "last Friday") resolved against the day it was said on and written next to
//! the original words: "yesterday (7 May 2023)". A memory read months later still says when.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn month_of(word: &str) -> Option<u32> {
    let w = word.to_ascii_lowercase();
    let w = w.trim_end_matches('.');
    if w.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| *m == w || (w.len() == 3 && m.starts_with(w)) || (w == "sept"))
        .map(|i| if w == "sept" { 9 } else { i as u32 + 1 })
}

/// The calendar day a date text names; `None` when it names none.
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_utc().date());
    }
    if let Some(d) = t
        .get(..10)
        .and_then(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok())
    {
        return Some(d);
    }
    // Words: a month name, a year of four digits and a day of one or two; numbers that are part
    // of a time of day (`1:56`) are not days.
    let mut month = None;
    let mut year = None;
    let mut day = None;
    let chars: Vec<char> = t.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphanumeric() {
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let in_time = (start > 0 && chars[start - 1] == ':') || chars.get(i) == Some(&':');
            if let Ok(n) = word.parse::<u32>() {
                if in_time {
                    continue;
                }
                if word.len() == 4 && (1900..=2200).contains(&n) {
                    year.get_or_insert(n as i32);
                } else if word.len() <= 2 && (1..=31).contains(&n) {
                    day.get_or_insert(n);
                }
            } else if let Some(stripped) = ["st", "nd", "rd", "th"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|d| (1..=31).contains(d))
            {
                day.get_or_insert(stripped);
            } else if let Some(m) = month_of(&word) {
                month.get_or_insert(m);
            }
        } else {
            i += 1;
        }
    }
    NaiveDate::from_ymd_opt(year?, month?, day?)
}

/// `8 May 2023`.
pub fn format_day(d: NaiveDate) -> String {
    format!(
        "{} {} {}",
        d.day(),
        capitalised(MONTHS[d.month0() as usize]),
        d.year()
    )
}

fn format_month(d: NaiveDate) -> String {
    format!("{} {}", capitalised(MONTHS[d.month0() as usize]), d.year())
}

fn capitalised(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn add_months(d: NaiveDate, n: i32) -> Option<NaiveDate> {
    let total = d.year() * 12 + d.month0() as i32 + n;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1)
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

/// Words that put a bare weekday ahead of the day it was said on.
const FUTURE_WORDS: &[&str] = &[
    "will", "ll", "going", "gonna", "plan", "plans", "planning", "planned", "next", "upcoming",
    "tomorrow", "coming", "until", "soon", "shall",
];

fn number_word(w: &str) -> Option<i64> {
    let n = match w {
        "a" | "an" | "one" => 1,
        "two" | "couple" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        other => other.parse().ok().filter(|n| (1..=99).contains(n))?,
    };
    Some(n)
}

/// The most recent `day` strictly before `anchor` (`back`) or the next one after it.
fn weekday_from(anchor: NaiveDate, day: Weekday, back: bool) -> NaiveDate {
    let mut d = anchor;
    loop {
        d = if back {
            d - Duration::days(1)
        } else {
            d + Duration::days(1)
        };
        if d.weekday() == day {
            return d;
        }
    }
}

/// What a relative phrase starting at word `i` of `words` means on `anchor`: (words used, the
/// absolute text).
fn phrase_at(words: &[String], i: usize, anchor: NaiveDate) -> Option<(usize, String)> {
    let w = |k: usize| words.get(i + k).map(String::as_str).unwrap_or("");
    match w(0) {
        "yesterday" => return Some((1, format_day(anchor - Duration::days(1)))),
        "today" | "tonight" => return Some((1, format_day(anchor))),
        "tomorrow" => return Some((1, format_day(anchor + Duration::days(1)))),
        _ => {}
    }
    let weekday = |s: &str| WEEKDAYS.iter().find(|(n, _)| *n == s).map(|(_, d)| *d);
    match (w(0), w(1)) {
        ("last" | "next", "week") => {
            let shift = if w(0) == "last" { -7 } else { 7 };
            let d = anchor + Duration::days(shift);
            let monday = d - Duration::days(d.weekday().num_days_from_monday() as i64);
            return Some((2, format!("the week of {}", format_day(monday))));
        }
        ("last" | "next", "weekend") => {
            let back = w(0) == "last";
            let sat = weekday_from(anchor, Weekday::Sat, back);
            return Some((2, format!("the weekend of {}", format_day(sat))));
        }
        ("last" | "next", "month") => {
            let d = add_months(anchor, if w(0) == "last" { -1 } else { 1 })?;
            return Some((2, format_month(d)));
        }
        ("last" | "next", "year") => {
            let y = anchor.year() + if w(0) == "last" { -1 } else { 1 };
            return Some((2, y.to_string()));
        }
        ("last" | "next", day) if weekday(day).is_some() => {
            let d = weekday_from(anchor, weekday(day)?, w(0) == "last");
            return Some((2, format_day(d)));
        }
        ("this", "past") if weekday(w(2)).is_some() => {
            return Some((3, format_day(weekday_from(anchor, weekday(w(2))?, true))));
        }
        ("this", "coming") if weekday(w(2)).is_some() => {
            return Some((3, format_day(weekday_from(anchor, weekday(w(2))?, false))));
        }
        // "on Friday": the one before the day it was said, unless the words around it speak of
        // the future ("I'll", "will", "going to", "plan", "next", "tomorrow"…).
        ("on", day) if weekday(day).is_some() => {
            let near = &words[i.saturating_sub(8)..(i + 6).min(words.len())];
            let ahead = near.iter().any(|x| FUTURE_WORDS.contains(&x.as_str()));
            return Some((2, format_day(weekday_from(anchor, weekday(day)?, !ahead))));
        }
        _ => {}
    }
    // "two days ago", "3 weeks ago", "a month ago", "a couple of days ago".
    let (n, rest) = match (number_word(w(0)), w(1)) {
        (Some(_), "couple") if w(2) == "of" => (2, 3),
        (Some(n), _) => (n, 1),
        _ => return None,
    };
    let unit = w(rest);
    if w(rest + 1) != "ago" {
        return None;
    }
    let used = rest + 2;
    match unit.trim_end_matches('s') {
        "day" => Some((used, format_day(anchor - Duration::days(n)))),
        "week" => Some((
            used,
            format!("around {}", format_day(anchor - Duration::weeks(n))),
        )),
        "month" => Some((used, format_month(add_months(anchor, -(n as i32))?))),
        "year" => Some((used, (anchor.year() - n as i32).to_string())),
        _ => None,
    }
}

/// `text` with every relative time phrase followed by its absolute date in parentheses, as said
/// on `anchor`; the original words are kept. Text that already carries the date is left alone.
pub fn resolve_relative(text: &str, anchor: NaiveDate) -> String {
    // Words with their byte spans.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    let words: Vec<String> = spans
        .iter()
        .map(|(a, b)| text[*a..*b].to_lowercase())
        .collect();
    let mut out = String::with_capacity(text.len() + 32);
    let mut copied = 0usize;
    let mut i = 0usize;
    while i < words.len() {
        if let Some((used, absolute)) = phrase_at(&words, i, anchor) {
            let end = spans[i + used - 1].1;
            let already = text[end..].trim_start().starts_with('(');
            if !already {
                out.push_str(&text[copied..end]);
                out.push_str(" (");
                out.push_str(&absolute);
                out.push(')');
                copied = end;
            }
            i += used;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn dates_are_read_in_the_forms_people_write() {
        for (text, want) in [
            ("4:20 pm on 8 May, 2023", day(2023, 5, 8)),
            ("9:05 am on 27 June, 2023", day(2023, 6, 27)),
            ("May 8, 2023", day(2023, 5, 8)),
            ("Sept 3rd 2024", day(2024, 9, 3)),
            ("2023-05-08T13:56:00Z", day(2023, 5, 8)),
            ("2023-05-08", day(2023, 5, 8)),
            ("Monday, 8 May 2023 12:00", day(2023, 5, 8)),
        ] {
            assert_eq!(parse_day(text), Some(want), "{text}");
        }
        for text in ["", "soon", "May 2023", "8:30 pm", "31 February 2023"] {
            assert_eq!(parse_day(text), None, "{text}");
        }
        assert_eq!(format_day(day(2023, 5, 8)), "8 May 2023");
    }

    #[test]
    fn relative_time_gets_its_date_next_to_the_words() {
        let monday = day(2023, 5, 8);
        assert_eq!(
            resolve_relative(
                "I went to a pottery workshop yesterday and it was great.",
                monday
            ),
            "I went to a pottery workshop yesterday (7 May 2023) and it was great."
        );
        assert_eq!(
            resolve_relative("Two days ago we ran; last Friday too.", monday),
            "Two days ago (6 May 2023) we ran; last Friday (5 May 2023) too."
        );
        assert_eq!(
            resolve_relative("Camping next month, the race was last week", monday),
            "Camping next month (June 2023), the race was last week (the week of 1 May 2023)"
        );
        assert_eq!(
            resolve_relative("a couple of weeks ago, 3 years ago, last year", monday),
            "a couple of weeks ago (around 24 April 2023), 3 years ago (2020), last year (2022)"
        );
        assert_eq!(
            resolve_relative("this past Sunday and this coming Sunday", monday),
            "this past Sunday (7 May 2023) and this coming Sunday (14 May 2023)"
        );
        // A bare weekday: the one before, unless the sentence speaks of the future.
        assert_eq!(
            resolve_relative("We went hiking on Saturday.", monday),
            "We went hiking on Saturday (6 May 2023)."
        );
        assert_eq!(
            resolve_relative("I'll call her on Friday.", monday),
            "I'll call her on Friday (12 May 2023)."
        );
        assert_eq!(
            resolve_relative("I volunteer on Fridays.", monday),
            "I volunteer on Fridays."
        );
        // Already resolved, or nothing relative: unchanged.
        let once = resolve_relative("yesterday", monday);
        assert_eq!(resolve_relative(&once, monday), once);
        assert_eq!(resolve_relative("the last word", monday), "the last word");
        assert_eq!(
            resolve_relative("last month", day(2023, 1, 15)),
            "last month (December 2022)"
        );
    }
}
