//! The plugin author's tools, as a library: what `cargo berth` (this crate's binary) and the Berth
//! repository's `cargo xtask` both run.
//!
//! - [`scaffold`]: a new plugin crate and its manifest, which build, pass their tests and bundle at once;
//! - [`keys`]: minisign key pairs, and a secret key loaded to sign ([`SigningKey`]);
//! - [`project`]: the plugin crates of a cargo workspace, their manifests, and their release builds;
//! - [`bundle`]: bundles (`<name>-<version>-<target>.tar.gz`) written and signed the way hosts verify them.
//!
//! Everything here returns what it did (types whose `Display` is the line a tool prints) and a typed
//! [`Error`]; only [`cli`], the subcommands both tools share, prints. A bundle is for the target these tools were built for ([`HOST_TARGET`]): build
//! and bundle on each platform you ship for.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod cli;
pub mod keys;
pub mod project;
pub mod scaffold;

use std::io;
use std::path::PathBuf;

pub use berth::trust::HOST_TARGET;
pub use bundle::{Bundled, Signed, bundle_all, pack, sign};
pub use keys::{KeyPair, SigningKey, keygen};
pub use project::{PluginCrate, Workspace};
pub use scaffold::{ApiDependency, NewPlugin, Scaffolded, new_plugin};

/// Why an author's tool refused or failed. Each message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done: "read", "create", ...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// A file is not what it must be, or a request cannot be met; `problem` says what to do.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file (or directory) at fault.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A file that would be replaced already exists.
    #[error("{} already exists; {advice}", path.display())]
    Exists {
        /// The file or directory.
        path: PathBuf,
        /// What to do instead.
        advice: &'static str,
    },
    /// Cargo could not be run, or failed.
    #[error("{command}: {problem}")]
    Cargo {
        /// The cargo command, as a person would type it.
        command: String,
        /// What went wrong (cargo's own messages went to standard error).
        problem: String,
    },
    /// A bundle cannot be read, or is not a usable bundle (the message names it).
    #[error(transparent)]
    Bundle(berth::BundleError),
    /// Some of several bundles were not written (each one's error was reported).
    #[error("{failed} of {of} plugins not bundled")]
    NotAll {
        /// How many failed.
        failed: usize,
        /// Out of how many.
        of: usize,
    },
    /// A minisign operation failed.
    #[error("{0}")]
    Key(String),
}

impl Error {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io { action, path, error }
    }

    fn invalid(path: impl Into<PathBuf>, problem: impl Into<String>) -> Error {
        Error::Invalid { path: path.into(), problem: problem.into() }
    }
}

/// Creates `path` with `bytes`, refusing to replace an existing file; `mode` applies on Unix.
fn write_new(
    path: &std::path::Path,
    bytes: &[u8],
    #[cfg_attr(not(unix), allow(unused_variables))] mode: u32,
    advice: &'static str,
) -> Result<(), Error> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    match options.open(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::Exists { path: path.to_owned(), advice }),
        Err(e) => Err(Error::io("create", path)(e)),
        Ok(mut file) => file.write_all(bytes).and_then(|()| file.sync_all()).map_err(Error::io("write", path)),
    }
}
