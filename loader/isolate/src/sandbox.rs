//! The worker's sandbox on Linux, applied to itself before any plugin code runs: no core dumps, the heap and
//! CPU time limits (rlimits), `no_new_privs`, and a Landlock domain that denies every file and TCP access not
//! granted (the library itself is readable through its descriptor only). The thread limit is a pids cgroup
//! the host puts the worker in (see `host`), since it cannot be set from inside.
#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;

use berth::isolation::{Permissions, SandboxReport};
use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};
use rustix::process::{Resource, Rlimit, setrlimit};

/// The Landlock ABI this code is written (and tested) against: filesystem rules with truncate and ioctl
/// rights, and TCP bind and connect rules.
const LANDLOCK: ABI = ABI::V5;

/// Applies `permissions` to this process (its calling thread and every thread it starts later).
pub fn apply(permissions: &Permissions, library: &OwnedFd) -> SandboxReport {
    let mut report = SandboxReport::default();
    let mut limit = |resource, value: u64, what: String| match setrlimit(
        resource,
        Rlimit { current: Some(value), maximum: Some(value.saturating_add(u64::from(resource == Resource::Cpu))) },
    ) {
        Ok(()) => report.enforced.push(what),
        Err(e) => report.missing.push(format!("{what} ({e})")),
    };
    limit(Resource::Core, 0, "no core dumps".to_owned());
    if let Some(mib) = permissions.memory_mib {
        limit(Resource::Data, mib.saturating_mul(1 << 20), format!("heap at most {mib} MiB"));
    }
    if let Some(seconds) = permissions.cpu_seconds {
        limit(Resource::Cpu, seconds, format!("CPU time at most {seconds} s"));
    }
    match landlock(permissions, library) {
        Ok(RulesetStatus::FullyEnforced) => {
            report.enforced.push(files(permissions));
            report.enforced.push(network(permissions));
            report.enforced.push("no_new_privs".to_owned());
        }
        Ok(RulesetStatus::PartiallyEnforced) => {
            report.enforced.push("no_new_privs".to_owned());
            report.missing.push(format!(
                "Landlock is only partly enforced by this kernel (needs ABI {}): {} and {} are not all in force",
                LANDLOCK as i32,
                files(permissions),
                network(permissions)
            ));
        }
        Ok(RulesetStatus::NotEnforced) => {
            report.missing.push("Landlock is not available: files and the network are not restricted".to_owned())
        }
        Err(error) => report.missing.push(format!("Landlock refused the rules: {error}")),
    }
    report
}

fn landlock(permissions: &Permissions, library: &OwnedFd) -> Result<RulesetStatus, String> {
    let error = |e: landlock::RulesetError| e.to_string();
    let mut rules = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(LANDLOCK))
        .map_err(error)?
        .handle_access(AccessNet::from_all(LANDLOCK))
        .map_err(error)?
        .create()
        .map_err(error)?
        // The library, by the descriptor the host handed over: readable and mappable, nothing else of the cache.
        .add_rule(PathBeneath::new(library, AccessFs::ReadFile | AccessFs::Execute))
        .map_err(error)?;
    for (paths, access) in
        [(&permissions.read, AccessFs::from_read(LANDLOCK)), (&permissions.write, AccessFs::from_all(LANDLOCK))]
    {
        for path in paths {
            // A granted path that does not exist grants nothing (the plugin gets ENOENT or EACCES there).
            let Ok(fd) = PathFd::new(path) else { continue };
            let access = if path.is_dir() { access } else { access & AccessFs::from_file(LANDLOCK) };
            rules = rules.add_rule(PathBeneath::new(fd, access)).map_err(error)?;
        }
    }
    for port in &permissions.connect {
        rules = rules.add_rule(NetPort::new(*port, AccessNet::ConnectTcp)).map_err(error)?;
    }
    for port in &permissions.bind {
        rules = rules.add_rule(NetPort::new(*port, AccessNet::BindTcp)).map_err(error)?;
    }
    let status = rules.restrict_self().map_err(error)?;
    Ok(status.ruleset)
}

fn files(permissions: &Permissions) -> String {
    let list = |paths: &[std::path::PathBuf]| {
        if paths.is_empty() {
            "nothing".to_owned()
        } else {
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        }
    };
    format!("files: read {}; write {}", list(&permissions.read), list(&permissions.write))
}

fn network(permissions: &Permissions) -> String {
    let list = |ports: &[u16]| {
        if ports.is_empty() {
            "none".to_owned()
        } else {
            ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    format!("TCP: connect to ports {}; bind ports {}", list(&permissions.connect), list(&permissions.bind))
}
