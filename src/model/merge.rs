//! When a pull request was merged, and the order of automatic deploys it gives:
//! [`MergedAt`], GitHub's `merged_at` parsed once at the edge into Unix milliseconds, and
//! [`Merge`], the merge a deployment's payload says it deploys. Merges compare as times,
//! never as text: as text, `"garbage"` sorted after every real time and `15:00+02:00` after
//! `14:05Z`.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

/// A merge time, in Unix milliseconds (UTC), never before 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MergedAt(i64);

/// Why a `merged_at` was not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown} is not a time (RFC 3339, as GitHub sends 2026-03-03T14:02:11Z)")]
pub struct InvalidTime {
    /// The value as JSON, cut short: it comes from a payload.
    shown: String,
}

impl InvalidTime {
    pub fn new(value: &serde_json::Value) -> Self {
        let mut shown: String = value.to_string().chars().take(60).collect();
        if shown.len() < value.to_string().len() {
            shown.push('…');
        }
        Self { shown }
    }
}

impl MergedAt {
    /// Parses an RFC 3339 time: `2026-03-03T14:02:11Z`, with fractional seconds or a
    /// `±HH:MM` offset too.
    pub fn parse(text: &str) -> Result<Self, InvalidTime> {
        let invalid = || InvalidTime::new(&serde_json::Value::from(text));
        let upper = text.to_ascii_uppercase();
        // `YYYY-MM-DDTHH:MM:SS` is 19 bytes; then fractional seconds, then the zone.
        let (local, offset_ms) = match upper.strip_suffix('Z') {
            Some(local) => (local, 0),
            None => {
                let split = upper.len().checked_sub(6).ok_or_else(invalid)?;
                let (local, zone) = upper.split_at_checked(split).ok_or_else(invalid)?;
                (local, offset_millis(zone).ok_or_else(invalid)?)
            }
        };
        if local.len() < 19 || local.as_bytes()[10] != b'T' {
            return Err(invalid());
        }
        let at = humantime::parse_rfc3339(&format!("{local}Z")).map_err(|_| invalid())?;
        let local_ms = at
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .ok_or_else(invalid)?;
        let utc = local_ms.checked_sub(offset_ms).filter(|ms| *ms >= 0);
        utc.map(Self).ok_or_else(invalid)
    }

    /// `ms` Unix milliseconds; before 1970 counts as 1970.
    pub fn from_millis(ms: i64) -> Self {
        Self(ms.max(0))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Text that sorts as the time does, on both engines (zero-padded milliseconds).
    pub fn sort_key(self) -> String {
        format!("{:020}", self.0)
    }

    /// `self` as a person reads it beside `other`: the time of day (UTC) when both fall on
    /// the same day — to the minute, or to the second when they share the minute — else
    /// the date too.
    pub fn beside(self, other: Self) -> String {
        let (this, that) = (self.seconds_text(), other.seconds_text());
        if this[..10] != that[..10] {
            format!("{} {}", &this[..10], &this[11..16])
        } else if this[..16] != that[..16] {
            this[11..16].to_owned()
        } else {
            this[11..19].to_owned()
        }
    }

    /// `2026-03-03T14:02:11Z`.
    fn seconds_text(self) -> String {
        humantime::format_rfc3339_seconds(self.system_time()).to_string()
    }

    fn system_time(self) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
    }
}

/// RFC 3339, as GitHub writes it: to the second, or to the millisecond when it has them.
impl fmt::Display for MergedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 == 0 {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_seconds(self.system_time())
            )
        } else {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_millis(self.system_time())
            )
        }
    }
}

/// `+HH:MM` or `-HH:MM` in milliseconds east of UTC.
fn offset_millis(zone: &str) -> Option<i64> {
    let bytes = zone.as_bytes();
    let sign = match bytes.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if bytes.len() != 6 || bytes[3] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = zone.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (hours, minutes) = (number(1..3)?, number(4..6)?);
    (hours < 24 && minutes < 60).then_some(sign * (hours * 60 + minutes) * 60_000)
}

/// The merge a deployment deploys, as deployhook writes it into the payloads of the
/// deployments it makes from merges and their promotions (`merged_at`, `pull_request`).
/// Automatic deploys of one environment never go back in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    pub merged_at: MergedAt,
    /// 0: none named.
    pub pull_request: u64,
}

impl Merge {
    /// The merge an automatic deploy's `payload` carries. `None` for a deliberate deploy — a
    /// rollback, or one forced through a lock (`deployhook deploy --force`) — and for a
    /// payload that names no valid merge time (a deployment made by hand).
    pub fn of_automatic(payload: &serde_json::Value) -> Option<Self> {
        let flag = |key: &str| payload.get(key) == Some(&serde_json::Value::Bool(true));
        if flag("force") || flag("rollback") {
            return None;
        }
        let merged_at = MergedAt::parse(payload.get("merged_at")?.as_str()?).ok()?;
        let pull_request = payload
            .get("pull_request")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Some(Self {
            merged_at,
            pull_request,
        })
    }

    /// [`Self::of_automatic`] of a payload kept as JSON text.
    pub fn of_automatic_text(payload: &str) -> Option<Self> {
        Self::of_automatic(&serde_json::from_str(payload).ok()?)
    }

    /// "merge of #41 (merged 14:02) is older than #42 (merged 14:05)".
    pub fn older_than(self, newer: Self) -> String {
        let name = |merge: Self| match merge.pull_request {
            0 => "a merge".to_owned(),
            number => format!("#{number}"),
        };
        let this = match self.pull_request {
            0 => "a merge".to_owned(),
            number => format!("merge of #{number}"),
        };
        format!(
            "{this} (merged {}) is older than {} (merged {})",
            self.merged_at.beside(newer.merged_at),
            name(newer),
            newer.merged_at.beside(self.merged_at)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> MergedAt {
        MergedAt::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn githubs_times_parse_and_compare_as_times_not_text() {
        assert_eq!(at("2026-03-03T14:02:11Z").millis(), 1_772_546_531_000);
        assert_eq!(
            at("2026-03-03T14:02:11Z").to_string(),
            "2026-03-03T14:02:11Z"
        );
        // 15:00 at +02:00 is 13:00 UTC: earlier, though later as text.
        assert!(at("2026-03-03T15:00:00+02:00") < at("2026-03-03T14:02:11Z"));
        assert_eq!(
            at("2026-03-03T15:00:00+02:00"),
            at("2026-03-03T13:00:00.000Z")
        );
        assert_eq!(at("2026-03-03t09:00:00-05:30"), at("2026-03-03T14:30:00Z"));
        // Half a second later sorts later, though `.` sorts before `Z` as text.
        assert!(at("2026-03-03T14:02:11.5Z") > at("2026-03-03T14:02:11Z"));
        assert_eq!(
            at("2026-03-03T14:02:11.5Z").to_string(),
            "2026-03-03T14:02:11.500Z"
        );
        let keys = [at("2026-03-03T14:02:11Z"), at("2026-11-30T10:00:00Z")].map(MergedAt::sort_key);
        assert!(keys[0] < keys[1], "{keys:?}");
        assert_eq!(keys[0].len(), 20);
    }

    #[test]
    fn anything_else_is_not_a_time_and_says_so_briefly() {
        for text in [
            "garbage",
            "",
            "2026-03-03",
            "2026-03-03 14:02:11Z",
            "2026-13-03T14:02:11Z",
            "2026-03-03T14:02:11",
            "2026-03-03T14:02:11+2:00",
            "2026-03-03T14:02:11+24:00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2026-03-03T14:02:11Zjunk",
            "ⅰⅰⅰⅰ-03-03T14:02:11Z",
        ] {
            assert!(MergedAt::parse(text).is_err(), "{text:?} parsed");
        }
        let err = MergedAt::parse("garbage").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"garbage\" is not a time (RFC 3339, as GitHub sends 2026-03-03T14:02:11Z)"
        );
        let long = MergedAt::parse(&"x".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(long.len() < 200, "{long}");
    }

    #[test]
    fn automatic_deploys_carry_their_merge_and_deliberate_ones_none() {
        let merge = json!({"pull_request": 41, "merged_at": "2026-03-03T14:02:11Z"});
        assert_eq!(
            Merge::of_automatic(&merge),
            Some(Merge {
                merged_at: at("2026-03-03T14:02:11Z"),
                pull_request: 41
            })
        );
        let promoted = json!({"merged_at": "2026-03-03T14:02:11Z",
                              "promoted_from": {"environment": "staging", "deployment": 7}});
        assert_eq!(Merge::of_automatic(&promoted).unwrap().pull_request, 0);
        for deliberate in [
            json!({"pull_request": 41, "merged_at": "2026-03-03T14:02:11Z", "force": true}),
            json!({"merged_at": "2026-03-03T14:02:11Z", "rollback": true}),
            json!({"environment": "production", "deploy_user": "maria"}),
            json!({"pull_request": 41, "merged_at": "garbage"}),
        ] {
            assert_eq!(Merge::of_automatic(&deliberate), None, "{deliberate}");
        }
        assert_eq!(Merge::of_automatic_text("not json"), None);
    }

    #[test]
    fn an_older_merge_is_named_with_the_times_a_person_needs() {
        let merge = |n, t| Merge {
            merged_at: at(t),
            pull_request: n,
        };
        let older = merge(41, "2026-03-03T14:02:11Z");
        assert_eq!(
            older.older_than(merge(42, "2026-03-03T14:05:40Z")),
            "merge of #41 (merged 14:02) is older than #42 (merged 14:05)"
        );
        assert_eq!(
            older.older_than(merge(42, "2026-03-03T14:02:40Z")),
            "merge of #41 (merged 14:02:11) is older than #42 (merged 14:02:40)"
        );
        assert_eq!(
            older.older_than(merge(0, "2026-03-04T09:00:00Z")),
            "merge of #41 (merged 2026-03-03 14:02) is older than a merge (merged 2026-03-04 09:00)"
        );
    }
}
