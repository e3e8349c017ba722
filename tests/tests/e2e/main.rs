//! The end-to-end tests, as one test binary (one link; the fixtures `berth_tests::built` builds once per
//! process are shared by every module), as ripgrep keeps its integration tests. Each module is one area; run
//! one with `cargo test -p berth-tests --test e2e -- reload::`. The logging bridge's test stays in a binary
//! of its own (`logging.rs`): it installs a process-wide `tracing` subscriber.

mod abi;
mod cli;
mod guide;
mod install;
mod isolation;
mod plugins;
mod refusals;
mod reload;
mod supervision;
mod tidy;
mod trust;
mod typed;
