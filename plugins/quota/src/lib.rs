//! A stateful plugin: usage counters with quotas, shared by every caller and thread.
//!
//! - `consume` `{"key": "...", "amount": 1}` -> `{"allowed": bool, "used": n, "limit": n, "remaining": n}`;
//!   a refused consumption changes nothing.
//! - `usage` `{"key": "..."}` -> the same shape without consuming.
//! - `reset` `{"key": "..."}` or `{}` (every key) -> the number of keys reset.
//!
//! Health is `Degraded` while any key is at its quota.
//!
//! Hot reloads keep the counters (`berth.state/1`, schema 1: the counters as a JSON object), and a changed
//! `[config]` (limits) applies at once, without a reload (`berth.reconfigure/1`).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_plugin_api::ext::reconfigure::{self, Reconfigure};
use berth_plugin_api::ext::state::{self, State};
use berth_plugin_api::{Error, Extension, Health, Host, Plugin, export_plugin, json_call};
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
    config: Mutex<Config>,
    used: Mutex<BTreeMap<String, u64>>,
}

impl Config {
    fn check(self) -> Result<Config, Error> {
        if self.default_limit == 0 && self.limits.is_empty() {
            return Err(Error::invalid_config("default_limit = 0 and no limits: every request would be refused"));
        }
        Ok(self)
    }
}

impl Quota {
    fn limit(&self, key: &str) -> u64 {
        let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        config.limits.get(key).copied().unwrap_or(config.default_limit)
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
        Ok(Quota { config: Mutex::new(config.check()?), used: Mutex::new(BTreeMap::new()) })
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

    fn extension(self: Arc<Self>, id: &str) -> Option<Extension> {
        match id {
            state::ID => Some(state::export(self)),
            reconfigure::ID => Some(reconfigure::export(self)),
            _ => None,
        }
    }
}

impl State for Quota {
    const SCHEMA: u32 = 1;

    fn export_state(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&*self.counters()).map_err(|e| Error::failed(format!("cannot encode the counters: {e}")))
    }

    fn import_state(&self, _schema: u32, state: &[u8]) -> Result<(), Error> {
        let counters: BTreeMap<String, u64> = serde_json::from_slice(state)
            .map_err(|e| Error::invalid_input(format!("the counters are not a JSON object of numbers: {e}")))?;
        *self.counters() = counters;
        Ok(())
    }
}

impl Reconfigure for Quota {
    fn reconfigure(&self, config: Config) -> Result<(), Error> {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config.check()?;
        Ok(())
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

    #[test]
    fn counters_survive_export_and_import_and_limits_change_in_place() {
        let old = quota();
        consume(&old, "a");
        let new = quota();
        new.import_state(1, &old.export_state().unwrap()).unwrap();
        assert_eq!(consume(&new, "a"), r#"{"allowed":true,"used":2,"limit":2,"remaining":0}"#);
        new.reconfigure(Config { default_limit: 10, limits: BTreeMap::new() }).unwrap();
        assert_eq!(consume(&new, "a"), r#"{"allowed":true,"used":3,"limit":10,"remaining":7}"#);
        let refused = new.reconfigure(Config { default_limit: 0, limits: BTreeMap::new() });
        assert_eq!(refused.unwrap_err().kind(), berth_plugin_api::ErrorKind::InvalidConfig);
        assert!(consume(&new, "a").contains(r#""limit":10"#), "a refused config keeps the previous one");
    }
}
