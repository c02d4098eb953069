//! Locating the static helper binaries (`rsyscall-server`, and later the stubs and
//! bootstraps) that `cargo xtask build-server` builds.

use std::path::{Path, PathBuf};

use rsyscall_handle::{Error, Result};

/// The environment variable naming the directory of the helper binaries.
pub const LIBEXEC_ENV: &str = "RSYSCALL_LIBEXEC_DIR";

/// The directory `cargo xtask build-server` fills when this crate is built from its
/// repository.
const BUILD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/libexec");

/// The directories searched for helper binaries, in order: `$RSYSCALL_LIBEXEC_DIR` if set,
/// then the directory `cargo xtask build-server` fills.
pub fn libexec_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(LIBEXEC_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from(BUILD_DIR));
    dirs
}

/// The path of the helper binary `name`.
///
/// # Errors
/// [`Error::Helper`] naming the directories searched and what to do if it is missing or
/// not executable.
pub fn helper_path(name: &'static str) -> Result<PathBuf> {
    helper_path_in(name, &libexec_dirs())
}

fn helper_path_in(name: &'static str, dirs: &[PathBuf]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for dir in dirs {
        let path = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(path);
        }
    }
    Err(Error::Helper {
        name,
        detail: format!(
            "not found (searched {}); run `cargo xtask build-server`, or set {LIBEXEC_ENV} to \
             the directory holding the helper binaries",
            dirs.iter()
                .map(|d| display(d))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_helper_names_what_to_do() {
        let dir = std::env::temp_dir().join(format!("rsyscall-no-helpers-{}", std::process::id()));
        let err =
            helper_path_in("rsyscall-server", std::slice::from_ref(&dir)).expect_err("missing");
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                Error::Helper {
                    name: "rsyscall-server",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("cargo xtask build-server"), "{msg}");
        assert!(msg.contains(LIBEXEC_ENV), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
    }

    #[test]
    fn built_helpers_are_found() {
        // `cargo xtask test` builds the helpers and points RSYSCALL_LIBEXEC_DIR at them.
        let path = helper_path("rsyscall-server").unwrap_or_else(|e| {
            panic!("{e} (this test needs the helpers: run it through `cargo xtask test`)")
        });
        assert!(path.ends_with("rsyscall-server"));
    }
}
