//! The minimal Berth plugin, and the template to copy: one config value, one method, no state.
//!
//! `greet` takes `{"name": "..."}` and answers `"<greeting>, <name>!"`. A changed `greeting` in the manifest
//! applies at once, without a reload (`berth.reconfigure/1`).
#![forbid(unsafe_code)]

use std::sync::{Arc, RwLock};

use berth_plugin_api::ext::reconfigure::{self, Reconfigure};
use berth_plugin_api::{Error, Extension, Host, Plugin, export_plugin, json_call, tracing};
use serde::Deserialize;

/// The `[config]` table of greeter's manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The word to greet with; "Hello" when left out.
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "Hello".to_owned()
}

#[derive(Deserialize)]
struct GreetRequest {
    name: String,
}

/// The plugin: its config is all it keeps.
pub struct Greeter {
    greeting: RwLock<String>,
}

impl Greeter {
    fn greeting(&self) -> String {
        self.greeting.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Plugin for Greeter {
    type Config = Config;

    fn create(config: Config, host: &Host) -> Result<Self, Error> {
        tracing::info!(generation = host.generation(), "greeter ready with greeting {:?}", config.greeting);
        Ok(Greeter { greeting: RwLock::new(config.greeting) })
    }

    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        match method {
            "greet" => json_call(input, |request: GreetRequest| {
                if request.name.trim().is_empty() {
                    return Err(Error::invalid_input("name is empty"));
                }
                Ok(format!("{}, {}!", self.greeting(), request.name.trim()))
            }),
            other => Err(Error::unknown_method(other)),
        }
    }

    fn extension(self: Arc<Self>, id: &str) -> Option<Extension> {
        (id == reconfigure::ID).then(|| reconfigure::export(self))
    }
}

impl Reconfigure for Greeter {
    fn reconfigure(&self, config: Config) -> Result<(), Error> {
        tracing::info!("greeting changed to {:?}", config.greeting);
        *self.greeting.write().unwrap_or_else(|e| e.into_inner()) = config.greeting;
        Ok(())
    }
}

export_plugin!(Greeter);

#[cfg(test)]
mod tests {
    use super::*;

    fn greeter() -> Greeter {
        Greeter::create(Config { greeting: "Hi".into() }, &Host::new("greeter", 1)).unwrap()
    }

    #[test]
    fn greets_by_name() {
        assert_eq!(greeter().call("greet", br#"{"name":" Ada "}"#).unwrap(), br#""Hi, Ada!""#);
    }

    #[test]
    fn reconfigure_changes_the_greeting() {
        let greeter = greeter();
        greeter.reconfigure(Config { greeting: "Hey".into() }).unwrap();
        assert_eq!(greeter.call("greet", br#"{"name":"Ada"}"#).unwrap(), br#""Hey, Ada!""#);
    }

    #[test]
    fn refuses_an_empty_name_and_unknown_methods() {
        assert_eq!(
            greeter().call("greet", br#"{"name":""}"#).unwrap_err().kind(),
            berth_plugin_api::ErrorKind::InvalidInput
        );
        assert_eq!(greeter().call("wave", b"{}").unwrap_err().kind(), berth_plugin_api::ErrorKind::UnknownMethod);
    }
}
