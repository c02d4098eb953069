//! `cargo xtask fresh-package` (a step of `cargo xtask test`): the library as a user gets
//! it. A package is generated in a new temporary directory outside the workspace, with a
//! path dependency on `crates/rsyscall` and the program `fresh-package/main.rs`; it is
//! built with a fresh target directory inside that directory (offline, with a copy of our
//! `Cargo.lock`, so the versions are ours and nothing is downloaded) and run with
//! `RSYSCALL_LIBEXEC_DIR` unset and `TMPDIR` inside that directory. No helper directory
//! exists anywhere it could look: the stub, stdin bootstrap, persistent and ssh threads
//! must all work with the helpers built into the library, and every helper path it
//! reports must lie in the private directory it made under that `TMPDIR`.
//!
//! The ssh part runs through the same throwaway per-connection sshd as the benchmarks
//! ([`BenchSshd`]); without OpenSSH's `ssh` and `sshd` the step fails, saying so. The directory (target dir
//! included) is removed afterwards, whatever happened.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench_sshd::BenchSshd;

/// The program the package runs.
const PROGRAM: &str = include_str!("../fresh-package/main.rs");

/// The package's name (and its binary's).
const NAME: &str = "rsyscall-fresh-user";

/// How long the program may run before it is killed and the step fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Generates, builds and runs the package; see the module docs.
pub fn run(root: &Path) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("rsyscall-fresh-package-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("rm -r {}: {e}", dir.display()))?;
    }
    std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let result = build_and_run(root, &dir);
    let removed = std::fs::remove_dir_all(&dir)
        .map_err(|e| format!("removing {} (holds a target dir!): {e}", dir.display()));
    result.and(removed)
}

fn build_and_run(root: &Path, dir: &Path) -> Result<(), String> {
    let rsyscall = root.join("crates").join("rsyscall");
    let manifest = format!(
        "[package]\nname = \"{NAME}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nrsyscall = {{ path = {rsyscall:?} }}\nasync-io = \"2\"\n\n\
         # Not part of any workspace above it.\n[workspace]\n"
    );
    write(&dir.join("Cargo.toml"), &manifest)?;
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|e| format!("copying Cargo.lock: {e}"))?;
    std::fs::create_dir(dir.join("src")).map_err(|e| format!("mkdir src: {e}"))?;
    write(&dir.join("src").join("main.rs"), PROGRAM)?;
    let scratch = dir.join("scratch");
    let tmp = dir.join("tmp");
    for d in [&scratch, &tmp] {
        std::fs::create_dir(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }

    let target = dir.join("target");
    let mut build = crate::cargo(dir);
    build
        .args(["build", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RSYSCALL_LIBEXEC_DIR");
    let start = Instant::now();
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the fresh package failed ({status})"));
    }
    println!(
        "fresh package built in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    // The ssh part is part of the check: without OpenSSH the step fails, naming what is
    // missing (`.ci/run` installs it).
    let sshd = BenchSshd::shared().map_err(|e| format!("the ssh part needs an sshd: {e}"))?;
    let log_path = dir.join("output.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("creating the log: {e}"))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("duplicating the log: {e}"))?;
    let mut program = Command::new(target.join("debug").join(NAME));
    program
        .current_dir(&scratch)
        .env_remove("RSYSCALL_LIBEXEC_DIR")
        .env("TMPDIR", &tmp)
        .env("RSYSCALL_FRESH_SCRATCH", &scratch)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    program
        .env("RSYSCALL_FRESH_SSH_CONFIG", sshd.config_file())
        .env("RSYSCALL_FRESH_SSH_DESTINATION", BenchSshd::DESTINATION);
    let outcome = run_bounded(program);
    drop(sshd);
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    print!("{output}");
    outcome.map_err(|e| format!("{e}; its output:\n{output}"))?;
    check_output(&output, &tmp, root)
}

/// Checks what the program printed: every helper path lies in a private directory under
/// `tmp` (never in the repository at `root`), and every part passed.
fn check_output(output: &str, tmp: &Path, root: &Path) -> Result<(), String> {
    let mut helpers = 0;
    for line in output.lines() {
        let Some((_, path)) = line
            .strip_prefix("helper ")
            .and_then(|rest| rest.split_once(": "))
        else {
            continue;
        };
        let path = PathBuf::from(path);
        let in_private_dir = path.parent().is_some_and(|d| d.parent() == Some(tmp));
        if !in_private_dir || path.starts_with(root) {
            return Err(format!(
                "the helper {} is not in a private directory under {}",
                path.display(),
                tmp.display()
            ));
        }
        helpers += 1;
    }
    if helpers != 4 {
        return Err(format!(
            "the program reported {helpers} helper paths, not 4"
        ));
    }
    for part in [
        "ok: helpers written out",
        "ok: stub",
        "ok: stdin bootstrap",
        "ok: persistent thread",
        "ok: ssh thread",
        "all ok",
    ] {
        if !output.lines().any(|l| l.starts_with(part)) {
            return Err(format!("the program did not report `{part}`"));
        }
    }
    Ok(())
}

/// Runs `program` to its end, killing it after [`RUN_TIMEOUT`]; fails unless it exits 0.
fn run_bounded(mut program: Command) -> Result<(), String> {
    let mut child = program
        .spawn()
        .map_err(|e| format!("cannot run the fresh package's program: {e}"))?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the program failed ({status})")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the program ran longer than {}s and was killed",
                    RUN_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for the program: {e}")),
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}
