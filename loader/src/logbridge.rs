//! The host's side of the logging bridge: each plugin instance gets a [`HostLogger`] that turns the plugin's
//! `tracing` events into events of the host's subscriber, target `berth::plugin`, with `plugin`, `version`
//! and `generation` fields.
#![forbid(unsafe_code)]

use abi_stable::sabi_trait::TD_Opaque;
use berth_plugin_api::abi::{HostContext, HostLogger, HostLogger_TO, HostLoggerObject, LogLevel, LogRecord};
use tracing::level_filters::LevelFilter;

struct PluginLog {
    plugin: String,
    version: String,
    generation: u64,
}

/// Whether the plugin's own fields (`key=value ...`) already carry `name`: the host then leaves its own out, so
/// a line never holds a field twice (and the plugin's value, of the instance that logged, is the one shown).
fn has_field(fields: &str, name: &str) -> bool {
    fields.split(' ').any(|field| field.strip_prefix(name).is_some_and(|rest| rest.starts_with('=')))
}

/// Re-emits `$record` at `$level` with the instance's fields, and `$extra` fields if any.
macro_rules! emit {
    ($level:expr, $log:expr, $record:expr $(, $field:ident = $value:expr)?) => {
        tracing::event!(
            target: "berth::plugin",
            $level,
            plugin = %$log.plugin,
            version = %$log.version,
            $($field = $value,)?
            module = %$record.target,
            "{}{}{}",
            $record.message,
            if $record.fields.is_empty() { "" } else { " " },
            $record.fields
        )
    };
}

macro_rules! forward {
    ($level:expr, $log:expr, $record:expr) => {
        if has_field($record.fields.as_str(), "generation") {
            emit!($level, $log, $record)
        } else {
            emit!($level, $log, $record, generation = $log.generation)
        }
    };
}

impl HostLogger for PluginLog {
    fn log(&self, record: LogRecord<'_>) {
        match record.level {
            LogLevel::Error => forward!(tracing::Level::ERROR, self, record),
            LogLevel::Warn => forward!(tracing::Level::WARN, self, record),
            LogLevel::Info => forward!(tracing::Level::INFO, self, record),
            LogLevel::Debug => forward!(tracing::Level::DEBUG, self, record),
            LogLevel::Trace => forward!(tracing::Level::TRACE, self, record),
            LogLevel::Off => {}
        }
    }
}

/// The context handed to a new instance of `plugin` at `version`, generation `generation`.
pub(crate) fn context(plugin: &str, version: &str, generation: u64) -> HostContext {
    HostContext {
        plugin: plugin.into(),
        generation,
        max_level: max_level(),
        logger: logger(plugin, version, generation),
    }
}

/// The most verbose level the host's subscriber records now.
pub(crate) fn max_level() -> LogLevel {
    match LevelFilter::current() {
        LevelFilter::OFF => LogLevel::Off,
        LevelFilter::ERROR => LogLevel::Error,
        LevelFilter::WARN => LogLevel::Warn,
        LevelFilter::INFO => LogLevel::Info,
        LevelFilter::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

/// The logger of generation `generation` of `plugin` at `version`: its records become events of the host's
/// subscriber. A worker process forwards its plugin's records to it.
pub fn logger(plugin: &str, version: &str, generation: u64) -> HostLoggerObject {
    let log = PluginLog { plugin: plugin.to_owned(), version: version.to_owned(), generation };
    HostLogger_TO::from_value(log, TD_Opaque)
}
