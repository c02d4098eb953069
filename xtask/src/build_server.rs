//! `cargo xtask build-server`: builds the static helper binaries and `librsyscall.so` from
//! the `rsyscall-server` crate, verifies them, and installs them in `target/libexec`.
//!
//! The builds use their own target directory (`target/server-build`), so their flags
//! (static relocation model, `--cfg rsyscall_standalone`, link arguments) never invalidate
//! the ordinary builds. Each artifact is checked before it is installed: a helper binary
//! must be an ELF of type EXEC with no `PT_INTERP`, `PT_DYNAMIC` or `PT_TLS` program header
//! (static, no dynamic loader, no libc), and `librsyscall.so` must export exactly the five
//! C entry points of the original library.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::elf;

/// The package that holds the server code and the helper binaries.
const PACKAGE: &str = "rsyscall-server";

use crate::helpers::BINARIES;

/// The installed name of the shared library.
const LIBRARY: &str = "librsyscall.so";

/// The functions `librsyscall.so` exports, and nothing else: the names programs written
/// for the original C library look up with `dlsym`.
const LIBRARY_EXPORTS: &[&str] = &[
    "rsyscall_raw_syscall",
    "rsyscall_server",
    "rsyscall_persistent_server",
    "rsyscall_trampoline",
    "rsyscall_futex_helper",
];

/// The cargo profile of these builds (panic=abort, LTO; in the root `Cargo.toml`).
const PROFILE: &str = "server";

/// rustc flags for a static, non-PIE executable with our own `_start` and no libc.
use crate::helpers::STATIC_BINARY_FLAGS as BINARY_RUSTC_FLAGS;

/// rustc flags for `librsyscall.so`: the exported C names.
const LIBRARY_RUSTC_FLAGS: &[&str] = &["--cfg", "rsyscall_standalone"];

/// Environment variables that would leak the caller's compiler flags or target into these
/// builds (an instrumented or cross build cannot produce the static binaries).
const SCRUBBED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
];

/// Builds, verifies and installs the helper binaries and `librsyscall.so` of the workspace
/// at `root`; returns the directory they were installed in (`<root>/target/libexec`).
///
/// Runs `$CARGO rustc` (or `cargo rustc`) once per helper binary and once for the library,
/// with the `server` profile and the `standalone` feature, in the target directory
/// `<root>/target/server-build`. Fails with a message naming the artifact and what is wrong
/// with it if a build fails or a check does not pass; nothing unverified is installed.
pub fn build_server(root: &Path) -> Result<PathBuf, String> {
    let target_dir = root.join("target").join("server-build");
    let out_dir = target_dir.join(PROFILE);
    let libexec = root.join("target").join("libexec");
    std::fs::create_dir_all(&libexec)
        .map_err(|e| format!("cannot create {}: {e}", libexec.display()))?;

    for &name in BINARIES {
        let mut args = vec!["--bin", name];
        args.push("--");
        args.extend_from_slice(BINARY_RUSTC_FLAGS);
        cargo_rustc(root, &target_dir, &args)?;
        let built = out_dir.join(name);
        let data = read(&built)?;
        elf::check_static_executable(&data).map_err(|e| {
            format!(
                "{} is not a static, libc-free executable: {e}",
                built.display()
            )
        })?;
        install(&built, &libexec.join(name))?;
    }

    let mut args = vec!["--lib", "--crate-type", "cdylib", "--"];
    args.extend_from_slice(LIBRARY_RUSTC_FLAGS);
    cargo_rustc(root, &target_dir, &args)?;
    let built = out_dir.join(format!("lib{}.so", PACKAGE.replace('-', "_")));
    let data = read(&built)?;
    elf::check_shared_library(&data, LIBRARY_EXPORTS).map_err(|e| {
        format!(
            "{} is not the expected librsyscall.so (it must export exactly {LIBRARY_EXPORTS:?}): {e}",
            built.display()
        )
    })?;
    install(&built, &libexec.join(LIBRARY))?;

    Ok(libexec)
}

/// Runs `cargo rustc -p rsyscall-server --profile server --features standalone
/// --target-dir <target_dir> <args>` in `root`.
fn cargo_rustc(root: &Path, target_dir: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = crate::cargo(root);
    let cargo = cmd.get_program().to_owned();
    cmd.arg("rustc")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args([
            "-p",
            PACKAGE,
            "--profile",
            PROFILE,
            "--features",
            "standalone",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .args(args);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{} rustc -p {PACKAGE} --profile {PROFILE} --features standalone --target-dir {} {}` \
             failed ({status})",
            cargo.to_string_lossy(),
            target_dir.display(),
            args.join(" ")
        ))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Copies `from` to `to` through a temporary file and a rename, so that a helper binary
/// being run at that moment (which could not be overwritten: ETXTBSY) is replaced
/// atomically and never seen half-written.
fn install(from: &Path, to: &Path) -> Result<(), String> {
    let file_name = to
        .file_name()
        .ok_or_else(|| format!("{} has no file name", to.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    let tmp = to.with_file_name(tmp_name);
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), to.display()))
}
