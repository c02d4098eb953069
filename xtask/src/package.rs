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
