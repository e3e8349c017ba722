//! A plugin's name, and how messages quote values taken from files: a leaf every other module may use.

use std::fmt;

use serde::{Deserialize, Deserializer, de};

/// A plugin's name: 1 to 64 characters of lowercase ASCII letters, digits and '-', starting with a letter or
/// digit. It is the plugin crate's Cargo package name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginName(String);

impl PluginName {
    /// Checks `name` against the rule above.
    pub fn new(name: &str) -> Result<Self, InvalidName> {
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if name.is_empty() || name.len() > 64 || name.starts_with('-') || !name.chars().all(valid_char) {
            return Err(InvalidName { name: name.to_owned() });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name that breaks the rule of [`PluginName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid plugin name {}: use 1 to 64 lowercase letters, digits and '-', starting with a letter or digit",
    quote(name)
)]
pub struct InvalidName {
    /// The name given.
    pub name: String,
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PluginName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PluginName::new(&text).map_err(de::Error::custom)
    }
}

/// A value taken from a file, as messages show it: quoted, with control and non-ASCII characters escaped (a
/// Cyrillic look-alike cannot pass for the real name, a terminal escape is shown, not run), and cut after
/// [`QUOTE_LIMIT`] characters with the full length said (a 10 KB name is not echoed whole).
pub(crate) fn quote(value: &str) -> String {
    let escaped: String = value.chars().take(QUOTE_LIMIT).flat_map(char::escape_default).collect();
    match value.chars().count() {
        count if count > QUOTE_LIMIT => format!("\"{escaped}...\" ({} bytes)", value.len()),
        _ => format!("\"{escaped}\""),
    }
}

/// How many characters of a value a message shows.
const QUOTE_LIMIT: usize = 80;
