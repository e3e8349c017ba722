//! `berth run`: load, watch, print every event (and the answers of `--call`) until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use berth::json::EventLine;
use berth::{Event, Host, HostConfig};

use crate::commands::call::call_answered;
use crate::output::print_json_line;

/// `berth run`: load, watch, print events (and the answers of `--call`) until Ctrl-C or SIGTERM.
/// With `json`, every line is a JSON document (`berth::json::EventLine`) instead.
pub(crate) fn run_host(
    config: HostConfig,
    call: Option<&str>,
    every: Duration,
    json: bool,
) -> Result<ExitCode, String> {
    let call = call.map(parse_call).transpose()?;
    // Printed as they happen, in order, on the thread that made the change.
    let print = move |event: &Event| match json {
        true => print_json_line(&EventLine::from(event)),
        false => say!("event: {event}"),
    };
    let host = std::sync::Arc::new(
        Host::builder(config).observer(print).isolator(crate::isolator()).build().map_err(|e| e.to_string())?,
    );
    let supervisor = berth_runtime::Supervisor::start(&host).map_err(|e| format!("cannot start supervision: {e}"))?;
    let report = host.load_all();
    for failure in report.failures.iter().filter(|f| f.plugin.is_none()) {
        match json {
            true => print_json_line(&EventLine::unreadable(failure)),
            false => say!("event: {failure}"),
        }
    }
    let watcher = host.watch().map_err(|e| e.to_string())?;
    let plugin_dirs = host.config().plugin_dirs.clone();
    let host_line = |state: &'static str, text: &str| match json {
        true => print_json_line(&EventLine::host(state, &plugin_dirs)),
        false => say!("berth: {text}"),
    };
    let dirs: Vec<String> = plugin_dirs.iter().map(|d| d.display().to_string()).collect();
    host_line("serving", &format!("serving, watching {}; Ctrl-C or SIGTERM stops", dirs.join(", ")));
    // The calls run on a thread of their own: a slow plugin must never keep the signal from being handled.
    // Dropping `stop` ends the caller's wait at once, however long `--every` is.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let caller = call.map(|(plugin, method, input)| {
        let host = host.clone();
        std::thread::spawn(move || {
            loop {
                // Looked up every time: the plugin may be installed after `run` started.
                let outcome = host.plugin(&plugin).and_then(|handle| call_answered(&handle, &method, input.as_bytes()));
                match (&outcome, json) {
                    (_, true) => print_json_line(&EventLine::call(&plugin, &method, &outcome)),
                    (Ok(output), false) => say!("call {plugin} {method}: {}", String::from_utf8_lossy(output)),
                    (Err(error), false) => say!("call {plugin} {method}: error: {error}"),
                }
                if stopped.recv_timeout(every) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
            }
        })
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(stop_signal())?;
    // A second Ctrl-C or SIGTERM while plugins shut down exits at once.
    runtime.spawn(async {
        if stop_signal().await.is_ok() {
            eprintln!("berth: second signal, exiting without waiting for plugins to shut down");
            std::process::exit(130);
        }
    });
    drop(stop);
    if let Some(caller) = caller {
        let _ = caller.join();
    }
    host_line("stopping", "stopping");
    drop(watcher);
    drop(supervisor);
    host.shutdown();
    host_line("stopped", "stopped");
    Ok(ExitCode::SUCCESS)
}

/// "PLUGIN METHOD [INPUT]" (INPUT is JSON, `{}` when left out).
pub(crate) fn parse_call(text: &str) -> Result<(String, String, String), String> {
    let mut parts = text.trim().splitn(3, char::is_whitespace);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(plugin), Some(method), input) if !plugin.is_empty() => {
            let input = input.map_or("{}", str::trim).to_owned();
            serde_json::from_str::<serde_json::Value>(&input).map_err(|e| format!("--call INPUT is not JSON: {e}"))?;
            Ok((plugin.to_owned(), method.to_owned(), input))
        }
        _ => Err(format!("--call {text:?}: expected \"PLUGIN METHOD [INPUT]\"")),
    }
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() -> Result<(), String> {
    let ctrl_c = async { tokio::signal::ctrl_c().await.map_err(|e| format!("cannot listen for Ctrl-C: {e}")) };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
        tokio::select! {
            result = ctrl_c => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await
}
