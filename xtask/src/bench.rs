//! The benchmark figures behind `cargo xtask bench`, each measured against a baseline in the
//! same run.
//!
//! This is a `harness = false` bench target of the xtask package, so cargo builds it with
//! optimisations and it may use the library as a dev-dependency. A figure times one operation
//! of ours and one baseline operation doing the same work by the most direct means; it
//! reports the median time per operation of each, their ratio (ours / baseline), and whether
//! the ratio is within the figure's target. Targets are goals: nothing here is asserted by
//! the test suite, and an unmet target does not make the run fail.
//!
//! Arguments: `--write PATH` also writes the results as markdown to PATH; `--quick` measures
//! fewer operations (a smoke run). Anything else (cargo passes `--bench`) is ignored.
//!
//! To add a figure, write a baseline and an "ours" function and append a [`Figure`] to
//! [`FIGURES`].

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rsyscall_server::proto::{RESPONSE_SIZE, Request};

/// How many operations to time.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Untimed operations run first (page faults, wakeup paths, frequency scaling).
    warmup: u32,
    /// Operations per timed repetition.
    iterations: u32,
    /// Timed repetitions; the figure is the median over them.
    repetitions: u32,
}

impl Plan {
    const FULL: Plan = Plan {
        warmup: 2_000,
        iterations: 20_000,
        repetitions: 7,
    };
    const QUICK: Plan = Plan {
        warmup: 200,
        iterations: 2_000,
        repetitions: 3,
    };
}

/// The result of timing one side of a figure: median nanoseconds per operation, or why it
/// could not be measured.
type Measured = Result<f64, String>;

/// One benchmark figure.
struct Figure {
    /// Short name, used in the table.
    name: &'static str,
    /// What "ours" measures.
    ours_description: &'static str,
    /// What the baseline measures.
    baseline_description: &'static str,
    /// The goal: ours / baseline must be at most this.
    target_ratio: f64,
    /// Times our operation; `None` while the API it needs does not exist yet.
    ours: fn(Plan) -> Option<Measured>,
    /// Times the baseline operation.
    baseline: fn(Plan) -> Measured,
}

/// Every figure, in the order they are reported.
const FIGURES: &[Figure] = &[Figure {
    name: "getpid round trip, clone child",
    ours_description: "`child.task().getpid().await` on a `ChildThread` made by \
                       `local_thread().clone(CLONE::empty())`: one request and one response \
                       through the library's `SyscallConnection` to the server loop in the child",
    baseline_description: "blocking `write` of the same 56-byte getpid request and blocking \
                           `read` of the 8-byte response on a `UnixStream` pair, served by \
                           `rsyscall_server::server` on a `std::thread`",
    target_ratio: 1.25,
    ours: ours_getpid_clone_child,
    baseline: baseline_getpid_socketpair,
}];

fn main() -> ExitCode {
    let mut plan = Plan::FULL;
    let mut write_to: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => plan = Plan::QUICK,
            "--write" => match args.next() {
                Some(path) => write_to = Some(PathBuf::from(path)),
                None => {
                    eprintln!("--write needs a path");
                    return ExitCode::FAILURE;
                }
            },
            // `cargo bench` passes `--bench`; other harness flags mean nothing here.
            _ => {}
        }
    }

    let mut rows = Vec::new();
    for figure in FIGURES {
        eprintln!("measuring: {}", figure.name);
        let baseline = (figure.baseline)(plan);
        let ours = (figure.ours)(plan);
        rows.push(Row {
            figure,
            ours,
            baseline,
        });
    }

    let environment = Environment::probe(plan);
    print!("{}", text_table(&rows));
    let mut ok = rows.iter().all(Row::measured_without_error);
    if let Some(path) = write_to {
        match std::fs::write(&path, markdown(&rows, &environment)) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("cannot write {}: {e}", path.display());
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Warms up, then times `plan.repetitions` runs of `plan.iterations` operations and returns
/// the median nanoseconds per operation. `run(n)` performs `n` operations and returns the
/// time they took (so an async side can time only the operations, not its executor setup).
fn measure(plan: Plan, mut run: impl FnMut(u32) -> Result<Duration, String>) -> Measured {
    run(plan.warmup)?;
    let mut per_op = Vec::with_capacity(plan.repetitions as usize);
    for _ in 0..plan.repetitions {
        let elapsed = run(plan.iterations)?;
        per_op.push(elapsed.as_nanos() as f64 / f64::from(plan.iterations));
    }
    per_op.sort_by(f64::total_cmp);
    per_op
        .get(per_op.len() / 2)
        .copied()
        .ok_or_else(|| "no repetitions".to_string())
}

/// Ours for "getpid round trip, clone child": the library's whole path, from
/// `Task::getpid` through the `SyscallConnection` to the server loop of a clone child.
fn ours_getpid_clone_child(plan: Plan) -> Option<Measured> {
    Some(getpid_clone_child(plan))
}

/// Clones a child of the local thread and times `getpid` in it.
fn getpid_clone_child(plan: Plan) -> Measured {
    let parent = rsyscall::local_thread();
    let child = async_io::block_on(parent.clone(rsyscall::CLONE::empty()))
        .map_err(|e| format!("clone: {e}"))?;
    let expected = async_io::block_on(child.task().getpid()).map_err(|e| format!("getpid: {e}"))?;
    measure(plan, |n| {
        async_io::block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let pid = child
                    .task()
                    .getpid()
                    .await
                    .map_err(|e| format!("getpid: {e}"))?;
                if pid != expected {
                    return Err(format!("getpid returned {pid:?}, expected {expected:?}"));
                }
            }
            Ok(start.elapsed())
        })
    })
    // Dropping `child` kills it; nothing else to clean up.
}

/// Baseline for "getpid round trip, clone child": the same server loop on a `std::thread`,
/// driven by blocking reads and writes of the wire format.
fn baseline_getpid_socketpair(plan: Plan) -> Measured {
    let (mut client, server_end) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let server = std::thread::Builder::new()
        .name("rsyscall-server".to_string())
        .spawn(move || {
            let fd = server_end.as_raw_fd();
            // Serves until the client end closes; `server_end` stays open until then.
            let ret = rsyscall_server::server(fd, fd);
            drop(server_end);
            ret
        })
        .map_err(|e| format!("spawning the server thread: {e}"))?;

    let request = Request::new(libc::SYS_getpid, [0; 6]).to_bytes();
    let expected = i64::from(std::process::id());
    let result = measure(plan, |n| {
        let mut response = [0u8; RESPONSE_SIZE];
        let start = Instant::now();
        for _ in 0..n {
            client
                .write_all(&request)
                .map_err(|e| format!("write: {e}"))?;
            client
                .read_exact(&mut response)
                .map_err(|e| format!("read: {e}"))?;
            let pid = i64::from_le_bytes(response);
            if pid != expected {
                return Err(format!("getpid returned {pid}, expected {expected}"));
            }
        }
        Ok(start.elapsed())
    });

    // EOF at a request boundary ends the server loop with 0.
    drop(client);
    let ret = server
        .join()
        .map_err(|_| "the server thread panicked".to_string())?;
    if ret != 0 {
        return Err(format!("the server loop returned {ret}"));
    }
    result
}

/// A figure with its measurements.
struct Row {
    figure: &'static Figure,
    ours: Option<Measured>,
    baseline: Measured,
}

impl Row {
    /// ours / baseline, when both were measured.
    fn ratio(&self) -> Option<f64> {
        match (&self.ours, &self.baseline) {
            (Some(Ok(ours)), Ok(baseline)) if *baseline > 0.0 => Some(ours / baseline),
            _ => None,
        }
    }

    /// The cells of the table: figure, ours, baseline, ratio, target, met?.
    fn cells(&self) -> [String; 6] {
        let ratio = self.ratio();
        [
            self.figure.name.to_string(),
            match &self.ours {
                None => "not implemented".to_string(),
                Some(m) => cell(m),
            },
            cell(&self.baseline),
            ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.2}")),
            format!("<= {:.2}", self.figure.target_ratio),
            match ratio {
                Some(r) if r <= self.figure.target_ratio => "yes".to_string(),
                Some(_) => "no".to_string(),
                None => "n/a".to_string(),
            },
        ]
    }

    /// False if a side that should have been measured failed.
    fn measured_without_error(&self) -> bool {
        self.baseline.is_ok() && !matches!(self.ours, Some(Err(_)))
    }
}

/// A measurement as a table cell.
fn cell(m: &Measured) -> String {
    match m {
        Ok(ns) => format!("{ns:.0} ns"),
        Err(e) => format!("error: {e}"),
    }
}

const HEADERS: [&str; 6] = ["figure", "ours", "baseline", "ratio", "target", "met?"];

/// The results as an aligned plain-text table.
fn text_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows.iter().map(Row::cells).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADERS);
    let rule = widths.map(|w| "-".repeat(w));
    line(&rule.each_ref().map(String::as_str));
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// Where and how the figures were measured.
struct Environment {
    date: String,
    kernel: String,
    cpu: String,
    cpus: usize,
    plan: Plan,
}

impl Environment {
    fn probe(plan: Plan) -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        Environment {
            date: today_utc(),
            kernel,
            cpu,
            cpus,
            plan,
        }
    }
}

/// The results as the markdown document `docs/BENCHMARKS.md`.
fn markdown(rows: &[Row], env: &Environment) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `cargo xtask bench`; do not edit by hand. Each figure compares an \
         operation of ours with a baseline doing the same work by the most direct means, \
         measured in the same run. The ratio is ours / baseline (lower is better). Targets \
         are goals, not tests: the test suite asserts none of them.\n"
    );
    let _ = writeln!(out, "- date: {} (UTC)", env.date);
    let _ = writeln!(out, "- kernel: {}", env.kernel);
    let _ = writeln!(out, "- CPU: {} ({} logical CPUs)", env.cpu, env.cpus);
    let _ = writeln!(
        out,
        "- method: {} warm-up operations, then {} repetitions of {} operations; each cell is \
         the median time per operation over the repetitions; optimised build (cargo's \
         `bench` profile)\n",
        env.plan.warmup, env.plan.repetitions, env.plan.iterations
    );
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
    for row in rows {
        let cells = row.cells().map(|c| c.replace('|', "\\|"));
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out, "\n## Figures");
    for row in rows {
        let figure = row.figure;
        let _ = writeln!(out, "\n### {}\n", figure.name);
        let _ = writeln!(out, "- ours: {}", figure.ours_description);
        let _ = writeln!(out, "- baseline: {}", figure.baseline_description);
        let _ = writeln!(
            out,
            "- target: ours / baseline <= {:.2}",
            figure.target_ratio
        );
        if row.ours.is_none() {
            let _ = writeln!(
                out,
                "- status: ours is not measured yet (the API it needs is not implemented)"
            );
        }
    }
    out
}

/// Today's date in UTC as `YYYY-MM-DD`.
fn today_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1st
    let mp = (5 * doy + 2) / 153; // 0..=11, March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is 1..=31 and month 1..=12, so both fit.
    (year, month as u32, day as u32)
}
