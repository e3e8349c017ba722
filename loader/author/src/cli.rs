//! The subcommands `cargo berth` and the Berth repository's `cargo xtask` share, as clap arguments, and what
//! they print: the one place in this crate that prints.

use std::path::PathBuf;

use crate::{Error, SigningKey};

/// Sign the library in a bundle, in place.
#[derive(Debug, clap::Args)]
pub struct Sign {
    /// The bundle (`<name>-<version>-<target>.tar.gz`).
    pub bundle: PathBuf,
    /// The minisign secret key (asks for its password, or reads BERTH_KEY_PASSWORD, when it has one).
    #[arg(long, value_name = "SECRET_KEY_FILE")]
    pub key: PathBuf,
}

impl Sign {
    /// Signs, and says what was signed.
    pub fn run(&self) -> Result<(), Error> {
        println!("{}", crate::sign(&self.bundle, &SigningKey::load(&self.key)?)?);
        Ok(())
    }
}

/// Write a new minisign key pair without a password (berth.key, berth.pub), for CI.
#[derive(Debug, clap::Args)]
pub struct Keygen {
    /// The directory to write the key pair into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

impl Keygen {
    /// Writes the pair, says where and how to trust it, and warns that it has no password.
    pub fn run(&self) -> Result<(), Error> {
        let pair = crate::keygen(&self.out)?;
        println!("{pair}");
        eprintln!("\n{}", pair.warning());
        Ok(())
    }
}

/// Where to write bundles and how to sign them.
#[derive(Debug, clap::Args)]
pub struct BundleOptions {
    /// Where to write the bundles [default: bundles in the target directory].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Sign each library with this minisign secret key (asks for its password, or reads BERTH_KEY_PASSWORD,
    /// when it has one).
    #[arg(long, value_name = "SECRET_KEY_FILE")]
    pub key: Option<PathBuf>,
}

impl BundleOptions {
    /// Bundles `plugins` of `workspace`, one line each; a plugin that fails does not stop the others, and is
    /// reported on standard error.
    pub fn run(&self, workspace: &crate::Workspace, plugins: &[crate::PluginCrate]) -> Result<(), Error> {
        // Before the build: a wrong key or password should not wait for a release build to be reported.
        let key = self.key.as_deref().map(SigningKey::load).transpose()?;
        let out = self.out.clone().unwrap_or_else(|| workspace.target_dir().join("bundles"));
        let mut failed = 0;
        for (plugin, bundled) in plugins.iter().zip(crate::bundle_all(workspace, plugins, &out, key.as_ref())?) {
            match bundled {
                Ok(bundled) => println!("{bundled}"),
                Err(error) => {
                    eprintln!("error: {}: {error}", plugin.name);
                    failed += 1;
                }
            }
        }
        match failed {
            0 => Ok(()),
            failed => Err(Error::NotAll { failed, of: plugins.len() }),
        }
    }
}
