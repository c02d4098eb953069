//! `cargo xtask test`: the whole suite, every step run even when an earlier one fails.
//!
//! Steps, in order: build the helpers, check formatting, clippy with warnings denied,
//! rustdoc with warnings denied, every unit, integration and doc test of the workspace
//! with `RSYSCALL_LIBEXEC_DIR` pointing at the freshly built helpers, then the packaging of
//! every publishable crate, built from its packaged sources ([`crate::package`]), then a
//! package outside the workspace built and run as a user's would be (see
//! [`fresh_package`]), then every example of `crates/rsyscall`, run and its output checked
//! (see [`crate::examples`]). Each step streams its
//! output as it runs. The run ends with a summary of the steps, the `test result:` lines of
//! the test run, and a last line `N passed, N failed` totalled over those lines.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::{build_server, cargo, examples, fresh_package};

/// How one step ended.
enum Outcome {
    Passed,
    Failed(String),
}

/// A finished step, for the summary.
struct StepReport {
    name: &'static str,
    outcome: Outcome,
    elapsed: Duration,
}

/// Runs the suite from the workspace `root`; `test_args` are appended to `cargo test`.
pub fn run(root: &Path, test_args: &[String]) -> ExitCode {
    let mut reports = Vec::new();
    let total = 8;

    let mut libexec = root.join("target").join("libexec");
    reports.push(step(1, total, "build-server", || {
        let dir = build_server::build_server(root)?;
        println!("helpers built in {}", dir.display());
        libexec = dir;
        Ok(())
    }));

    reports.push(step(2, total, "fmt", || {
        let mut command = cargo(root);
        command.args(["fmt", "--all", "--", "--check"]);
        run_command(command)
    }));

    reports.push(step(3, total, "clippy", || {
        let mut command = cargo(root);
        command.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        run_command(command)
    }));

    reports.push(step(4, total, "doc", || {
        let mut command = cargo(root);
        command
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "--no-deps"]);
        run_command(command)
    }));

    let mut results = Vec::new();
    reports.push(step(5, total, "test", || {
        let mut command = cargo(root);
        command
            .env("RSYSCALL_LIBEXEC_DIR", &libexec)
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(test_args);
        run_command_collecting(command, &mut results)
    }));

    reports.push(step(6, total, "package", || crate::package::package(root)));
    reports.push(step(7, total, "fresh-package", || fresh_package::run(root)));
    reports.push(step(8, total, "examples", || {
        examples::run(root, &libexec, &[])
    }));

    finish(&reports, &results)
}

/// Runs one step, printing a header before it and its outcome after it.
fn step(
    index: usize,
    total: usize,
    name: &'static str,
    body: impl FnOnce() -> Result<(), String>,
) -> StepReport {
    println!("\n==> [{index}/{total}] {name}");
    flush_stdout();
    let start = Instant::now();
    let outcome = match body() {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    };
    let elapsed = start.elapsed();
    match &outcome {
        Outcome::Passed => println!("==> {name}: ok ({})", seconds(elapsed)),
        Outcome::Failed(e) => println!("==> {name}: FAILED ({}): {e}", seconds(elapsed)),
    }
    flush_stdout();
    StepReport {
        name,
        outcome,
        elapsed,
    }
}

/// Prints the step summary and the test totals; the last line is `N passed, N failed`.
fn finish(reports: &[StepReport], results: &[String]) -> ExitCode {
    println!("\n==> summary");
    for report in reports {
        match &report.outcome {
            Outcome::Passed => {
                println!("  {:<14} ok      {}", report.name, seconds(report.elapsed))
            }
            Outcome::Failed(e) => println!(
                "  {:<14} FAILED  {}  {e}",
                report.name,
                seconds(report.elapsed)
            ),
        }
    }
    let failed_steps = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    if failed_steps == 0 {
        println!("all {} steps passed", reports.len());
    } else {
        println!("{failed_steps} of {} steps FAILED", reports.len());
    }

    println!("\n==> test results");
    if results.is_empty() {
        println!("(no `test result:` lines: the tests did not run)");
    }
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in results {
        println!("{line}");
        let (p, f) = parse_result_line(line);
        passed += p;
        failed += f;
    }
    println!("{passed} passed, {failed} failed");
    flush_stdout();

    if failed_steps == 0 && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `command` with its output going straight to ours.
pub(crate) fn run_command(mut command: Command) -> Result<(), String> {
    print_command(&command);
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program_name(&command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
}

/// Runs `command`, copying its stdout to ours as it arrives and collecting every
/// `test result:` line into `results`. Its stderr goes straight to ours.
fn run_command_collecting(mut command: Command, results: &mut Vec<String>) -> Result<(), String> {
    print_command(&command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program_name(&command)))?;
    let copied = match child.stdout.take() {
        Some(pipe) => tee_results(pipe, &mut io::stdout(), results),
        None => Ok(()),
    };
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for {}: {e}", program_name(&command)))?;
    copied.map_err(|e| format!("copying its output: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
}

/// Copies `input` to `output` chunk by chunk (so partial lines show up at once) and keeps
/// the lines that start with `test result:`.
fn tee_results(
    mut input: impl Read,
    output: &mut impl Write,
    results: &mut Vec<String>,
) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        output.write_all(chunk)?;
        output.flush()?;
        for &byte in chunk {
            if byte == b'\n' {
                keep_result_line(&line, results);
                line.clear();
            } else {
                line.push(byte);
            }
        }
    }
    keep_result_line(&line, results);
    Ok(())
}

/// Appends `line` to `results` if it is a libtest summary line.
fn keep_result_line(line: &[u8], results: &mut Vec<String>) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.starts_with("test result:") {
        results.push(text.to_string());
    }
}

/// The passed and failed counts of a libtest line such as
/// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
fn parse_result_line(line: &str) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for part in line.split([';', '.', ':']) {
        let mut words = part.split_whitespace();
        if let (Some(count), Some(word), None) = (words.next(), words.next(), words.next())
            && let Ok(count) = count.parse::<u64>()
        {
            match word {
                "passed" => passed += count,
                "failed" => failed += count,
                _ => {}
            }
        }
    }
    (passed, failed)
}

/// Echoes a command line before running it.
fn print_command(command: &Command) {
    let mut line = String::from("$");
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let value = value.to_string_lossy();
            if value.is_empty() || value.contains(char::is_whitespace) {
                line.push_str(&format!(" {}='{value}'", key.to_string_lossy()));
            } else {
                line.push_str(&format!(" {}={value}", key.to_string_lossy()));
            }
        }
    }
    line.push(' ');
    line.push_str(&program_name(command));
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    println!("{line}");
    flush_stdout();
}

/// The file name of the program `command` runs (`cargo` rather than its full path).
fn program_name(command: &Command) -> String {
    let program = PathBuf::from(command.get_program());
    program
        .file_name()
        .map_or_else(|| program.to_string_lossy(), |name| name.to_string_lossy())
        .into_owned()
}

/// Flushes stdout so our lines interleave correctly with the children's output.
pub(crate) fn flush_stdout() {
    // A failed flush of our own terminal output is not worth failing the suite for.
    let _ = io::stdout().flush();
}

/// `1.2s`.
fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summary_lines() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; \
                 0 filtered out; finished in 0.31s"
            ),
            (12, 0)
        );
        assert_eq!(
            parse_result_line(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; \
                 0 filtered out; finished in 10.00s"
            ),
            (3, 2)
        );
        assert_eq!(parse_result_line("running 3 tests"), (0, 0));
    }

    #[test]
    fn tee_keeps_only_result_lines_including_an_unterminated_last_one() {
        let input = b"running 1 test\ntest a ... ok\n\ntest result: ok. 1 passed; 0 failed\n   \
                      test result: ok. 0 passed; 0 failed";
        let mut output = Vec::new();
        let mut results = Vec::new();
        tee_results(&input[..], &mut output, &mut results).expect("in-memory copy cannot fail");
        assert_eq!(output, input);
        assert_eq!(
            results,
            [
                "test result: ok. 1 passed; 0 failed",
                "test result: ok. 0 passed; 0 failed"
            ]
        );
    }
}
