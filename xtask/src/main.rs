//! Project automation for the rsyscall workspace, run as `cargo xtask <command>`.
//!
//! One binary with subcommands (see [`USAGE`]). It finds the workspace root from the
//! location of this crate, calls cargo through `$CARGO` (the cargo that is running us), and
//! depends on nothing but `std`, so it builds even while the library crates do not.
//!
//! The benchmark program lives in its own target (`src/bench.rs`, a `harness = false`
//! bench of this package) so that it is compiled with optimisations and may depend on the
//! library, while this binary stays small.

// The benchmarks' throwaway sshd, also used by fresh-package (which needs only part of it).
#[allow(dead_code)]
mod bench_sshd;
mod build_server;
// Shared with rsyscall-server's build script, which checks the helpers it embeds.
#[path = "../../rsyscall-server/build/elf.rs"]
mod elf;
mod examples;
mod fresh_package;
#[path = "../../rsyscall-server/build/helpers.rs"]
mod helpers;
mod package;
mod suite;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// What `cargo xtask help` prints.
const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  build-server       build the static helper binaries and librsyscall.so into target/libexec
  test [ARGS...]     the whole suite: build-server, fmt, clippy, doc,
                     `cargo test --workspace --no-fail-fast [ARGS...]`, package,
                     fresh-package, then the examples
  package            package every publishable crate and build it from its packaged
                     sources (offline, in target/package-check, removed afterwards)
  fresh-package      build and run a package outside the workspace that depends on
                     crates/rsyscall, with a fresh target dir and no helper directory
  examples [NAME...] build-server, then build the examples and run each (or those named),
                     checking their output (the last step of `test`)
  bench [ARGS...]    run the benchmarks (optimised) and write docs/BENCHMARKS.md;
                     `--quick` runs fewer iterations
  help               this text
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        "build-server" => match build_server::build_server(&root) {
            Ok(dir) => {
                println!("helpers built in {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("build-server failed: {e}");
                ExitCode::FAILURE
            }
        },
        "fresh-package" => match fresh_package::run(&root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fresh-package failed: {e}");
                ExitCode::FAILURE
            }
        },
        "test" => suite::run(&root, rest),
        "examples" => examples_only(&root, rest),
        "package" => match package::package(&root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("package failed: {e}");
                ExitCode::FAILURE
            }
        },
        "bench" => bench(&root, rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("unknown command `{other}`\n\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask examples`: the helpers, then the `examples` step of the suite alone.
fn examples_only(root: &Path, names: &[String]) -> ExitCode {
    let result =
        build_server::build_server(root).and_then(|libexec| examples::run(root, &libexec, names));
    match result {
        Ok(()) => {
            println!("examples: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A `cargo` command run from `root`, through the cargo that launched us when there is one.
fn cargo(root: &Path) -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(root);
    command
}

/// `cargo xtask bench`: runs the benchmark target with optimisations (cargo's `bench`
/// profile) and has it write `docs/BENCHMARKS.md`.
fn bench(root: &Path, args: &[String]) -> ExitCode {
    let report = root.join("docs").join("BENCHMARKS.md");
    let mut command = cargo(root);
    command
        .args([
            "bench",
            "--package",
            "xtask",
            "--bench",
            "rsyscall-bench",
            "--",
        ])
        .arg("--write")
        .arg(&report)
        .args(args);
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("bench failed: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}
