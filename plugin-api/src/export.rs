//! The export machinery: turns an author's [`Plugin`] into the ABI's root module and vtables, and fences every
//! entry point with `catch_unwind` so no panic ever reaches the boundary (where abi_stable would abort the
//! whole process).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once};

use abi_stable::{
    library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult},
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RErr, ROk, ROption, RResult, RSlice, RStr, RVec},
};

use crate::abi::{
    ErrorKind, HealthReport, HealthStatus, HostContext, PluginError, PluginInfo, PluginInstance, PluginInstance_TO,
    PluginMod, PluginModRef, PluginObject,
};
use crate::extension::Extension;
use crate::plugin::{Error, Host, Plugin};

/// The name and version a plugin library reports; implemented by [`crate::export_plugin!`] from the plugin
/// crate's Cargo package name and version.
pub trait PluginIdentity {
    /// The Cargo package name.
    const NAME: &'static str;
    /// The Cargo package version.
    const VERSION: &'static str;
}

/// Exports `$plugin` (a type implementing [`Plugin`](crate::Plugin)) as this library's Berth plugin.
///
/// Invoke it once, at the root of a crate built as `crate-type = ["cdylib"]`. The library reports the crate's
/// package name and version, which must match its manifest's `name` and `version`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        impl $crate::__private::PluginIdentity for $plugin {
            const NAME: &'static str = env!("CARGO_PKG_NAME");
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }

        /// How this plugin was built, read by the host from the library file before it is opened.
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static berth_build_facts_1: $crate::BuildFacts = $crate::BuildFacts::new(cfg!(panic = "unwind"));

        /// The abi_stable library header of this Berth plugin.
        #[doc(hidden)]
        // The name is abi_stable's mangled root-module symbol (`ROOT_MODULE_LOADER_NAME`), checked by a test.
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader =
            $crate::__private::lib_header::<$plugin>();
    };
}

/// Facts about how a plugin library was built, exported by [`crate::export_plugin!`] (since 1.3) as the
/// symbol [`BuildFacts::SYMBOL`]. The host reads them from the library file, before the library is opened
/// and any of its code runs. Immutable: a new fact is a new symbol.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildFacts {
    /// [`BuildFacts::MAGIC`]: tells these bytes from anything else at that name.
    pub magic: [u8; 8],
    /// 1 when the plugin crate was compiled with `panic = "unwind"`, 0 with `panic = "abort"`: in-process, a
    /// plugin's panics are contained by unwinding to its export fence, and with `abort` the first one ends the
    /// host.
    pub panic_unwind: u8,
}

impl BuildFacts {
    /// The exported symbol's name (without the leading `_` Mach-O adds).
    pub const SYMBOL: &'static str = "berth_build_facts_1";
    /// The first bytes of the facts.
    pub const MAGIC: [u8; 8] = *b"berthbf1";
    /// The size the host reads.
    pub const SIZE: usize = size_of::<BuildFacts>();

    /// The facts of a plugin compiled with the given panic strategy.
    pub const fn new(panic_unwind: bool) -> Self {
        BuildFacts { magic: Self::MAGIC, panic_unwind: panic_unwind as u8 }
    }

    /// Reads facts from the bytes at the symbol: `None` unless they start with [`BuildFacts::MAGIC`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (magic, rest) = bytes.split_first_chunk::<8>()?;
        let panic_unwind = *rest.first()?;
        (*magic == Self::MAGIC).then_some(BuildFacts { magic: *magic, panic_unwind })
    }
}

/// The library header for plugin `P`: what `export_plugin!` puts in the exported static.
pub const fn lib_header<P: Plugin + PluginIdentity>() -> LibHeader {
    // SAFETY: `from_constructor` requires that the constructor return a `PrefixRef<ErasedPrefix>` transmuted
    // from a `PrefixRef` of the module type named here. `root_module_loader::<P>` goes through abi_stable's
    // `__call_root_module_loader`, which erases exactly the `PluginModRef` that `root_module::<P>` returns.
    unsafe { LibHeader::from_constructor::<PluginModRef>(root_module_loader::<P>, CheckTypeLayout::Yes) }
}

extern "C" fn root_module_loader<P: Plugin + PluginIdentity>() -> RootModuleResult {
    __call_root_module_loader(root_module::<P>)
}

fn root_module<P: Plugin + PluginIdentity>() -> PluginModRef {
    let info = PluginInfo {
        name: RStr::from_str(P::NAME),
        version: RStr::from_str(P::VERSION),
        api_version: RStr::from_str(crate::API_VERSION),
        rustc: RStr::from_str(env!("BERTH_BUILD_RUSTC")),
        target: RStr::from_str(env!("BERTH_BUILD_TARGET")),
        profile: RStr::from_str(env!("BERTH_BUILD_PROFILE")),
    };
    PluginMod { info, create: create::<P> }.leak_into_prefix()
}

extern "C" fn create<P: Plugin>(config: RStr<'_>, host: HostContext) -> RResult<PluginObject, PluginError> {
    install_panic_hook();
    guard(|| {
        #[cfg(feature = "log-bridge")]
        crate::log::install(host.logger, host.max_level);
        let config = decode_config::<P>(config.as_str())?;
        let context = Host::new(host.plugin.into_string(), host.generation);
        let plugin = P::create(config, &context)?;
        Ok(PluginInstance_TO::from_value(Exported(Shared::new(plugin)), TD_Opaque))
    })
}

/// Decodes the manifest's `[config]` table (as JSON) into the plugin's `Config`.
pub(crate) fn decode_config<P: Plugin>(json: &str) -> Result<P::Config, Error> {
    serde_json::from_str(json).map_err(|e| Error::invalid_config(format!("[config]: {e}")))
}

/// An author's plugin behind the instance vtable.
struct Exported<P>(Shared<P>);

impl<P: Plugin> PluginInstance for Exported<P> {
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        guard(|| self.0.call(method.as_str(), input.as_slice()).map(RVec::from))
    }

    fn health(&self) -> HealthReport {
        match guard(|| Ok(self.0.health())) {
            ROk(health) => health.into(),
            RErr(error) => HealthReport { status: HealthStatus::Failing, detail: error.message },
        }
    }

    fn extension(&self, id: RStr<'_>) -> ROption<Extension> {
        let plugin = self.0.arc();
        // A panic while looking an extension up means "not provided"; the panic itself is logged by the hook.
        guard(|| Ok(P::extension(plugin, id.as_str()))).into_result().ok().flatten().into()
    }

    fn shutdown(&self) -> RResult<(), PluginError> {
        guard(|| {
            self.0.shutdown();
            Ok(())
        })
    }
}

/// An implementation behind an extension vtable. Implement the interface's `#[sabi_trait]` for `Guarded<T>`
/// and fence every method body with [`guard`]; dropping it runs `T`'s drop behind `catch_unwind` as well, so no
/// panic of the implementation ever reaches the boundary. See [`crate::Interface`] for a whole interface.
pub struct Guarded<T>(pub(crate) Shared<T>);

impl<T> Guarded<T> {
    /// Wraps a shared implementation.
    pub fn new(implementation: Arc<T>) -> Self {
        Self(Shared::from_arc(implementation))
    }
}

impl<T> Deref for Guarded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// An `Arc<T>` whose drop runs behind `catch_unwind`: the host drops plugin objects through the vtable, and a
/// panicking `Drop` impl must not unwind into it.
pub(crate) struct Shared<T>(Option<Arc<T>>);

impl<T> Shared<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Some(Arc::new(value)))
    }

    pub(crate) fn from_arc(value: Arc<T>) -> Self {
        Self(Some(value))
    }

    pub(crate) fn arc(&self) -> Arc<T> {
        Arc::clone(self.as_arc())
    }

    fn as_arc(&self) -> &Arc<T> {
        self.0.as_ref().expect("a Shared is only empty while it is dropped")
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.as_arc()
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let value = self.0.take();
        let _ = guard(move || {
            drop(value);
            Ok(())
        });
    }
}

thread_local! {
    /// Whether this thread is inside `guard` (so the hook keeps the panic's text for the error value).
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// The text of the last panic caught by `guard` on this thread, with its location.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning an `Err` into a [`PluginError`] and a panic into an [`ErrorKind::Panicked`] error: the
/// fence around every method of an extension interface (see [`Guarded`]).
pub fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> RResult<T, PluginError> {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(error)) => RErr(error.into()),
        Err(payload) => {
            let message = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| payload_text(payload.as_ref()));
            RErr(PluginError { kind: ErrorKind::Panicked, message: message.into() })
        }
    }
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_owned());
    format!("panicked: {text}")
}

/// This plugin's own std has its own panic hook. Inside `guard` the hook keeps the panic's text (with its
/// location) for the error value instead of printing it; elsewhere (a thread the plugin spawned) it logs it.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let text = info.to_string().replace('\n', " ");
            if GUARDED.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
            } else {
                tracing::error!("{text}");
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_macro_uses_abi_stables_symbol_name() {
        assert_eq!(abi_stable::library::ROOT_MODULE_LOADER_NAME, "_1as_0lib_1header_0root_bmodule_bloader");
    }

    #[test]
    fn guard_turns_a_panic_into_an_error_with_its_message() {
        install_panic_hook();
        let result: RResult<(), PluginError> = guard(|| panic!("boom {}", 42));
        let error = result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Panicked);
        assert!(error.message.contains("boom 42"), "{}", error.message);
        assert!(error.message.contains("export.rs"), "location missing: {}", error.message);
    }

    #[test]
    fn guard_passes_errors_and_values_through() {
        assert_eq!(guard(|| Ok(7)).unwrap(), 7);
        let error = guard::<()>(|| Err(Error::unavailable("quota"))).unwrap_err();
        assert_eq!((error.kind, error.message.as_str()), (ErrorKind::Unavailable, "quota"));
    }
}
