//! Builds the four static helper binaries (`rsyscall-server`, `rsyscall-stdin-bootstrap`,
//! `rsyscall-unix-stub`, `rsyscall-bootstrap`) into `$OUT_DIR/helpers`, where the crate's
//! `embedded` module includes their bytes, so that a program depending on this crate (by
//! path or from a registry) has its helpers without `cargo xtask build-server`.
//!
//! It runs the `$RUSTC` cargo gave it, twice over: once for this crate's library as an
//! rlib with the `standalone` feature (which brings the panic handler and the memory
//! routines a libc-free binary needs, and leaves out the `embedded` module, which would
//! include itself), then once per `src/bin/*.rs` against that rlib, with the flags of
//! `cargo xtask build-server` (its `server` profile: `panic=abort`, `opt-level=3`, one
//! codegen unit, fat LTO; static relocation model, `+crt-static`, no start files, no libc,
//! static, not PIE, `--cfg rsyscall_standalone`). No nested cargo, no network, no
//! toolchain beyond the one building this crate. The caller's `RUSTFLAGS` never reach
//! these builds: rustc does not read them, and they are not forwarded (an instrumented or
//! PIE-forcing flag would break a static, libc-free binary).
//!
//! Each binary is checked before it is embedded (ELF type EXEC, no `PT_INTERP`,
//! `PT_DYNAMIC` or `PT_TLS`) by the same checker `cargo xtask build-server` uses
//! (`build/elf.rs`).
//!
//! With the `standalone` feature on, this script builds nothing: that is the build of the
//! binaries themselves (or of `librsyscall.so`), which embed nothing.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

// The program-header checks are used here; the shared-library checks only by xtask.
#[allow(dead_code)]
#[path = "build/elf.rs"]
mod elf;

#[path = "build/helpers.rs"]
mod helpers;
use helpers::{BINARIES, STATIC_BINARY_FLAGS};

/// The crate's edition (inherited from the workspace in our repository, written out in
/// the packaged manifest; cargo does not tell build scripts).
const EDITION: &str = "2024";

/// The code generation flags of the `server` profile (root `Cargo.toml`), for the library
/// and the binaries alike.
const PROFILE_FLAGS: &[&str] = &[
    "-C",
    "panic=abort",
    "-C",
    "opt-level=3",
    "-C",
    "codegen-units=1",
    "-C",
    "debuginfo=0",
    // What cargo does for a profile without debuginfo: no debuginfo from core either.
    "-C",
    "strip=debuginfo",
    "-C",
    "debug-assertions=off",
    "-C",
    "overflow-checks=off",
];

/// The flags of the binaries alone: those `cargo xtask build-server` passes
/// ([`STATIC_BINARY_FLAGS`]), and fat LTO, which its cargo profile gives it.
const LTO_FLAGS: &[&str] = &["-C", "lto=fat"];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: rsyscall-server's build script: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var_os("CARGO_FEATURE_STANDALONE").is_some() {
        return Ok(());
    }
    let target = var("TARGET")?;
    let host = var("HOST")?;
    if !(target.starts_with("x86_64-") && target.contains("-linux")) {
        return Err(format!(
            "the target {target} is not supported: rsyscall runs on x86-64 Linux only (its \
             helper binaries, raw syscall routine and clone trampoline are x86-64 code for \
             the Linux syscall ABI)"
        ));
    }
    let rustc = PathBuf::from(env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc")));
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let work = out_dir.join("helpers-build");
    let helpers = out_dir.join("helpers");
    for dir in [&work, &helpers] {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let cross = (target != host).then_some(target.as_str());
    let linker = env::var_os("RUSTC_LINKER");

    let rlib = work.join("librsyscall_server.rlib");
    let mut lib = rustc_command(&rustc, cross, linker.as_deref());
    lib.args(["--crate-name", "rsyscall_server", "--crate-type", "rlib"])
        .args(["--cfg", "feature=\"standalone\""])
        .arg(manifest_dir.join("src").join("lib.rs"))
        .arg("-o")
        .arg(&rlib);
    run_rustc(lib, "the library for the helpers (an rlib)", cross)?;

    let mut extern_arg = OsString::from("rsyscall_server=");
    extern_arg.push(&rlib);
    for &name in BINARIES {
        let built = work.join(name);
        let mut bin = rustc_command(&rustc, cross, linker.as_deref());
        bin.args(["--crate-name", &format!("{}_main", name.replace('-', "_"))])
            .args(["--crate-type", "bin"])
            .args(LTO_FLAGS)
            .args(STATIC_BINARY_FLAGS)
            .arg("--extern")
            .arg(&extern_arg)
            .arg(
                manifest_dir
                    .join("src")
                    .join("bin")
                    .join(format!("{name}.rs")),
            )
            .arg("-o")
            .arg(&built);
        run_rustc(bin, &format!("the helper {name}"), cross)?;
        let data =
            std::fs::read(&built).map_err(|e| format!("cannot read {}: {e}", built.display()))?;
        elf::check_static_executable(&data).map_err(|e| {
            format!(
                "{} is not a static, libc-free executable: {e}",
                built.display()
            )
        })?;
        // Only a checked binary gets the name the crate includes.
        let to = helpers.join(name);
        std::fs::rename(&built, &to)
            .map_err(|e| format!("cannot move {} to {}: {e}", built.display(), to.display()))?;
    }
    Ok(())
}

/// `rustc --edition <EDITION> <profile flags>`, for `target` if cross-compiling, with
/// the linker cargo resolved for the target if there is one.
fn rustc_command(rustc: &Path, target: Option<&str>, linker: Option<&std::ffi::OsStr>) -> Command {
    let mut command = Command::new(rustc);
    command
        .args(["--edition", EDITION, "--color", "never"])
        .args(PROFILE_FLAGS);
    if let Some(target) = target {
        command.args(["--target", target]);
    }
    if let Some(linker) = linker {
        let mut arg = OsString::from("linker=");
        arg.push(linker);
        command.arg("-C").arg(arg);
    }
    // rustc reads none of these, but a wrapper might: keep the caller's flags out.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs one rustc; a failure names what was being built (and, for a cross build, the
/// likely cause).
fn run_rustc(mut command: Command, what: &str, cross: Option<&str>) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {}: {e}", command.get_program().display()))?;
    if status.success() {
        return Ok(());
    }
    let mut message = format!(
        "building {what} failed ({status}): `{} {}`",
        command.get_program().display(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(target) = cross {
        message.push_str(&format!(
            "; this is a cross build for {target}: its `core` must be installed (`rustup \
             target add {target}`) and a linker able to link static binaries for it configured"
        ));
    }
    Err(message)
}

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("${name}: {e} (is this run by cargo?)"))
}
