//! Every number and duration of the file has a range: a value outside it
//! is refused with the line, the key and the range, before anything runs
//! (a `0s` idle timeout closes every connection, a ttl of 10^14 days
//! overflows the cache's arithmetic).

use std::fmt::Debug;
use std::ops::RangeInclusive;
use std::time::Duration;

/// Where keys are in the source, for messages about values that carry no
/// span of their own.
pub struct KeyLines<'a> {
    source: &'a str,
}

impl<'a> KeyLines<'a> {
    pub fn new(source: &'a str) -> Self {
        KeyLines { source }
    }

    /// The line of `key = ...` in table `table` (`milter`,
    /// `directory.ldap`), if the file sets it there.
    pub fn line(&self, table: &str, key: &str) -> Option<usize> {
        let mut current = String::new();
        for (i, line) in self.source.lines().enumerate() {
            let t = line.trim();
            if t.starts_with('[') {
                current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
                continue;
            }
            if current == table {
                if let Some(rest) = t.strip_prefix(key) {
                    if rest.trim_start().starts_with('=') {
                        return Some(i + 1);
                    }
                }
            }
        }
        None
    }

    /// `Err` naming the line (when the file sets the key), the key, the
    /// value and the range when `value` is outside `range`.
    pub fn check<T: PartialOrd + Debug>(
        &self,
        table: &str,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
    ) -> Result<T, String> {
        if range.contains(&value) {
            return Ok(value);
        }
        Err(format!(
            "{}{table}.{key} = {value:?} is outside {:?}..={:?}",
            self.at(table, key),
            range.start(),
            range.end()
        ))
    }

    /// `"line N: "` for a key the file sets, else nothing.
    pub fn at(&self, table: &str, key: &str) -> String {
        self.line(table, key)
            .map(|l| format!("line {l}: "))
            .unwrap_or_default()
    }
}

pub const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub const DAY: Duration = secs(86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_their_table_only() {
        let k = KeyLines::new("[milter]\nidle_timeout = \"5s\"\n\n[directory.ldap]\ntimeout = \"1s\"\n[[listener]]\ntimeout=1\n");
        assert_eq!(k.line("milter", "idle_timeout"), Some(2));
        assert_eq!(k.line("directory.ldap", "timeout"), Some(5));
        assert_eq!(k.line("milter", "timeout"), None);
        assert_eq!(k.line("listener", "timeout"), Some(7));
        let e = k
            .check("milter", "idle_timeout", secs(0), secs(1)..=DAY)
            .unwrap_err();
        assert_eq!(e, "line 2: milter.idle_timeout = 0ns is outside 1s..=86400s");
        assert!(k.check("milter", "idle_timeout", secs(5), secs(1)..=DAY).is_ok());
    }
}
