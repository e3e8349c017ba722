//! Durations as configuration files, manifests and the CLI write them (`250ms`, `2s`, `1m 30s`). Uses only
//! `name`.

use std::time::Duration;

use serde::Deserialize;

/// A duration in a configuration file, as [`parse_duration`] reads it.
pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

/// A duration that is not one (see [`parse_duration`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is not a duration; write a whole number and a unit: 250ms, 2s, 1m, 1h (or terms such as 1m 30s)",
    crate::name::quote(text)
)]
pub struct InvalidDuration {
    /// The text given.
    pub text: String,
}

/// Reads a duration as configuration files and the CLI write it: one or more terms of a whole number and a
/// unit, `ms`, `s`, `m` or `h`, separated by spaces (`250ms`, `2s`, `1m 30s`).
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let refused = || InvalidDuration { text: text.to_owned() };
    let mut total = Duration::ZERO;
    let mut terms = text.split_whitespace().peekable();
    terms.peek().ok_or_else(refused)?;
    for term in terms {
        let digits = term.find(|c: char| !c.is_ascii_digit()).ok_or_else(refused)?;
        let (number, unit) = term.split_at(digits);
        let number: u64 = number.parse().map_err(|_| refused())?;
        let seconds = match unit {
            "ms" => None,
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            _ => return Err(refused()),
        };
        let term = match seconds {
            None => Some(Duration::from_millis(number)),
            Some(unit) => number.checked_mul(unit).map(Duration::from_secs),
        };
        total = term.and_then(|term| total.checked_add(term)).ok_or_else(refused)?;
    }
    Ok(total)
}
