//! Text filters, offered two ways: through the typed extension interface `berth.text-filter/1` (no JSON, see
//! `berth_plugin_api::ext::text_filter`) and through the generic call `apply` `{"filter": "...", "text":
//! "..."}` for hosts and tools that only speak JSON (`berth call`).
//!
//! Filters: `upper`, `lower`, `slug` (lowercase words joined by '-'), `redact-emails` (each address becomes
//! `[email]`), `squeeze` (runs of white space become one space).
#![forbid(unsafe_code)]

use std::sync::Arc;

use berth_plugin_api::ext::text_filter::{self, TextFilter};
use berth_plugin_api::{Error, Extension, Host, NoConfig, Plugin, export_plugin, json_call};
use serde::Deserialize;

const FILTERS: [&str; 5] = ["upper", "lower", "slug", "redact-emails", "squeeze"];

#[derive(Deserialize)]
struct Apply {
    filter: String,
    text: String,
}

/// The plugin: stateless.
pub struct TextFilters;

impl TextFilter for TextFilters {
    fn filters(&self) -> Vec<String> {
        FILTERS.iter().map(|f| (*f).to_owned()).collect()
    }

    fn apply(&self, filter: &str, text: &str) -> Result<String, Error> {
        Ok(match filter {
            "upper" => text.to_uppercase(),
            "lower" => text.to_lowercase(),
            "slug" => text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|word| !word.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join("-"),
            "redact-emails" => text
                .split_inclusive(char::is_whitespace)
                .map(|word| {
                    let trimmed = word.trim_end();
                    let is_email =
                        trimmed.split_once('@').is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
                    if is_email { word.replacen(trimmed, "[email]", 1) } else { word.to_owned() }
                })
                .collect(),
            "squeeze" => text.split_whitespace().collect::<Vec<_>>().join(" "),
            other => return Err(Error::invalid_input(format!("no filter {other:?}; filters: {}", FILTERS.join(", ")))),
        })
    }
}

impl Plugin for TextFilters {
    type Config = NoConfig;

    fn create(_config: NoConfig, _host: &Host) -> Result<Self, Error> {
        Ok(TextFilters)
    }

    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        match method {
            "apply" => json_call(input, |request: Apply| TextFilter::apply(self, &request.filter, &request.text)),
            "filters" => json_call(input, |_: serde::de::IgnoredAny| Ok(TextFilter::filters(self))),
            other => Err(Error::unknown_method(other)),
        }
    }

    fn extension(self: Arc<Self>, id: &str) -> Option<Extension> {
        match id {
            text_filter::ID => Some(text_filter::export(self)),
            _ => None,
        }
    }
}

export_plugin!(TextFilters);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_does_its_job() {
        let f = TextFilters;
        assert_eq!(f.apply("upper", "abc").unwrap(), "ABC");
        assert_eq!(f.apply("slug", "  Hello, World! 2026 ").unwrap(), "hello-world-2026");
        assert_eq!(f.apply("redact-emails", "mail ada@example.org now").unwrap(), "mail [email] now");
        assert_eq!(f.apply("squeeze", "a  \n b").unwrap(), "a b");
        assert!(f.apply("nope", "x").unwrap_err().message().contains("filters: upper"));
    }
}
