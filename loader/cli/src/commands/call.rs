//! `berth call`: one call, its answer printed.

use std::io::Read;
use std::process::ExitCode;

use berth::Host;

use crate::output::LIST_HINT;

pub(crate) fn call(host: &Host, plugin: &str, method: &str, input: Option<&str>) -> Result<ExitCode, String> {
    let input = match input {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read standard input: {e}"))?;
            text
        }
        Some(text) => text.to_owned(),
        None => "{}".to_owned(),
    };
    serde_json::from_str::<serde_json::Value>(&input).map_err(|e| format!("INPUT is not JSON: {e}"))?;
    let handle = host.plugin(plugin).map_err(|e| match e {
        berth::CallError::UnknownPlugin(_) => format!("{e}; {LIST_HINT}"),
        e => e.to_string(),
    })?;
    match call_answered(&handle, method, input.as_bytes()) {
        Ok(output) => {
            match String::from_utf8(output) {
                Ok(text) => say!("{text}"),
                Err(bytes) => say!("{}", hex_dump(bytes.as_bytes())),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// A call by a caller who wants an answer: by the plugin's `call_timeout` as its own deadline, when it has one.
pub(crate) fn call_answered(
    handle: &berth::PluginHandle,
    method: &str,
    input: &[u8],
) -> Result<Vec<u8>, berth::CallError> {
    match handle.call_timeout() {
        Some(within) => handle.call_within(method, input, within),
        None => handle.call(method, input),
    }
}

pub(crate) fn hex_dump(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
