//! A stateful plugin: usage counters with quotas, shared by every caller and thread.
//!
//! - `consume` `{"key": "...", "amount": 1}` -> `{"allowed": bool, "used": n, "limit": n, "remaining": n}`;
//!   a refused consumption changes nothing.
//! - `usage` `{"key": "..."}` -> the same shape without consuming.
//! - `reset` `{"key": "..."}` or `{}` (every key) -> the number of keys reset.
//!
//! Health is `Degraded` while any key is at its quota.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_plugin_api::{Error, Health, Host, Plugin, export_plugin, json_call};
use serde::{Deserialize, Serialize};

/// The `[config]` table of quota's manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The quota of a key without its own entry in `limits`.
    default_limit: u64,
    /// Quotas per key.
    #[serde(default)]
    limits: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Consume {
    key: String,
    #[serde(default = "one")]
    amount: u64,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize)]
struct Key {
    key: Option<String>,
}

#[derive(Serialize, Debug, PartialEq)]
struct Usage {
    allowed: bool,
    used: u64,
    limit: u64,
    remaining: u64,
}

/// The plugin: quotas from config, counters behind a mutex.
pub struct Quota {
    config: Config,
    used: Mutex<BTreeMap<String, u64>>,
}

impl Quota {
    fn limit(&self, key: &str) -> u64 {
        self.config.limits.get(key).copied().unwrap_or(self.config.default_limit)
    }

    fn usage(&self, key: &str, used: u64, allowed: bool) -> Usage {
        let limit = self.limit(key);
        Usage { allowed, used, limit, remaining: limit.saturating_sub(used) }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A panic while the lock is held cannot leave a counter half-written: each update is one assignment.
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Plugin for Quota {
    type Config = Config;

    fn create(config: Config, _host: &Host) -> Result<Self, Error> {
        if config.default_limit == 0 && config.limits.is_empty() {
            return Err(Error::invalid_config("default_limit = 0 and no limits: every request would be refused"));
        }
        Ok(Quota { config, used: Mutex::new(BTreeMap::new()) })
    }

    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        match method {
            "consume" => json_call(input, |request: Consume| {
                let mut counters = self.counters();
                let used = counters.get(&request.key).copied().unwrap_or(0);
                let wanted = used.saturating_add(request.amount);
                let allowed = wanted <= self.limit(&request.key);
                let used = if allowed { wanted } else { used };
                counters.insert(request.key.clone(), used);
                Ok(self.usage(&request.key, used, allowed))
            }),
            "usage" => json_call(input, |request: Key| {
                let key = request.key.ok_or_else(|| Error::invalid_input("usage needs a key"))?;
                let used = self.counters().get(&key).copied().unwrap_or(0);
                Ok(self.usage(&key, used, used < self.limit(&key)))
            }),
            "reset" => json_call(input, |request: Key| {
                let mut counters = self.counters();
                Ok(match request.key {
                    Some(key) => usize::from(counters.remove(&key).is_some()),
                    None => std::mem::take(&mut *counters).len(),
                })
            }),
            other => Err(Error::unknown_method(other)),
        }
    }

    fn health(&self) -> Health {
        let exhausted = self.counters().iter().filter(|(key, used)| **used >= self.limit(key)).count();
        match exhausted {
            0 => Health::Ok,
            n => Health::Degraded(format!("{n} key(s) at their quota")),
        }
    }
}

export_plugin!(Quota);

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> Quota {
        let config = Config { default_limit: 2, limits: BTreeMap::from([("big".to_owned(), 5)]) };
        Quota::create(config, &Host::new("quota", 1)).unwrap()
    }

    fn consume(q: &Quota, key: &str) -> String {
        String::from_utf8(q.call("consume", format!(r#"{{"key":"{key}"}}"#).as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn counts_until_the_quota_then_refuses_without_counting() {
        let q = quota();
        assert_eq!(consume(&q, "a"), r#"{"allowed":true,"used":1,"limit":2,"remaining":1}"#);
        assert_eq!(consume(&q, "a"), r#"{"allowed":true,"used":2,"limit":2,"remaining":0}"#);
        assert_eq!(consume(&q, "a"), r#"{"allowed":false,"used":2,"limit":2,"remaining":0}"#);
        assert_eq!(q.health(), Health::Degraded("1 key(s) at their quota".into()));
        assert_eq!(q.call("reset", b"{}").unwrap(), b"1");
        assert_eq!(q.health(), Health::Ok);
    }

    #[test]
    fn per_key_limits_apply() {
        let q = quota();
        assert!(consume(&q, "big").contains(r#""limit":5"#));
    }
}
