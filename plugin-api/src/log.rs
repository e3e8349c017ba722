//! The plugin's side of the logging bridge: a `tracing` subscriber, installed as this plugin's global default
//! at `create`, that forwards every enabled event to the host's [`HostLogger`](crate::abi::HostLogger).
#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};
use std::sync::{Once, RwLock};

use abi_stable::std_types::RStr;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

use crate::abi::{HostLoggerObject, LogLevel, LogRecord};

struct Bridge {
    logger: HostLoggerObject,
    max_level: LogLevel,
}

/// The logger of the most recent `create` in this library image.
static BRIDGE: RwLock<Option<Bridge>> = RwLock::new(None);

/// Points this plugin's `tracing` at the host. Called at every `create`; the latest host logger wins.
pub(crate) fn install(logger: HostLoggerObject, max_level: LogLevel) {
    *BRIDGE.write().unwrap_or_else(|e| e.into_inner()) = Some(Bridge { logger, max_level });
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if the plugin installed a global subscriber of its own; then its choice stands.
        let _ = tracing::subscriber::set_global_default(Registry::default().with(BridgeLayer));
    });
}

fn level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

struct BridgeLayer;

impl<S: Subscriber> Layer<S> for BridgeLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        let bridge = BRIDGE.read().unwrap_or_else(|e| e.into_inner());
        bridge.as_ref().is_some_and(|b| level(metadata.level()) <= b.max_level)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let bridge = BRIDGE.read().unwrap_or_else(|e| e.into_inner());
        if let Some(bridge) = bridge.as_ref() {
            let metadata = event.metadata();
            bridge.logger.log(LogRecord {
                level: level(metadata.level()),
                target: RStr::from_str(metadata.target()),
                message: RStr::from_str(&fields.message),
                fields: RStr::from_str(&fields.rest),
            });
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.rest.is_empty() {
                self.rest.push(' ');
            }
            let _ = write!(self.rest, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}
