//! The logging bridge: `tracing` events emitted inside a plugin reach the host's subscriber with the
//! plugin's name, version and generation. Alone in its test binary, because `tracing` caches callsite
//! interest process-wide and a scoped subscriber must not race other tests' callsites.

use std::sync::{Arc, Mutex};

use berth_tests::Layout;

/// Records the events of the host's `tracing` subscriber with their fields.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut fields = Fields(format!("{} ", event.metadata().target()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[test]
fn plugin_tracing_events_reach_the_hosts_subscriber_with_plugin_fields() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let layout = Layout::new();
    layout.add_example("greeter");
    tracing::subscriber::with_default(subscriber, || {
        let host = layout.host();
        host.load_all();
    });
    let lines = captured.0.lock().unwrap();
    let line =
        lines.iter().find(|l| l.contains("greeter ready")).unwrap_or_else(|| panic!("no plugin event in {lines:#?}"));
    assert!(line.starts_with("berth::plugin "), "{line}");
    for field in ["plugin=greeter", "version=1.0.0", "generation=1"] {
        assert_eq!(line.matches(field).count(), 1, "{field} not exactly once in {line}");
    }
}
