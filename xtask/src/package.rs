//! `cargo xtask package` (also a step of `cargo xtask test`): every publishable crate of the
//! workspace is packaged and built from its packaged sources alone.
//!
//! `cargo package --workspace` verifies each `.crate` by unpacking it and building it, with
//! the workspace crates it depends on taken from the other packages just made (cargo's
//! temporary local registry), so a file missing from a package, a path dependency without a
//! version or a build script reaching outside its crate fails here rather than on
//! crates.io. It runs offline (every dependency is already in cargo's cache once the
//! workspace has been built) in its own target directory under `target/`, removed afterwards
//! because the disk of a CI machine is small.

use std::path::Path;
use std::process::Stdio;

use crate::cargo;

/// Crates never published: the test suite and this automation.
const UNPUBLISHED: [&str; 2] = ["rsyscall-tests", "xtask"];

/// Packages and verifies every publishable crate of the workspace at `root`.
pub fn package(root: &Path) -> Result<(), String> {
    forget_earlier_verifications()?;
    let target = root.join("target").join("package-check");
    let mut command = cargo(root);
    command.args(["package", "--workspace", "--offline", "--allow-dirty"]);
    for name in UNPUBLISHED {
        command.args(["--exclude", name]);
    }
    command.arg("--target-dir").arg(&target);
    println!(
        "$ cargo package --workspace --offline --allow-dirty --exclude rsyscall-tests --exclude xtask --target-dir {}",
        target.display()
    );
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo package: {e}"));
    let removed = match std::fs::remove_dir_all(&target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", target.display()))
        }
        _ => Ok(()),
    };
    match status? {
        s if s.success() => removed,
        s => Err(format!("cargo package: {s}")),
    }
}

/// Removes what earlier runs of this step unpacked in cargo's cache. Cargo unpacks the
/// packages of its temporary local registry under `$CARGO_HOME/registry/src/-HASH/`, keyed
/// by the registry's path and the crate's name and version, and reuses an unpacked copy
/// without comparing it with the new package: a second run at the same version would build
/// the first run's sources. Only those local-registry directories are touched (never
/// crates.io's), and in them only our crates (`rsyscall-*`), which only this step puts
/// there.
fn forget_earlier_verifications() -> Result<(), String> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".cargo"),
            None => return Ok(()),
        },
    };
    let Ok(registries) = std::fs::read_dir(home.join("registry").join("src")) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        // Local registries have no name: their directory is `-` and a hash.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(crates) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for unpacked in crates.flatten() {
            if unpacked
                .file_name()
                .to_string_lossy()
                .starts_with("rsyscall-")
            {
                std::fs::remove_dir_all(unpacked.path()).map_err(|e| {
                    format!(
                        "removing an earlier verification's sources {}: {e}",
                        unpacked.path().display()
                    )
                })?;
            }
        }
    }
    Ok(())
}
