//! One module per command (cargo's layout); `main` parses and dispatches.

pub(crate) mod call;
pub(crate) mod check;
pub(crate) mod info;
pub(crate) mod install;
pub(crate) mod list;
pub(crate) mod run;
