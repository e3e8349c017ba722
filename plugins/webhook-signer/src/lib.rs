//! Signs and verifies webhook payloads with HMAC-SHA256, the key read from an environment variable named in
//! the config (so the secret never sits in the manifest).
//!
//! - `sign` `{"payload": "...", "timestamp": 1700000000}` -> `{"header": "X-Berth-Signature", "signature":
//!   "t=<timestamp>,v1=<hex>"}`: the MAC covers `"<timestamp>.<payload>"`, so a signature cannot be replayed
//!   with another timestamp.
//! - `verify` `{"payload": "...", "signature": "t=...,v1=..."}` -> `{"valid": bool}`, compared in constant
//!   time.
#![forbid(unsafe_code)]

use berth_plugin_api::{Error, Host, Plugin, export_plugin, json_call};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The `[config]` table of webhook-signer's manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The environment variable that holds the signing key (at least 16 bytes).
    secret_env: String,
    /// The HTTP header the signature goes in.
    #[serde(default = "default_header")]
    header: String,
}

fn default_header() -> String {
    "X-Berth-Signature".to_owned()
}

#[derive(Deserialize)]
struct SignRequest {
    payload: String,
    timestamp: u64,
}

#[derive(Serialize)]
struct Signed {
    header: String,
    signature: String,
}

#[derive(Deserialize)]
struct VerifyRequest {
    payload: String,
    signature: String,
}

#[derive(Serialize)]
struct Verified {
    valid: bool,
}

/// The plugin: the key and the header name.
pub struct WebhookSigner {
    key: Vec<u8>,
    header: String,
}

impl WebhookSigner {
    fn mac(&self, timestamp: u64, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(format!("{timestamp}.{payload}").as_bytes());
        mac
    }

    fn verify(&self, payload: &str, signature: &str) -> bool {
        let Some((t, v1)) = signature.split_once(',') else { return false };
        let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else { return false };
        let (Ok(timestamp), Ok(tag)) = (t.parse::<u64>(), hex::decode(v1)) else { return false };
        self.mac(timestamp, payload).verify_slice(&tag).is_ok()
    }
}

impl Plugin for WebhookSigner {
    type Config = Config;

    fn create(config: Config, _host: &Host) -> Result<Self, Error> {
        let key = std::env::var(&config.secret_env).map_err(|_| {
            Error::invalid_config(format!(
                "environment variable {} is not set; export the signing key in it",
                config.secret_env
            ))
        })?;
        if key.len() < 16 {
            return Err(Error::invalid_config(format!("the key in {} is shorter than 16 bytes", config.secret_env)));
        }
        Ok(WebhookSigner { key: key.into_bytes(), header: config.header })
    }

    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        match method {
            "sign" => json_call(input, |request: SignRequest| {
                let tag = self.mac(request.timestamp, &request.payload).finalize().into_bytes();
                let signature = format!("t={},v1={}", request.timestamp, hex::encode(tag));
                Ok(Signed { header: self.header.clone(), signature })
            }),
            "verify" => json_call(input, |request: VerifyRequest| {
                Ok(Verified { valid: self.verify(&request.payload, &request.signature) })
            }),
            other => Err(Error::unknown_method(other)),
        }
    }
}

export_plugin!(WebhookSigner);

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> WebhookSigner {
        WebhookSigner { key: b"0123456789abcdef".to_vec(), header: default_header() }
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // RFC 4231 test case 2 shape: key "Jefe", data "what do ya want for nothing?".
        let s = WebhookSigner { key: b"Jefe".to_vec(), header: default_header() };
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let out = s.call("sign", br#"{"payload":"hi","timestamp":5}"#).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("t=5,v1="));
    }

    #[test]
    fn verifies_its_signatures_and_refuses_tampering() {
        let s = signer();
        let signed: serde_json::Value =
            serde_json::from_slice(&s.call("sign", br#"{"payload":"body","timestamp":7}"#).unwrap()).unwrap();
        let signature = signed["signature"].as_str().unwrap();
        assert!(s.verify("body", signature));
        assert!(!s.verify("body!", signature));
        assert!(!s.verify("body", &signature.replace("t=7", "t=8")));
        assert!(!s.verify("body", "garbage"));
    }
}
