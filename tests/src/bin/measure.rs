//! `measure SECONDS PROGRAM [ARGS...]`: runs PROGRAM as its only child, kills it after SECONDS, and prints
//! to its standard error, last, one line `measure: peak_rss_kib=<n> elapsed_ms=<n> timed_out=<bool>`. Its
//! exit code is the child's (or 124 after a timeout, 125 when the program cannot start).
//!
//! The hostile-input tests run the `berth` CLI through it: the peak memory is the child's own (from
//! `getrusage(RUSAGE_CHILDREN)` in a process that has exactly one child), not the test process's, whose
//! children include cargo and rustc.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(seconds), Some(program)) = (args.first().and_then(|s| s.parse::<u64>().ok()), args.get(1)) else {
        eprintln!("usage: measure SECONDS PROGRAM [ARGS...]");
        return ExitCode::from(125);
    };
    let start = Instant::now();
    let mut child = match Command::new(program).args(&args[2..]).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("measure: cannot start {program}: {e}");
            return ExitCode::from(125);
        }
    };
    let deadline = start + Duration::from_secs(seconds);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::park_timeout(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let elapsed = start.elapsed();
    let peak = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|usage| usage.max_rss())
        .unwrap_or(-1);
    eprintln!("measure: peak_rss_kib={peak} elapsed_ms={} timed_out={timed_out}", elapsed.as_millis());
    match status.and_then(|s| s.code()) {
        _ if timed_out => ExitCode::from(124),
        Some(code) => ExitCode::from(code.clamp(0, 255) as u8),
        None => ExitCode::from(125),
    }
}
