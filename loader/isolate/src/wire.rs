//! What host and worker say to each other: the start message (on the worker's stdin), the start report, the
//! operations and answer codes of a slot, and the worker's log lines (on its stderr).
#![forbid(unsafe_code)]

use berth::LibraryInfo;
use berth::isolation::{Permissions, SandboxReport};
use berth_plugin_api::abi::LogLevel;
use berth_plugin_api::{ErrorKind, HealthStatus};
use serde::{Deserialize, Serialize};

/// The worker's fd of the shared memory.
pub const REGION_FD: i32 = 3;
/// The worker's fd of the verified private copy of the library.
pub const LIBRARY_FD: i32 = 4;
/// The most the start message may be.
pub const MAX_START: u64 = 1 << 20;

/// What the host tells a new worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Start {
    /// The host's process id: the worker exits if its parent is another.
    pub host_pid: u32,
    pub plugin: String,
    pub version: String,
    pub generation: u64,
    pub config_json: String,
    pub permissions: Permissions,
    /// The log level, as [`level_code`] gives it.
    pub max_level: u8,
}

/// The worker's report once the plugin is created.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    pub info: LibraryInfo,
    pub sandbox: SandboxReport,
}

/// Operations.
pub const CALL: u32 = 1;
pub const HEALTH: u32 = 2;
pub const STATE_SCHEMA: u32 = 3;
pub const EXPORT_STATE: u32 = 4;
pub const IMPORT_STATE: u32 = 5;
pub const RECONFIGURE: u32 = 6;

/// Answers.
pub const OK: u32 = 0;
/// A plugin error: the first byte its kind ([`kind_code`]), then the message.
pub const ERROR: u32 = 1;
/// The plugin has no such interface (state, reconfigure).
pub const NONE: u32 = 2;

/// The first bytes of a log line.
pub const LOG_MARK: &str = "\u{1e}berth-log\u{1f}";
const SEPARATOR: char = '\u{1f}';

pub fn kind_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Failed => 0,
        ErrorKind::Panicked => 1,
        ErrorKind::UnknownMethod => 2,
        ErrorKind::InvalidInput => 3,
        ErrorKind::InvalidConfig => 4,
        ErrorKind::Unavailable => 5,
    }
}

pub fn kind_of(code: u8) -> ErrorKind {
    match code {
        1 => ErrorKind::Panicked,
        2 => ErrorKind::UnknownMethod,
        3 => ErrorKind::InvalidInput,
        4 => ErrorKind::InvalidConfig,
        5 => ErrorKind::Unavailable,
        _ => ErrorKind::Failed,
    }
}

pub fn health_code(status: HealthStatus) -> u8 {
    match status {
        HealthStatus::Ok => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Failing => 2,
    }
}

pub fn health_of(code: u8) -> HealthStatus {
    match code {
        0 => HealthStatus::Ok,
        1 => HealthStatus::Degraded,
        _ => HealthStatus::Failing,
    }
}

pub fn level_code(level: LogLevel) -> u8 {
    level as u8
}

pub fn level_of(code: u8) -> LogLevel {
    match code {
        0 => LogLevel::Off,
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        3 => LogLevel::Info,
        4 => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

/// One log record as a line: the mark, then level, target, message and fields separated by U+001F; line
/// breaks and separators inside them become spaces.
pub fn log_line(level: LogLevel, target: &str, message: &str, fields: &str) -> String {
    let clean = |text: &str| text.replace(['\n', '\r', SEPARATOR, '\u{1e}'], " ");
    format!(
        "{LOG_MARK}{}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}\n",
        level_code(level),
        clean(target),
        clean(message),
        clean(fields)
    )
}

/// A log line's level, target, message and fields; `None` for any other line.
pub fn parse_log_line(line: &str) -> Option<(LogLevel, &str, &str, &str)> {
    let mut parts = line.strip_prefix(LOG_MARK)?.splitn(4, SEPARATOR);
    let level = level_of(parts.next()?.parse().ok()?);
    Some((level, parts.next()?, parts.next()?, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_reads_back_as_written_with_line_breaks_made_spaces() {
        let line = log_line(LogLevel::Warn, "demo::x", "two\nlines", "a=1 b=\u{1f}2");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        assert_eq!(parse_log_line(line.trim_end()), Some((LogLevel::Warn, "demo::x", "two lines", "a=1 b= 2")));
        assert_eq!(parse_log_line("thread 'main' panicked"), None);
        for kind in [ErrorKind::Failed, ErrorKind::Panicked, ErrorKind::UnknownMethod, ErrorKind::Unavailable] {
            assert_eq!(kind_of(kind_code(kind)), kind);
        }
    }
}
