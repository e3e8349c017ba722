//! Extension interfaces: immutable, versioned vtables a plugin may provide beside the frozen core, each
//! layout-checked on its own when the host asks for it by id.
//!
//! An [`Extension`] travels as a type-erased box plus the `TypeLayout` of what is inside. The host turns it
//! back into the typed object only after abi_stable's `check_layout_compatibility` has accepted the layout
//! the plugin was built with against the one the host expects.

use abi_stable::{
    StableAbi,
    abi_stability::abi_checking::{AbiInstability, AbiInstabilityErrors, ExpectedFound, check_layout_compatibility},
    pointer_trait::TransmuteElement,
    std_types::RBox,
    type_layout::{TLFieldOrFunction, TypeLayout},
};

/// A versioned extension interface: an id such as `"berth.text-filter/1"` and the ABI type behind it.
///
/// Once published, an interface never changes; a changed one gets a new id (`.../2`).
pub trait Interface {
    /// The id plugins and hosts agree on: `"<namespace>.<name>/<major>"`.
    const ID: &'static str;
    /// The ABI object that crosses the boundary (a `#[sabi_trait]` object).
    type Object: StableAbi + 'static;
    /// What the host's application code holds: a safe, ordinary-Rust wrapper of the object.
    type Handle;
    /// Wraps an object the host has received and checked.
    fn handle(object: Self::Object) -> Self::Handle;
}

/// An extension object on its way from a plugin to the host.
#[repr(C)]
#[derive(StableAbi)]
pub struct Extension {
    layout: &'static TypeLayout,
    object: RBox<()>,
}

impl Extension {
    /// Erases `object`, recording the layout it was built with.
    pub fn new<I: Interface>(object: I::Object) -> Self {
        let boxed = RBox::new(object);
        // SAFETY: `transmute_element` only renames the pointee type; the box's vtable still drops and frees an
        // `I::Object`. The erased box is only ever turned back into a typed one in `into_object`, after the
        // layout recorded here has been checked against the layout the caller expects.
        let object = unsafe { boxed.transmute_element::<()>() };
        Self { layout: <I::Object as StableAbi>::LAYOUT, object }
    }

    /// Checks the layout the plugin built the object with against the host's `I::Object`, then returns it.
    pub fn into_object<I: Interface>(self) -> Result<I::Object, ExtensionMismatch> {
        check_layout_compatibility(<I::Object as StableAbi>::LAYOUT, self.layout).map_err(|errors| {
            ExtensionMismatch { id: I::ID, summary: summarize_layout_errors(&errors), details: errors.to_string() }
        })?;
        // SAFETY: the box holds the object `Extension::new` erased, and abi_stable has just accepted its layout
        // as compatible with `I::Object`, so reading it as one is sound.
        let typed: RBox<I::Object> = unsafe { self.object.transmute_element::<I::Object>() };
        Ok(RBox::into_inner(typed))
    }
}

/// A plugin's extension object whose layout the host cannot accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionMismatch {
    /// The interface id.
    pub id: &'static str,
    /// The first difference, on one line.
    pub summary: String,
    /// abi_stable's full report.
    pub details: String,
}

impl std::fmt::Display for ExtensionMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "extension {:?} has an incompatible layout: {}", self.id, self.summary)
    }
}

impl std::error::Error for ExtensionMismatch {}

/// A one-line summary of abi_stable's layout report (which runs to hundreds of lines): how many differences,
/// where the first one is (the path of field names from the root type) and what it is.
pub fn summarize_layout_errors(errors: &AbiInstabilityErrors) -> String {
    let count: usize = errors.errors.iter().map(|e| e.errs.len()).sum();
    let first = errors.errors.iter().find_map(|e| e.errs.first().map(|err| (&e.stack_trace, err)));
    let Some((trace, err)) = first else {
        return "the layouts differ".to_owned();
    };
    let place: Vec<&str> = trace
        .iter()
        .filter_map(|frame| match &frame.expected {
            TLFieldOrFunction::Field(field) => Some(field.name()),
            TLFieldOrFunction::Function(_) => None,
        })
        .collect();
    let what = describe(err);
    if place.is_empty() {
        format!("{count} layout difference(s), first: {what}")
    } else {
        format!("{count} layout difference(s), first at `{}`: {what}", place.join("."))
    }
}

fn describe(err: &AbiInstability) -> String {
    fn pair<T: std::fmt::Display>(what: &str, v: &ExpectedFound<T>) -> String {
        format!("{what} (host expects {}, library has {})", v.expected, v.found)
    }
    let text = match err {
        AbiInstability::FieldCountMismatch(v) => pair("different number of fields", v),
        AbiInstability::Size(v) => pair("different size in bytes", v),
        AbiInstability::Alignment(v) => pair("different alignment", v),
        AbiInstability::Name(v) => pair("different type", v),
        AbiInstability::Package(v) => pair("type from a different package", v),
        AbiInstability::PackageVersion(v) => pair("incompatible package versions", v),
        AbiInstability::MismatchedPrefixSize(v) => pair("different prefix length", v),
        AbiInstability::TooManyVariants(v) => pair("different number of enum variants", v),
        AbiInstability::UnexpectedField(v) => {
            format!("different field (host expects `{}`, library has `{}`)", v.expected.name(), v.found.name())
        }
        AbiInstability::MismatchedPrimitive(v) => {
            format!("different primitive (host expects {:?}, library has {:?})", v.expected, v.found)
        }
        other => {
            let debug = format!("{other:?}");
            debug.split(['(', ' ', '{']).next().unwrap_or("difference").to_owned()
        }
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
