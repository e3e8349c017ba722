//! The published extension interfaces, one module per interface id.
//!
//! Each module holds the interface's ABI object (a `#[sabi_trait]`), the ordinary Rust trait a plugin author
//! implements, an `export` function that wraps an implementation (catching its panics) into an
//! [`Extension`](crate::Extension), and the safe handle a host gets back. A published module never changes;
//! a new version of an interface is a new module.

pub mod reconfigure;
pub mod state;
pub mod text_filter;
