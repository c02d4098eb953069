//! The benchmark figures behind `cargo xtask bench`, each measured against a baseline in the
//! same run.
//!
//! This is a `harness = false` bench target of the xtask package, so cargo builds it with
//! optimisations and it may use the library as a dev-dependency. A figure times one operation
//! of ours and one baseline operation doing the same work by the most direct means; it
//! reports the median time per operation of each, their ratio (ours / baseline), and whether
//! the figure's target is met: either a bound on the ratio, or a bound on the difference in
//! nanoseconds (for operations so cheap that a ratio says little). Targets are goals: nothing
//! here is asserted by the test suite, and an unmet target does not make the run fail.
//!
//! Both sides are set up first, then their timed repetitions alternate (baseline, ours,
//! ours, baseline, ...), so that a load that comes and goes on a noisy machine weighs on both
//! sides alike.
//!
//! Where a target is missed, the run counts the syscalls one operation of each side makes,
//! by re-running this program under `strace -f -c` (when strace is installed) in the
//! hidden mode `--count-syscalls KEY ours|baseline N`, and reports them with the figures.
//!
//! Arguments: `--write PATH` also writes the results as markdown to PATH; `--quick` measures
//! fewer operations (a smoke run); `--only KEY` (repeatable) measures only the figures with
//! these keys (see [`FIGURES`]), for work on one of them. Anything else (cargo passes
//! `--bench`) is ignored.
//!
//! A figure may also have notes: lines measured or stated after it runs (the memory a
//! figure's parent holds, the context switches of one spawn), printed and written with it.
//!
//! To add a figure, write a baseline and an "ours" function and append a [`Figure`] to
//! [`FIGURES`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rsyscall::{AsyncChildProcess, CLONE, Thread, local_thread};
use rsyscall_server::proto::{RESPONSE_SIZE, Request};

mod bench_spawn;
mod bench_sshd;
use bench_sshd::BenchSshd;

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

    /// The plan for a figure whose operations cost `cost`.
    fn for_cost(self, cost: Cost) -> Plan {
        match cost {
            Cost::Cheap => Plan {
                warmup: self.warmup.saturating_mul(10),
                iterations: self.iterations.saturating_mul(10),
                repetitions: self.repetitions,
            },
            Cost::RoundTrip => self,
            Cost::Process => self.per(100),
            Cost::Connection => self.per(10),
            Cost::SshSession => self.per(2_000),
            Cost::BigFork => self.per(1_000),
        }
    }

    /// The plan in units of `k` operations (a batch, or an operation `k` times dearer),
    /// keeping at least one timed unit per repetition.
    fn per(self, k: u32) -> Plan {
        let k = k.max(1);
        Plan {
            warmup: self.warmup / k,
            iterations: (self.iterations / k).max(1),
            repetitions: self.repetitions,
        }
    }
}

/// How dear one operation of a figure is, which scales how many are timed.
#[derive(Clone, Copy, Debug)]
enum Cost {
    /// Tens of nanoseconds: ten times the plan's operations.
    Cheap,
    /// Microseconds (a round trip to another process): the plan as it is.
    RoundTrip,
    /// A process created and reaped: a hundredth of the plan's operations.
    Process,
    /// A connection made (a few round trips and fds): a tenth of the plan's operations.
    Connection,
    /// An ssh session made (a key exchange, processes on both ends): a two-thousandth of
    /// the plan's operations.
    SshSession,
    /// A process forked from a parent of gigabytes (tens of milliseconds): a thousandth of
    /// the plan's operations.
    BigFork,
}

/// The result of timing one side of a figure: median nanoseconds per operation, or why it
/// could not be measured.
type Measured = Result<f64, String>;

/// Our operation's phases, each with its median nanoseconds, or why they could not be timed.
type Phases = Result<Vec<(&'static str, f64)>, String>;

/// Performs `n` units of one side's operation and returns the time they took (so an
/// async side can time only the operations, not its executor setup). Owns whatever the side
/// set up (a child, a server thread); dropping it cleans up.
type Runner = Box<dyn FnMut(u32) -> Result<Duration, String>>;

/// Sets up one side of a figure and returns its runner.
type Setup = fn() -> Result<Runner, String>;

/// What a figure must achieve.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// ours / baseline must be at most this.
    Ratio(f64),
    /// ours - baseline must be at most this many nanoseconds per operation.
    OverheadNs(f64),
}

impl Target {
    /// Whether `ours` and `baseline` (ns per operation) meet the target.
    fn met(self, ours: f64, baseline: f64) -> bool {
        match self {
            Target::Ratio(max) => baseline > 0.0 && ours / baseline <= max,
            Target::OverheadNs(max) => ours - baseline <= max,
        }
    }

    /// The target as a table cell.
    fn cell(self) -> String {
        match self {
            Target::Ratio(max) => format!("<= {max:.2}"),
            Target::OverheadNs(max) => format!("+<= {max:.0} ns"),
        }
    }

    /// The target as a sentence for the markdown.
    fn sentence(self) -> String {
        match self {
            Target::Ratio(max) => format!("ours / baseline <= {max:.2}"),
            Target::OverheadNs(max) => {
                format!("ours - baseline <= {max:.0} ns per operation")
            }
        }
    }
}

/// Which side of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Ours,
    Baseline,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Ours => "ours",
            Which::Baseline => "baseline",
        }
    }

    fn parse(s: &str) -> Option<Which> {
        match s {
            "ours" => Some(Which::Ours),
            "baseline" => Some(Which::Baseline),
            _ => None,
        }
    }
}

/// One benchmark figure.
struct Figure {
    /// Identifier for `--count-syscalls`.
    key: &'static str,
    /// Short name, used in the table.
    name: &'static str,
    /// What "ours" measures.
    ours_description: &'static str,
    /// What the baseline measures.
    baseline_description: &'static str,
    /// The goal.
    target: Target,
    /// How dear one operation is.
    cost: Cost,
    /// Operations per unit a side's runner performs (a batch of concurrent requests, or 1).
    batch: u32,
    /// Sets up our side; `None` while the API it needs does not exist yet.
    ours: Option<Setup>,
    /// Sets up the baseline side.
    baseline: Setup,
    /// Where the target is missed (or always, with `explain`): times the phases of our
    /// operation separately (median nanoseconds per phase), to show which dominates.
    phases: Option<fn(Plan) -> Phases>,
    /// Whether the phases are timed even when the target is met (where what dominates is
    /// worth reporting anyway).
    explain: bool,
    /// Whether a missed target has the syscalls of one operation counted under strace
    /// (false where a unit is so large that a run under strace would take minutes, and
    /// where both sides make the same syscalls anyway).
    count_syscalls: bool,
    /// Measures or states what the figure's table row cannot show (run after the figure,
    /// whether or not its target is met): lines printed with it.
    notes: Option<fn(Plan) -> Notes>,
}

/// The lines of a figure's notes, or why they could not be made.
type Notes = Result<Vec<String>, String>;

/// The number of concurrent requests in the "64 concurrent getpid" figure.
const CONCURRENT: usize = 64;

/// Children in the "many children" figure.
const MANY_CHILDREN: usize = 1000;
/// Children in its baseline.
const FEW_CHILDREN: usize = 100;
/// Concurrent getpid requests each child gets per round of that figure.
const PIPELINED: usize = 100;

/// Every figure, in the order they are reported.
const FIGURES: &[Figure] = &[
    Figure {
        key: "getpid-child",
        name: "getpid round trip, clone child",
        ours_description: "`child.task().getpid().await` on a `ChildThread` made by \
                           `local_thread().clone(CLONE::empty())`: one request and one \
                           response through the library's `SyscallConnection` to the server \
                           loop in the child",
        baseline_description: "blocking `write` of the same 56-byte getpid request and \
                               blocking `read` of the 8-byte response on a `UnixStream` \
                               pair, served by `rsyscall_server::server` on a `std::thread`",
        target: Target::Ratio(1.25),
        cost: Cost::RoundTrip,
        batch: 1,
        ours: Some(ours_getpid_clone_child),
        baseline: baseline_getpid_socketpair,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: None,
    },
    Figure {
        key: "spawn",
        name: "spawn /bin/true",
        ours_description: "`local_thread().clone(CLONE::empty())`, then \
                           `child.exec(Command::new(\"/bin/true\", \"true\"))` and `check()` \
                           of the returned `AsyncChildProcess`",
        baseline_description: "`std::process::Command::new(\"/bin/true\").status()`",
        target: Target::Ratio(1.1),
        cost: Cost::Process,
        batch: 1,
        ours: Some(ours_spawn),
        baseline: baseline_spawn,
        phases: Some(spawn_phases),
        explain: false,
        count_syscalls: true,
        notes: Some(bench_spawn::spawn_wakeup_notes),
    },
    Figure {
        key: "getpid-concurrent",
        name: "64 concurrent getpid, clone child (per syscall)",
        ours_description: "64 `child.task().getpid()` futures on one `ChildThread`, polled \
                           together until all are done; the time per syscall",
        baseline_description: "one blocking `write` of 64 getpid requests, then one blocking \
                               `read` of the 64 responses, on a `UnixStream` pair served by \
                               `rsyscall_server::server` on a `std::thread`; the time per \
                               syscall",
        target: Target::Ratio(1.3),
        cost: Cost::RoundTrip,
        batch: CONCURRENT as u32,
        ours: Some(ours_getpid_concurrent),
        baseline: baseline_getpid_pipelined,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: None,
    },
    Figure {
        key: "getpid-local",
        name: "local getpid through the Task API",
        ours_description: "`local_thread().task().getpid().await`, awaited in a loop inside \
                           one `async_io::block_on`",
        baseline_description: "the raw syscall instruction \
                               (`rsyscall_server::raw_syscall(.., SYS_getpid)`)",
        target: Target::OverheadNs(100.0),
        cost: Cost::Cheap,
        batch: 1,
        ours: Some(ours_getpid_local),
        baseline: baseline_getpid_raw,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: None,
    },
    Figure {
        key: "getpid-many-children",
        name: "1000 children x 100 pipelined getpid (per syscall)",
        ours_description: "1000 `ChildThread`s made by `local_thread().clone(CLONE::empty())`, \
                           all alive at once; one round is 100 concurrent \
                           `child.task().getpid()` futures on every child, all children \
                           polled together (each only when woken); the time per syscall",
        baseline_description: "the same rounds with 100 children (ten rounds for each round \
                               of ours, so both sides make as many syscalls per unit): how \
                               the cost of a syscall grows with the number of live children \
                               and what they hold (stacks, connections, allocations)",
        target: Target::Ratio(1.5),
        cost: Cost::RoundTrip,
        batch: (MANY_CHILDREN * PIPELINED) as u32,
        ours: Some(ours_getpid_many_children),
        baseline: baseline_getpid_few_children,
        phases: None,
        explain: false,
        count_syscalls: false,
        notes: None,
    },
    Figure {
        key: "persistent-reconnect",
        name: "persistent reconnect + getpid",
        ours_description: "`PersistentThread::reconnect(&local_thread())` on a thread made by \
                           `local_thread().clone_persistent(path)`, then one \
                           `task().getpid()` through the new connection: shutting the old \
                           connection down, `connect` to the listening socket, the handshake \
                           passing a new socketpair's end with `SCM_RIGHTS`, the new \
                           `SyscallConnection` (registered with the reactor, its hangup \
                           watched through a pidfd) and one round trip",
        baseline_description: "the same work by blocking std calls against a \
                               `std::thread` that accepts on a unix listening socket, \
                               receives one fd with `SCM_RIGHTS`, answers its number and \
                               serves `rsyscall_server::server` on it: close the old socket, \
                               `socketpair`, `connect`, send the count and the fd, read the \
                               number, one 56/8-byte getpid round trip. Chosen over a fresh \
                               clone child + getpid because it makes the same connection the \
                               same way, so the ratio is the client library's overhead, not \
                               the cost of a new process",
        target: Target::Ratio(2.0),
        cost: Cost::Connection,
        batch: 1,
        ours: Some(ours_persistent_reconnect),
        baseline: baseline_reconnect_socket,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: None,
    },
    Figure {
        key: "stdin-bootstrap",
        name: "stdin bootstrap through env",
        ours_description: "`stdin_bootstrap(&local_thread(), env)` (`env` found on PATH: \
                           clone, exec of `env rsyscall-stdin-bootstrap`, the describe \
                           handshake, `Thread::from_bootstrap` reading its namespaces, its \
                           stderr passed over), then `thread.exit(0)` and waiting for the \
                           launcher",
        baseline_description: "`std::process::Command::new(env).arg(\"/bin/true\").status()`: \
                               the same launcher running a program, waited for",
        target: Target::Ratio(1.25),
        cost: Cost::Process,
        batch: 1,
        ours: Some(ours_stdin_bootstrap),
        baseline: baseline_env_true,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: None,
    },
    Figure {
        key: "stub-accept",
        name: "unix stub: run a mocked program, accept it, exit it",
        ours_description: "a `StubServer::make(&local_thread(), dir, \"mock\")` made once; per \
                           operation: `std::process::Command::new(dir/mock).spawn()` (the \
                           `#!/bin/sh` wrapper execs `rsyscall-unix-stub`, which connects to \
                           the server), `server.accept()` (peer uid check, the four fds sent, \
                           the describe with argv, environment and signal mask read, \
                           `Thread::from_bootstrap`), `thread.exit(0)`, and waiting for the \
                           launched program",
        baseline_description: "the same launch of a `#!/bin/sh` wrapper in the same directory \
                               that execs `/bin/true` with its arguments, waited for: what \
                               running the mocked program costs when nothing answers it",
        target: Target::Ratio(1.5),
        cost: Cost::Process,
        batch: 1,
        ours: Some(ours_stub_accept),
        baseline: baseline_sh_wrapper_true,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: None,
    },
    Figure {
        key: "ssh-connect",
        name: "ssh: connect to a ready remote thread",
        ours_description: "`SshHost::new(host).config_file(cfg).connect(&local_thread())` \
                           until it returns the remote `Thread` (one ssh session: the \
                           remote script writes the bootstrap binary sent on ssh's stdin, \
                           probes it, runs it; two connections through the unix-socket \
                           forward; the describe; `Thread::from_bootstrap`'s path; the \
                           binary removed); timed up to the ready thread, then, untimed, \
                           `thread.exit(0)` and ssh waited for. The host is a throwaway \
                           per-connection sshd: `ProxyCommand sshd -i` with keys made by \
                           `ssh-keygen` in a temporary directory, so every connection \
                           starts its own sshd",
        baseline_description: "`ssh -F cfg host true` by `std::process::Command::status`, the \
                               whole command: the same client, config, sshd and key \
                               exchange, running the cheapest remote command",
        target: Target::Ratio(1.5),
        cost: Cost::SshSession,
        batch: 1,
        ours: Some(ours_ssh_connect),
        baseline: baseline_ssh_true,
        phases: Some(ssh_connect_phases),
        explain: true,
        count_syscalls: false,
        notes: None,
    },
    Figure {
        key: "ssh-getpid",
        name: "ssh: getpid round trip on a remote thread",
        ours_description: "`thread.task().getpid().await` on the `Thread` made by \
                           `SshHost::connect` (same sshd as above; one ssh session both \
                           sides use): one 56-byte request and \
                           one 8-byte response through the library's `SyscallConnection`, \
                           a local unix socket connected to ssh's `-L` forward, the ssh \
                           channel, and sshd's connection to the bootstrap's listening \
                           socket on the remote side",
        baseline_description: "the raw protocol over the same forward of the same ssh \
                               session: `thread.open_channels(1)` on the same thread (a \
                               second local connection to its `-L` forward, accepted on the \
                               remote side), whose remote end is fd 0 of the standalone \
                               `rsyscall-server` exec'd in a clone of that thread; a \
                               blocking `write` of the 56-byte getpid request and a \
                               blocking `read` of the 8-byte response: the same bytes on \
                               the same path and the same server code, without the library",
        target: Target::Ratio(1.2),
        cost: Cost::Connection,
        batch: 1,
        ours: Some(ours_ssh_getpid),
        baseline: baseline_ssh_raw_getpid,
        phases: None,
        explain: false,
        count_syscalls: false,
        notes: None,
    },
    Figure {
        key: "spawn-setup",
        name: "spawn with setup: namespaces, dup2, chdir",
        ours_description: "`local_thread().clone_with(CLONE::NEWUSER | CLONE::NEWNS | \
                           CLONE::NEWPID, CloneOptions::new()\
                           .automatically_write_user_mappings(false))` (the child itself is \
                           made in the three new namespaces: it is pid 1 of the new pid \
                           namespace; no id mappings are written, as the baseline writes \
                           none), then in the child `dup2` of a pipe's read end onto stdin \
                           and of another pipe's write end onto stdout and stderr (the pipes \
                           made once, before the timing), `chdir` to the temporary \
                           directory, `child.exec(Command::new(\"/bin/true\", \"true\"))` \
                           and `check()`",
        baseline_description: "`std::process::Command::new(\"/bin/true\")` with an `unsafe \
                               pre_exec` calling `unshare(CLONE_NEWUSER | CLONE_NEWNS | \
                               CLONE_NEWPID)`, the same three `dup2`s from two pipes made once \
                               and `chdir` to the same directory, then `status()`: a \
                               `pre_exec` makes std fork. `unshare` cannot put the calling \
                               process in a new pid namespace, so the exec'd `/bin/true` stays \
                               in ours (only children it made would go to the new one): the \
                               kernel makes the same three namespaces on both sides, but ours \
                               also makes and tears down a pid namespace with a process in it",
        target: Target::Ratio(0.8),
        cost: Cost::Process,
        batch: 1,
        ours: Some(bench_spawn::ours_spawn_setup),
        baseline: bench_spawn::baseline_spawn_setup,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: Some(bench_spawn::setup_notes),
    },
    Figure {
        key: "spawn-big-parent",
        name: "spawn from a big parent vs fork",
        ours_description: "the \"spawn /bin/true\" operation (`clone(CLONE::empty())`, \
                           `exec` of `/bin/true`, `check()`) while this process has up to \
                           4 GiB of touched memory (the size is in the note): the child \
                           shares our address space, so no page table is copied",
        baseline_description: "`std::process::Command::new(\"/bin/true\")` with an `unsafe \
                               pre_exec(|| Ok(()))` (which makes std fork, copying the page \
                               tables of the whole parent), `status()`, with the same memory \
                               mapped. The target, ours at least 20 times faster, is written \
                               as ours / baseline <= 0.05",
        target: Target::Ratio(0.05),
        cost: Cost::BigFork,
        batch: 1,
        ours: Some(bench_spawn::ours_spawn_big),
        baseline: bench_spawn::baseline_spawn_big_fork,
        phases: None,
        explain: false,
        count_syscalls: false,
        notes: Some(bench_spawn::big_parent_notes),
    },
    Figure {
        key: "spawn-big-parent-vfork",
        name: "spawn from a big parent vs posix_spawn",
        ours_description: "as in \"spawn from a big parent vs fork\": clone, exec of \
                           `/bin/true` and `check()` with up to 4 GiB of touched memory",
        baseline_description: "plain `std::process::Command::new(\"/bin/true\").status()` \
                               (std's posix_spawn, a `CLONE_VM | CLONE_VFORK` child that \
                               copies no page table) with the same memory mapped",
        target: Target::Ratio(1.1),
        cost: Cost::Process,
        batch: 1,
        ours: Some(bench_spawn::ours_spawn_big),
        baseline: bench_spawn::baseline_spawn_big_vfork,
        phases: None,
        explain: false,
        count_syscalls: false,
        notes: Some(bench_spawn::big_parent_notes),
    },
    Figure {
        key: "spawn-many",
        name: "64 spawns in flight (per spawn)",
        ours_description: "64 \"spawn /bin/true\" futures (clone, exec, `check()`) made \
                           together and polled together by one task until all are done; \
                           the time per spawn",
        baseline_description: "as many `std::thread`s as `available_parallelism()` (the \
                               number of cores) calling `Command::new(\"/bin/true\")\
                               .status()` until 64 are done; the time per spawn. A \
                               throughput at least the baseline's is a time per spawn at \
                               most the baseline's: ours / baseline <= 1.00",
        target: Target::Ratio(1.0),
        cost: Cost::Process,
        batch: bench_spawn::IN_FLIGHT,
        ours: Some(bench_spawn::ours_spawn_many),
        baseline: bench_spawn::baseline_spawn_many,
        phases: None,
        explain: false,
        count_syscalls: false,
        notes: None,
    },
    Figure {
        key: "inband-memory",
        name: "1 MiB written and read back, other address space",
        ours_description: "on a thread made by `stdin_bootstrap(&local_thread(), env)` (its \
                           own address space, reached only through its connection), an \
                           allocation of 1 MiB made once by `malloc_bytes`; per operation \
                           `Allocation::write(0, data)` of 1 MiB then `Allocation::read(0, \
                           1 MiB)`, compared with what was written: the library's in-band \
                           memory transport both ways",
        baseline_description: "raw socketpair bandwidth: a blocking `write_all` of the same \
                               1 MiB into a `UnixStream` pair whose other end a \
                               `std::thread` reads whole and writes back, then a blocking \
                               `read_exact` of the 1 MiB, compared. The target, at least \
                               half the baseline's bandwidth, is ours / baseline <= 2.00",
        target: Target::Ratio(2.0),
        cost: Cost::Process,
        batch: 1,
        ours: Some(bench_spawn::ours_inband_memory),
        baseline: bench_spawn::baseline_socketpair_bandwidth,
        phases: None,
        explain: false,
        count_syscalls: true,
        notes: None,
    },
];

fn main() -> ExitCode {
    let mut plan = Plan::FULL;
    let mut write_to: Option<PathBuf> = None;
    let mut only: Vec<String> = Vec::new();
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
            "--only" => match args.next() {
                Some(key) if FIGURES.iter().any(|f| f.key == key) => only.push(key),
                Some(key) => {
                    eprintln!("--only: no figure {key:?}");
                    return ExitCode::FAILURE;
                }
                None => {
                    eprintln!("--only needs a figure key");
                    return ExitCode::FAILURE;
                }
            },
            "--count-syscalls" => {
                let rest: Vec<String> = args.collect();
                return count_mode(&rest);
            }
            // `cargo bench` passes `--bench`; other harness flags mean nothing here.
            _ => {}
        }
    }

    let mut rows = Vec::new();
    for figure in FIGURES {
        if !only.is_empty() && !only.iter().any(|key| key == figure.key) {
            continue;
        }
        eprintln!("measuring: {}", figure.name);
        let (ours, baseline) = measure_figure(figure, plan.for_cost(figure.cost));
        rows.push(Row {
            figure,
            ours,
            baseline,
            syscalls: None,
            phases: None,
            notes: None,
        });
    }
    for row in &mut rows {
        let missed = row.met() == Some(false);
        if missed && row.figure.count_syscalls {
            eprintln!("counting syscalls: {}", row.figure.name);
            row.syscalls = Some(count_syscalls(row.figure));
        }
        if ((missed && row.figure.count_syscalls) || row.figure.explain)
            && let Some(phases) = row.figure.phases
        {
            eprintln!("timing phases: {}", row.figure.name);
            row.phases = Some(phases(plan.for_cost(row.figure.cost)));
        }
        if let Some(notes) = row.figure.notes {
            eprintln!("notes: {}", row.figure.name);
            row.notes = Some(notes(plan.for_cost(row.figure.cost)));
        }
    }

    let environment = Environment::probe(plan);
    print!("{}", text_table(&rows));
    for row in &rows {
        if let Some(phases) = &row.phases {
            print!("\n{}", text_phases(row.figure, phases));
        }
        if let Some(counts) = &row.syscalls {
            print!("\n{}", text_syscalls(row.figure, counts));
        }
        if let Some(notes) = &row.notes {
            print!("\nnotes, {}:\n", row.figure.name);
            match notes {
                Ok(lines) => lines.iter().for_each(|line| println!("  {line}")),
                Err(e) => println!("  not made: {e}"),
            }
        }
    }
    let mut ok = rows.iter().all(Row::measured_without_error);
    if !only.is_empty() && write_to.is_some() {
        // A subset would replace the whole document with a few figures.
        println!("--only: docs/BENCHMARKS.md left as it was");
        write_to = None;
    }
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

/// Sets up both sides of `figure`, warms them up, then alternates their timed repetitions
/// and returns the median nanoseconds per operation of ours (`None` if not implemented) and
/// of the baseline.
fn measure_figure(figure: &Figure, plan: Plan) -> (Option<Measured>, Measured) {
    let plan = plan.per(figure.batch);
    let per_op = |ns: f64| ns / f64::from(figure.batch.max(1));
    let mut baseline = Side::start(figure.baseline);
    let mut ours = figure.ours.map(Side::start);
    baseline.run(plan.warmup);
    if let Some(ours) = &mut ours {
        ours.run(plan.warmup);
    }
    for rep in 0..plan.repetitions {
        let order = if rep % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ours in order {
            let side = if is_ours {
                ours.as_mut()
            } else {
                Some(&mut baseline)
            };
            if let Some(side) = side {
                side.time(plan.iterations);
            }
        }
    }
    (
        ours.map(|o| o.median().map(per_op)),
        baseline.median().map(per_op),
    )
}

/// One side of a figure while it is measured: its runner, the time per unit of each
/// repetition, or the first error.
struct Side {
    runner: Result<Runner, String>,
    per_unit: Vec<f64>,
}

impl Side {
    fn start(setup: Setup) -> Side {
        Side {
            runner: setup(),
            per_unit: Vec::new(),
        }
    }

    /// Runs `n` units untimed; an error ends the side.
    fn run(&mut self, n: u32) -> Option<Duration> {
        let runner = self.runner.as_mut().ok()?;
        match runner(n) {
            Ok(elapsed) => Some(elapsed),
            Err(e) => {
                self.runner = Err(e);
                None
            }
        }
    }

    /// Runs and records one timed repetition of `n` units.
    fn time(&mut self, n: u32) {
        if let Some(elapsed) = self.run(n) {
            self.per_unit
                .push(elapsed.as_nanos() as f64 / f64::from(n.max(1)));
        }
    }

    /// The median time per unit, or the side's error.
    fn median(mut self) -> Measured {
        if let Err(e) = &self.runner {
            return Err(e.clone());
        }
        self.per_unit.sort_by(f64::total_cmp);
        self.per_unit
            .get(self.per_unit.len() / 2)
            .copied()
            .ok_or_else(|| "no repetitions".to_string())
    }
}

/// Blocks on `future` with async-io's executor (the one the library's own tests use).
fn block_on<T>(future: impl Future<Output = T>) -> T {
    async_io::block_on(future)
}

/// Ours for "getpid round trip, clone child": the library's whole path, from
/// `Task::getpid` through the `SyscallConnection` to the server loop of a clone child.
fn ours_getpid_clone_child() -> Result<Runner, String> {
    let child =
        block_on(local_thread().clone(CLONE::empty())).map_err(|e| format!("clone: {e}"))?;
    let expected = block_on(child.task().getpid()).map_err(|e| format!("getpid: {e}"))?;
    // Dropping the runner drops `child`, which kills it.
    Ok(Box::new(move |n| {
        block_on(async {
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
    }))
}

/// The client end of a `UnixStream` pair whose other end is served by
/// `rsyscall_server::server` on a `std::thread`. Dropping it closes the client end, which
/// ends the server loop, and joins the thread.
struct ServedSocket {
    client: Option<UnixStream>,
    server: Option<std::thread::JoinHandle<i64>>,
}

impl ServedSocket {
    fn new() -> Result<ServedSocket, String> {
        let (client, server_end) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
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
        Ok(ServedSocket {
            client: Some(client),
            server: Some(server),
        })
    }

    fn client(&mut self) -> Result<&mut UnixStream, String> {
        self.client
            .as_mut()
            .ok_or_else(|| "the client end is closed".to_string())
    }
}

impl Drop for ServedSocket {
    fn drop(&mut self) {
        // EOF at a request boundary ends the server loop with 0.
        drop(self.client.take());
        match self.server.take().map(std::thread::JoinHandle::join) {
            Some(Ok(0)) | None => {}
            Some(Ok(ret)) => eprintln!("warning: the baseline's server loop returned {ret}"),
            Some(Err(_)) => eprintln!("warning: the baseline's server thread panicked"),
        }
    }
}

/// Baseline for "getpid round trip, clone child": the same server loop on a `std::thread`,
/// driven by blocking reads and writes of the wire format.
fn baseline_getpid_socketpair() -> Result<Runner, String> {
    let mut socket = ServedSocket::new()?;
    let request = Request::new(libc::SYS_getpid, [0; 6]).to_bytes();
    let expected = i64::from(std::process::id());
    Ok(Box::new(move |n| {
        let client = socket.client()?;
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
    }))
}

/// Ours for "spawn /bin/true": clone, exec and wait through the library.
fn ours_spawn() -> Result<Runner, String> {
    let parent = local_thread();
    Ok(Box::new(move |n| {
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                spawn_true(&parent).await?;
            }
            Ok(start.elapsed())
        })
    }))
}

/// One spawn of `/bin/true` in a clone child of `parent`, waited for.
async fn spawn_true(parent: &Thread) -> Result<(), String> {
    let child = parent
        .clone(CLONE::empty())
        .await
        .map_err(|e| format!("clone: {e}"))?;
    let process = child
        .exec(rsyscall::Command::new("/bin/true", "true"))
        .await
        .map_err(|e| format!("exec /bin/true: {e}"))?;
    process.check().await.map_err(|e| format!("/bin/true: {e}"))
}

/// The phases of ours for "spawn /bin/true", timed separately: `clone` (until the child's
/// server answers), `exec` (until the child's server socket closes on exec) and `wait`
/// (until the pidfd reports the exit of `/bin/true` and it is reaped).
fn spawn_phases(plan: Plan) -> Phases {
    const NAMES: [&str; 3] = ["clone", "exec", "wait"];
    let parent = local_thread();
    let mut samples: [Vec<f64>; 3] = Default::default();
    block_on(async {
        for i in 0..plan.warmup + plan.iterations * plan.repetitions {
            let t0 = Instant::now();
            let child = parent
                .clone(CLONE::empty())
                .await
                .map_err(|e| format!("clone: {e}"))?;
            let t1 = Instant::now();
            let process = child
                .exec(rsyscall::Command::new("/bin/true", "true"))
                .await
                .map_err(|e| format!("exec /bin/true: {e}"))?;
            let t2 = Instant::now();
            process
                .check()
                .await
                .map_err(|e| format!("/bin/true: {e}"))?;
            let t3 = Instant::now();
            if i >= plan.warmup {
                for (sample, d) in samples.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                    sample.push(d.as_nanos() as f64);
                }
            }
        }
        Ok::<(), String>(())
    })?;
    Ok(NAMES
        .into_iter()
        .zip(samples.iter_mut())
        .map(|(name, sample)| {
            sample.sort_by(f64::total_cmp);
            (
                name,
                sample.get(sample.len() / 2).copied().unwrap_or(f64::NAN),
            )
        })
        .collect())
}

/// Baseline for "spawn /bin/true": the standard library's process spawning.
fn baseline_spawn() -> Result<Runner, String> {
    Ok(Box::new(|n| {
        let start = Instant::now();
        for _ in 0..n {
            let status = std::process::Command::new("/bin/true")
                .status()
                .map_err(|e| format!("spawning /bin/true: {e}"))?;
            if !status.success() {
                return Err(format!("/bin/true: {status}"));
            }
        }
        Ok(start.elapsed())
    }))
}

/// Ours for "64 concurrent getpid": each unit is a batch of [`CONCURRENT`] getpid requests
/// on one clone child's connection, polled together.
fn ours_getpid_concurrent() -> Result<Runner, String> {
    let child =
        block_on(local_thread().clone(CLONE::empty())).map_err(|e| format!("clone: {e}"))?;
    let expected = block_on(child.task().getpid()).map_err(|e| format!("getpid: {e}"))?;
    Ok(Box::new(move |n| {
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let futures: Vec<_> = (0..CONCURRENT).map(|_| child.task().getpid()).collect();
                for pid in join_all(futures).await {
                    let pid = pid.map_err(|e| format!("getpid: {e}"))?;
                    if pid != expected {
                        return Err(format!("getpid returned {pid:?}, expected {expected:?}"));
                    }
                }
            }
            Ok(start.elapsed())
        })
    }))
}

/// Polls every future of `futures` until all are done, and returns their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Baseline for "64 concurrent getpid": the same server loop on a `std::thread`; each unit
/// sends [`CONCURRENT`] requests with one blocking write and reads the responses with one
/// blocking read.
fn baseline_getpid_pipelined() -> Result<Runner, String> {
    let mut socket = ServedSocket::new()?;
    let requests = Request::new(libc::SYS_getpid, [0; 6])
        .to_bytes()
        .repeat(CONCURRENT);
    let mut responses = vec![0u8; RESPONSE_SIZE * CONCURRENT];
    let expected = i64::from(std::process::id());
    Ok(Box::new(move |n| {
        let client = socket.client()?;
        let start = Instant::now();
        for _ in 0..n {
            client
                .write_all(&requests)
                .map_err(|e| format!("write: {e}"))?;
            client
                .read_exact(&mut responses)
                .map_err(|e| format!("read: {e}"))?;
            for response in responses.chunks_exact(RESPONSE_SIZE) {
                let mut word = [0u8; RESPONSE_SIZE];
                word.copy_from_slice(response);
                let pid = i64::from_le_bytes(word);
                if pid != expected {
                    return Err(format!("getpid returned {pid}, expected {expected}"));
                }
            }
        }
        Ok(start.elapsed())
    }))
}

/// Ours for "local getpid": the `Task` API on the local thread.
fn ours_getpid_local() -> Result<Runner, String> {
    let thread = local_thread();
    let expected = std::process::id();
    Ok(Box::new(move |n| {
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let pid = thread
                    .task()
                    .getpid()
                    .await
                    .map_err(|e| format!("getpid: {e}"))?;
                if pid.as_raw() as u32 != expected {
                    return Err(format!("getpid returned {pid:?}, expected {expected}"));
                }
            }
            Ok(start.elapsed())
        })
    }))
}

/// Baseline for "local getpid": the syscall instruction and nothing else.
fn baseline_getpid_raw() -> Result<Runner, String> {
    let expected = i64::from(std::process::id());
    Ok(Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            // SAFETY: getpid takes no arguments and touches no memory.
            let pid = unsafe { rsyscall_server::raw_syscall(0, 0, 0, 0, 0, 0, libc::SYS_getpid) };
            if std::hint::black_box(pid) != expected {
                return Err(format!("getpid returned {pid}, expected {expected}"));
            }
        }
        Ok(start.elapsed())
    }))
}

/// Ours for "1000 children x 100 pipelined getpid": one unit is one round on
/// [`MANY_CHILDREN`] children.
fn ours_getpid_many_children() -> Result<Runner, String> {
    children_rounds(MANY_CHILDREN, 1)
}

/// Baseline for "1000 children x 100 pipelined getpid": one unit is as many rounds on
/// [`FEW_CHILDREN`] children as make the same number of syscalls.
fn baseline_getpid_few_children() -> Result<Runner, String> {
    children_rounds(FEW_CHILDREN, MANY_CHILDREN / FEW_CHILDREN)
}

/// Clones `children` children of the local thread, all kept alive; each unit of the runner
/// is `rounds` rounds of [`PIPELINED`] concurrent getpid on every child, all children
/// polled together.
fn children_rounds(children: usize, rounds: usize) -> Result<Runner, String> {
    let parent = local_thread();
    let kids = block_on(async {
        let mut kids = Vec::with_capacity(children);
        for _ in 0..children {
            let child = parent
                .clone(CLONE::empty())
                .await
                .map_err(|e| format!("clone: {e}"))?;
            let pid = child
                .task()
                .getpid()
                .await
                .map_err(|e| format!("getpid: {e}"))?;
            kids.push((child, pid));
        }
        Ok::<_, String>(kids)
    })?;
    // Dropping the runner drops the children, which kills them.
    Ok(Box::new(move |n| {
        block_on(async {
            let start = Instant::now();
            for _ in 0..n as usize * rounds {
                let per_child = kids.iter().map(|(child, expected)| async move {
                    let futures: Vec<_> = (0..PIPELINED).map(|_| child.task().getpid()).collect();
                    for pid in join_all(futures).await {
                        let pid = pid.map_err(|e| format!("getpid: {e}"))?;
                        if pid != *expected {
                            return Err(format!("getpid returned {pid:?}, expected {expected:?}"));
                        }
                    }
                    Ok(())
                });
                for result in join_woken(per_child.collect()).await {
                    result?;
                }
            }
            Ok(start.elapsed())
        })
    }))
}

/// The indices of [`join_woken`]'s futures whose wakers fired, and the waker of the task
/// polling it.
#[derive(Default)]
struct WokenQueue {
    woken: std::sync::Mutex<(Vec<usize>, Option<std::task::Waker>)>,
}

/// The waker of future `index` of a [`join_woken`].
struct SlotWaker {
    index: usize,
    queue: std::sync::Arc<WokenQueue>,
}

impl std::task::Wake for SlotWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        let parent = {
            let mut woken = self
                .queue
                .woken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            woken.0.push(self.index);
            woken.1.take()
        };
        if let Some(parent) = parent {
            parent.wake();
        }
    }
}

/// Like [`join_all`], but each future has its own waker and is polled only when woken, so a
/// wakeup costs one poll however many futures there are (what an executor's tasks get).
async fn join_woken<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let queue = std::sync::Arc::new(WokenQueue::default());
    let wakers: Vec<std::task::Waker> = (0..futures.len())
        .map(|index| {
            std::task::Waker::from(std::sync::Arc::new(SlotWaker {
                index,
                queue: queue.clone(),
            }))
        })
        .collect();
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    let mut left = pending.len();
    let mut to_poll: Vec<usize> = (0..pending.len()).collect();
    std::future::poll_fn(|cx| {
        loop {
            for index in std::mem::take(&mut to_poll) {
                let Some(future) = &mut pending[index] else {
                    continue;
                };
                let mut slot_cx = std::task::Context::from_waker(&wakers[index]);
                if let Poll::Ready(value) = future.as_mut().poll(&mut slot_cx) {
                    outputs[index] = Some(value);
                    pending[index] = None;
                    left -= 1;
                }
            }
            if left == 0 {
                return Poll::Ready(());
            }
            let mut woken = queue
                .woken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if woken.0.is_empty() {
                woken.1 = Some(cx.waker().clone());
                return Poll::Pending;
            }
            to_poll = std::mem::take(&mut woken.0);
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A directory of its own under the system's temporary directory for a figure's socket,
/// removed with what is left in it when dropped.
struct BenchDir(PathBuf);

impl BenchDir {
    fn new(what: &str) -> Result<BenchDir, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rsyscall-bench-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        Ok(BenchDir(dir))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A persistent thread that is exited (its socket removed, it reaped) when dropped.
struct Persistent {
    thread: Option<rsyscall::PersistentThread>,
    _dir: BenchDir,
}

impl Drop for Persistent {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let ended = block_on(async {
                let monitor = thread.exit(0).await.map_err(|e| e.to_string())?;
                match monitor {
                    Some(monitor) => monitor.wait().await.map(drop).map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            });
            if let Err(e) = ended {
                eprintln!("warning: ending the persistent thread: {e}");
            }
        }
    }
}

/// Ours for "persistent reconnect + getpid": the library's reconnect, then one syscall on
/// the new connection.
fn ours_persistent_reconnect() -> Result<Runner, String> {
    let dir = BenchDir::new("reconnect")?;
    let path = dir.0.join("sock");
    let thread = block_on(local_thread().clone_persistent(&path))
        .map_err(|e| format!("clone_persistent: {e}"))?;
    let expected = block_on(thread.task().getpid()).map_err(|e| format!("getpid: {e}"))?;
    let via = local_thread();
    let held = Persistent {
        thread: Some(thread),
        _dir: dir,
    };
    Ok(Box::new(move |n| {
        let thread = held
            .thread
            .as_ref()
            .ok_or_else(|| "the persistent thread is gone".to_string())?;
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                thread
                    .reconnect(&via)
                    .await
                    .map_err(|e| format!("reconnect: {e}"))?;
                let pid = thread
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
    }))
}

/// The server of the reconnect baseline: a `std::thread` that accepts connections on a
/// unix listening socket, receives one fd from each (a count, then the fd with
/// `SCM_RIGHTS`), answers its number and serves `rsyscall_server::server` on it until the
/// client closes it. Dropping it stops the thread (a last connection with a count of 0
/// wakes its `accept`) and removes the socket.
struct ReconnectServer {
    path: PathBuf,
    server: Option<std::thread::JoinHandle<Result<(), String>>>,
    _dir: BenchDir,
}

impl ReconnectServer {
    fn new() -> Result<ReconnectServer, String> {
        let dir = BenchDir::new("reconnect-baseline")?;
        let path = dir.0.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| format!("bind {}: {e}", path.display()))?;
        let server = std::thread::Builder::new()
            .name("reconnect-baseline".to_string())
            .spawn(move || {
                loop {
                    let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
                    let mut count = [0u8; 4];
                    conn.read_exact(&mut count)
                        .map_err(|e| format!("reading the count: {e}"))?;
                    if i32::from_le_bytes(count) != 1 {
                        return Ok(());
                    }
                    let fd = receive_fd(&conn)?;
                    conn.write_all(&fd.as_raw_fd().to_le_bytes())
                        .map_err(|e| format!("answering: {e}"))?;
                    drop(conn);
                    let raw = fd.as_raw_fd();
                    rsyscall_server::server(raw, raw);
                    drop(fd);
                }
            })
            .map_err(|e| format!("spawning the server thread: {e}"))?;
        Ok(ReconnectServer {
            path,
            server: Some(server),
            _dir: dir,
        })
    }

    /// One reconnect: a new socketpair whose far end is passed to the server.
    fn connect(&self) -> Result<UnixStream, String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let mut conn = UnixStream::connect(&self.path).map_err(|e| format!("connect: {e}"))?;
        conn.write_all(&1i32.to_le_bytes())
            .map_err(|e| format!("sending the count: {e}"))?;
        let raw = [theirs.as_raw_fd()];
        nix::sys::socket::sendmsg::<()>(
            conn.as_raw_fd(),
            &[std::io::IoSlice::new(&[0])],
            &[nix::sys::socket::ControlMessage::ScmRights(&raw)],
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| format!("sending the fd: {e}"))?;
        drop(theirs);
        let mut number = [0u8; 4];
        conn.read_exact(&mut number)
            .map_err(|e| format!("reading the number: {e}"))?;
        Ok(ours)
    }
}

impl Drop for ReconnectServer {
    fn drop(&mut self) {
        if let Ok(mut conn) = UnixStream::connect(&self.path) {
            let _ = conn.write_all(&0i32.to_le_bytes());
        }
        match self.server.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(e))) => eprintln!("warning: the reconnect baseline's server: {e}"),
            Some(Err(_)) => eprintln!("warning: the reconnect baseline's server panicked"),
        }
    }
}

/// Receives one fd (with a one-byte payload) on `conn`.
fn receive_fd(conn: &UnixStream) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving the fd: {e}"))?;
    for cmsg in msg.cmsgs().map_err(|e| format!("control data: {e}"))? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg
            && let [fd] = fds[..]
        {
            // SAFETY: the kernel just installed this fd in our table for us; nothing else
            // owns it.
            return Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        }
    }
    Err("no fd arrived".to_string())
}

/// Baseline for "persistent reconnect + getpid": the same connection made by blocking std
/// calls to a server on a `std::thread`, and one getpid round trip on it.
fn baseline_reconnect_socket() -> Result<Runner, String> {
    let server = ReconnectServer::new()?;
    let mut current = Some(server.connect()?);
    let request = Request::new(libc::SYS_getpid, [0; 6]).to_bytes();
    let expected = i64::from(std::process::id());
    Ok(Box::new(move |n| {
        let mut response = [0u8; RESPONSE_SIZE];
        let start = Instant::now();
        for _ in 0..n {
            // The server accepts the next client once this one is gone.
            if let Some(old) = current.take() {
                let _ = old.shutdown(std::net::Shutdown::Both);
            }
            let mut client = server.connect()?;
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
            current = Some(client);
        }
        Ok(start.elapsed())
    }))
}

/// The path of `env` as the library finds it on PATH (both sides run the same binary).
fn env_path() -> Result<rsyscall::Command, String> {
    block_on(local_thread().environ().which("env")).map_err(|e| format!("which env: {e}"))
}

/// Ours for "stdin bootstrap through env": a thread through `env`, ended and waited for.
fn ours_stdin_bootstrap() -> Result<Runner, String> {
    let env = env_path()?;
    let parent = local_thread();
    Ok(Box::new(move |n| {
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let (launcher, thread) = rsyscall::stdin_bootstrap(&parent, env.clone())
                    .await
                    .map_err(|e| format!("stdin_bootstrap: {e}"))?;
                thread.exit(0).await.map_err(|e| format!("exit: {e}"))?;
                launcher.check().await.map_err(|e| format!("wait: {e}"))?;
            }
            Ok(start.elapsed())
        })
    }))
}

/// Baseline for "stdin bootstrap through env": `env /bin/true` by the standard library.
fn baseline_env_true() -> Result<Runner, String> {
    let env = PathBuf::from(env_path()?.path());
    Ok(Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            let status = std::process::Command::new(&env)
                .arg("/bin/true")
                .status()
                .map_err(|e| format!("spawning env /bin/true: {e}"))?;
            if !status.success() {
                return Err(format!("env /bin/true: {status}"));
            }
        }
        Ok(start.elapsed())
    }))
}

/// A directory for the stub figure's wrappers, removed with the server that lives in it.
struct StubDir {
    server: Option<rsyscall::StubServer>,
    dir: PathBuf,
}

impl StubDir {
    fn new(what: &str) -> Result<StubDir, String> {
        let dir =
            std::env::temp_dir().join(format!("rsyscall-bench-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        Ok(StubDir { server: None, dir })
    }
}

impl Drop for StubDir {
    fn drop(&mut self) {
        if let Some(server) = self.server.take()
            && let Err(e) = block_on(server.close())
        {
            eprintln!("closing the stub server: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ours for "unix stub": the mocked program run, accepted, ended and waited for.
fn ours_stub_accept() -> Result<Runner, String> {
    let mut dir = StubDir::new("stub")?;
    let server = block_on(rsyscall::StubServer::make(
        &local_thread(),
        &dir.dir,
        "mock",
    ))
    .map_err(|e| format!("StubServer::make: {e}"))?;
    let wrapper = server
        .wrapper_path()
        .ok_or("the stub server has no wrapper")?
        .to_path_buf();
    dir.server = Some(server);
    Ok(Box::new(move |n| {
        let server = dir.server.as_ref().ok_or("no stub server")?;
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let mut program = std::process::Command::new(&wrapper)
                    .arg("an-argument")
                    .stdin(std::process::Stdio::null())
                    .spawn()
                    .map_err(|e| format!("running {}: {e}", wrapper.display()))?;
                let (argv, thread) = server.accept().await.map_err(|e| format!("accept: {e}"))?;
                if argv.len() != 2 {
                    return Err(format!("the stub got argv {argv:?}"));
                }
                thread.exit(0).await.map_err(|e| format!("exit: {e}"))?;
                let status = program.wait().map_err(|e| format!("wait: {e}"))?;
                if !status.success() {
                    return Err(format!("the mocked program: {status}"));
                }
            }
            Ok(start.elapsed())
        })
    }))
}

/// Baseline for "unix stub": a `#!/bin/sh` wrapper execing `/bin/true`, run and waited for.
fn baseline_sh_wrapper_true() -> Result<Runner, String> {
    let dir = StubDir::new("sh-wrapper")?;
    let wrapper = dir.dir.join("plain");
    std::fs::write(&wrapper, "#!/bin/sh\nexec /bin/true \"$@\"\n")
        .map_err(|e| format!("writing {}: {e}", wrapper.display()))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", wrapper.display()))?;
    Ok(Box::new(move |n| {
        let _keep = &dir;
        let start = Instant::now();
        for _ in 0..n {
            let status = std::process::Command::new(&wrapper)
                .arg("an-argument")
                .stdin(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("running {}: {e}", wrapper.display()))?;
            if !status.success() {
                return Err(format!("{}: {status}", wrapper.display()));
            }
        }
        Ok(start.elapsed())
    }))
}

/// The bench's per-connection sshd as an [`rsyscall::thread::SshHost`].
fn ssh_host(sshd: &BenchSshd) -> rsyscall::thread::SshHost {
    rsyscall::thread::SshHost::new(BenchSshd::DESTINATION)
        .config_file(sshd.config_file())
        .program(sshd.ssh())
}

/// Ends an ssh thread: `exit(0)` on it, then ssh waited for (it ends when the remote
/// command does).
async fn end_ssh_thread(ssh: AsyncChildProcess, thread: Thread) -> Result<(), String> {
    thread
        .exit(0)
        .await
        .map_err(|e| format!("exit of the ssh thread: {e}"))?;
    drop(thread);
    ssh.check().await.map_err(|e| format!("ssh: {e}"))
}

/// An ssh thread on the bench's sshd, exited and its ssh waited for when dropped.
struct SshSession {
    ssh: Option<AsyncChildProcess>,
    thread: Option<Thread>,
    /// Dropped after the session ended: the sshd's files go last.
    _sshd: std::sync::Arc<BenchSshd>,
}

impl SshSession {
    fn connect() -> Result<SshSession, String> {
        let sshd = BenchSshd::shared()?;
        let (ssh, thread) = block_on(ssh_host(&sshd).connect(&local_thread()))
            .map_err(|e| format!("SshHost::connect: {e}"))?;
        Ok(SshSession {
            ssh: Some(ssh),
            thread: Some(thread),
            _sshd: sshd,
        })
    }

    fn thread(&self) -> Result<&Thread, String> {
        self.thread
            .as_ref()
            .ok_or_else(|| "the ssh thread is gone".to_string())
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        if let (Some(ssh), Some(thread)) = (self.ssh.take(), self.thread.take())
            && let Err(e) = block_on(end_ssh_thread(ssh, thread))
        {
            eprintln!("warning: ending an ssh thread: {e}");
        }
    }
}

/// Ours for "ssh: connect": `SshHost::connect` until the remote thread is returned (timed),
/// then the thread exited and ssh waited for (untimed).
fn ours_ssh_connect() -> Result<Runner, String> {
    let sshd = BenchSshd::shared()?;
    let host = ssh_host(&sshd);
    let parent = local_thread();
    Ok(Box::new(move |n| {
        let _sshd = &sshd;
        block_on(async {
            let mut ready = Duration::ZERO;
            for _ in 0..n {
                let start = Instant::now();
                let (ssh, thread) = host
                    .connect(&parent)
                    .await
                    .map_err(|e| format!("SshHost::connect: {e}"))?;
                ready += start.elapsed();
                end_ssh_thread(ssh, thread).await?;
            }
            Ok(ready)
        })
    }))
}

/// Baseline for "ssh: connect": `ssh -F cfg host true`, the whole command.
fn baseline_ssh_true() -> Result<Runner, String> {
    let sshd = BenchSshd::shared()?;
    Ok(Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            let status = sshd
                .ssh_command(&[])
                .arg("true")
                .status()
                .map_err(|e| format!("running ssh: {e}"))?;
            if !status.success() {
                return Err(format!("ssh host true: {status}"));
            }
        }
        Ok(start.elapsed())
    }))
}

/// What dominates the connect time: `ssh -v host true` with its debug lines timestamped as
/// they arrive (until the server's banner: ssh and the ProxyCommand's sshd starting; until
/// the new keys: the key exchange; until `Authenticated`; until `Sending command`: the
/// session channel opened; until ssh exits: sshd's session running the user's shell with
/// `true`, and the exit status coming back), next to a whole `SshHost::connect` to a ready
/// thread, whose first four steps are the same.
fn ssh_connect_phases(plan: Plan) -> Phases {
    use std::io::BufRead;
    const MARKS: [(&str, &str); 4] = [
        ("Remote protocol version", "ssh true: to sshd's banner"),
        ("SSH2_MSG_NEWKEYS received", "ssh true: key exchange"),
        ("Authenticated to", "ssh true: authentication"),
        ("Sending command", "ssh true: session opened"),
    ];
    let sshd = BenchSshd::shared()?;
    let host = ssh_host(&sshd);
    let parent = local_thread();
    let samples_wanted = (plan.iterations * 2).max(3);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); MARKS.len() + 2];
    for _ in 0..samples_wanted {
        let start = Instant::now();
        let mut child = sshd
            .ssh_command(&["-v"])
            .arg("true")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("running ssh -v: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut at: Vec<Option<Instant>> = vec![None; MARKS.len()];
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.map_err(|e| format!("reading ssh's stderr: {e}"))?;
            for (slot, (mark, _)) in at.iter_mut().zip(MARKS) {
                if slot.is_none() && line.contains(mark) {
                    *slot = Some(Instant::now());
                }
            }
        }
        let status = child.wait().map_err(|e| format!("waiting for ssh: {e}"))?;
        let end = Instant::now();
        if !status.success() {
            return Err(format!("ssh -v host true: {status}"));
        }
        let mut previous = start;
        for (i, slot) in at.iter().enumerate() {
            let t = slot.ok_or_else(|| format!("ssh -v never printed {:?}", MARKS[i].0))?;
            samples[i].push((t - previous).as_nanos() as f64);
            previous = t;
        }
        samples[MARKS.len()].push((end - previous).as_nanos() as f64);

        let start = Instant::now();
        let (ssh, thread) =
            block_on(host.connect(&parent)).map_err(|e| format!("SshHost::connect: {e}"))?;
        samples[MARKS.len() + 1].push(start.elapsed().as_nanos() as f64);
        block_on(end_ssh_thread(ssh, thread))?;
    }
    let names = MARKS.iter().map(|(_, name)| *name).chain([
        "ssh true: remote shell runs `true`, exit",
        "ours: connect to a ready thread",
    ]);
    Ok(names
        .zip(samples.iter_mut())
        .map(|(name, sample)| {
            sample.sort_by(f64::total_cmp);
            (
                name,
                sample.get(sample.len() / 2).copied().unwrap_or(f64::NAN),
            )
        })
        .collect())
}

/// Ours for "ssh: getpid": a getpid round trip on an ssh thread.
fn ours_ssh_getpid() -> Result<Runner, String> {
    let session = shared_ssh_session()?;
    let expected =
        block_on(session.thread()?.task().getpid()).map_err(|e| format!("getpid: {e}"))?;
    Ok(Box::new(move |n| {
        let thread = session.thread()?;
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let pid = thread
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
    }))
}

/// `rsyscall-server` (the standalone server binary) on an ssh thread's host, serving the
/// raw protocol on a channel through the same ssh session's `-L` forward, whose local end
/// is `channel`. Dropping it closes the channel (the server reads end of file at a request
/// boundary and exits 0) and waits for the server; the session ends with its last user.
struct RemoteRawServer {
    channel: Option<UnixStream>,
    server: Option<AsyncChildProcess>,
    _session: std::sync::Arc<SshSession>,
}

impl RemoteRawServer {
    fn start(session: std::sync::Arc<SshSession>) -> Result<RemoteRawServer, String> {
        let thread = session.thread()?;
        let binary = rsyscall::thread::libexec::helper_path("rsyscall-server")
            .map_err(|e| format!("the rsyscall-server binary: {e}"))?;
        let (channel, server) = block_on(async {
            let (local, theirs) = thread
                .open_channels(1)
                .await
                .map_err(|e| format!("open_channels: {e}"))?
                .pop()
                .ok_or("open_channels gave no channel")?;
            let child = thread
                .clone(CLONE::empty())
                .await
                .map_err(|e| format!("clone: {e}"))?;
            let fd = child
                .inherit_fd(&theirs)
                .map_err(|e| format!("inherit_fd: {e}"))?;
            child
                .task()
                .dup2(&fd, &child.stdin())
                .await
                .map_err(|e| format!("dup2: {e}"))?;
            drop(fd);
            theirs
                .close()
                .await
                .map_err(|e| format!("closing the thread's end: {e}"))?;
            // Symbol table, requests and responses all on fd 0, the channel.
            let command = rsyscall::Command::new(binary, "rsyscall-server").args(["0", "0", "0"]);
            let server = child
                .exec(command)
                .await
                .map_err(|e| format!("exec rsyscall-server: {e}"))?;
            Ok::<_, String>((UnixStream::from(local), server))
        })?;
        let mut made = RemoteRawServer {
            channel: Some(channel),
            server: Some(server),
            _session: session,
        };
        let mut symbols = [0u8; 32];
        made.channel()?
            .read_exact(&mut symbols)
            .map_err(|e| format!("reading the server's symbol table: {e}"))?;
        Ok(made)
    }

    fn channel(&mut self) -> Result<&mut UnixStream, String> {
        self.channel
            .as_mut()
            .ok_or_else(|| "the channel to the server is closed".to_string())
    }
}

impl Drop for RemoteRawServer {
    fn drop(&mut self) {
        drop(self.channel.take());
        if let Some(server) = self.server.take()
            && let Err(e) = block_on(server.check())
        {
            eprintln!("warning: the remote rsyscall-server: {e}");
        }
    }
}

/// The ssh session both sides of "ssh: getpid" use (the live one, or a new one), so both
/// go through the same forward of the same ssh connection.
fn shared_ssh_session() -> Result<std::sync::Arc<SshSession>, String> {
    use std::sync::{Arc, Mutex, Weak};
    static SHARED: Mutex<Weak<SshSession>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(live) = shared.upgrade() {
        return Ok(live);
    }
    let made = Arc::new(SshSession::connect()?);
    *shared = Arc::downgrade(&made);
    Ok(made)
}

/// Baseline for "ssh: getpid": the raw protocol's round trip, a blocking `write` of the
/// 56-byte getpid request and a blocking `read` of the 8-byte response, to a server on the
/// remote host through the same forward as ours.
fn baseline_ssh_raw_getpid() -> Result<Runner, String> {
    let mut remote = RemoteRawServer::start(shared_ssh_session()?)?;
    let request = Request::new(libc::SYS_getpid, [0; 6]).to_bytes();
    Ok(Box::new(move |n| {
        let channel = remote.channel()?;
        let mut response = [0u8; RESPONSE_SIZE];
        let start = Instant::now();
        for _ in 0..n {
            channel
                .write_all(&request)
                .map_err(|e| format!("write: {e}"))?;
            channel
                .read_exact(&mut response)
                .map_err(|e| format!("read: {e}"))?;
        }
        let elapsed = start.elapsed();
        if n > 0 && i64::from_le_bytes(response) <= 0 {
            return Err(format!(
                "getpid answered {}, not a pid",
                i64::from_le_bytes(response)
            ));
        }
        Ok(elapsed)
    }))
}

/// Units of operations in the shorter of the two runs counted under strace.
const COUNT_FEW: u32 = 10;
/// Units of operations in the longer run.
const COUNT_MORE: u32 = 110;

/// Syscalls per operation of each side of a figure, by name.
struct SyscallCounts {
    ours: BTreeMap<String, f64>,
    baseline: BTreeMap<String, f64>,
}

/// Counts the syscalls one operation of each side of `figure` makes, by running this
/// program under `strace -f -c` for [`COUNT_FEW`] units and for [`COUNT_MORE`], and
/// dividing the difference (so setup, the first-use costs and program start cancel out).
fn count_syscalls(figure: &Figure) -> Result<SyscallCounts, String> {
    let strace = find_in_path("strace").ok_or_else(|| {
        "strace is not installed: syscalls were not counted (see the figure's \
         description for what one operation does)"
            .to_string()
    })?;
    let exe = std::env::current_exe().map_err(|e| format!("locating this program: {e}"))?;
    let per_op = |side| -> Result<BTreeMap<String, f64>, String> {
        let a = strace_counts(&strace, &exe, figure, side, COUNT_FEW)?;
        let b = strace_counts(&strace, &exe, figure, side, COUNT_MORE)?;
        let ops = f64::from(COUNT_MORE - COUNT_FEW) * f64::from(figure.batch.max(1));
        let mut out = BTreeMap::new();
        for (name, calls) in &b {
            let diff = calls.saturating_sub(a.get(name).copied().unwrap_or(0));
            if diff > 0 {
                out.insert(name.clone(), diff as f64 / ops);
            }
        }
        Ok(out)
    };
    Ok(SyscallCounts {
        ours: per_op(Which::Ours)?,
        baseline: per_op(Which::Baseline)?,
    })
}

/// Runs `exe --count-syscalls KEY SIDE n` (n units) under `strace -f -c` and returns the
/// calls per syscall name.
fn strace_counts(
    strace: &Path,
    exe: &Path,
    figure: &Figure,
    side: Which,
    n: u32,
) -> Result<BTreeMap<String, u64>, String> {
    let out = std::env::temp_dir().join(format!(
        "rsyscall-bench-strace-{}-{}-{}-{n}.txt",
        std::process::id(),
        figure.key,
        side.name()
    ));
    let status = std::process::Command::new(strace)
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg("--")
        .arg(exe)
        .args(["--count-syscalls", figure.key, side.name(), &n.to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    let text = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("strace of {} {}: {s}", figure.key, side.name())),
        Err(e) => return Err(format!("running strace: {e}")),
    }
    let text = text.map_err(|e| format!("reading strace's summary: {e}"))?;
    Ok(parse_strace_summary(&text))
}

/// Parses the table `strace -c` writes: `% time, seconds, usecs/call, calls, [errors],
/// syscall` per line, between dashed rules, then a `total` line (skipped).
fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(5..=6).contains(&fields.len()) {
            continue;
        }
        let (Some(name), Some(Ok(calls))) = (fields.last(), fields.get(3).map(|c| c.parse()))
        else {
            continue;
        };
        if *name != "total" {
            counts.insert((*name).to_string(), calls);
        }
    }
    counts
}

/// The hidden mode `--count-syscalls KEY ours|baseline N`: sets up one side of a figure and
/// runs N units of it once, for `strace -c` to count.
fn count_mode(args: &[String]) -> ExitCode {
    let [key, side, n] = args else {
        eprintln!("usage: --count-syscalls KEY ours|baseline N");
        return ExitCode::FAILURE;
    };
    let (Some(figure), Some(side), Ok(n)) = (
        FIGURES.iter().find(|f| f.key == key),
        Which::parse(side),
        n.parse::<u32>(),
    ) else {
        eprintln!("--count-syscalls: unknown figure {key:?}, side {side:?} or count {n:?}");
        return ExitCode::FAILURE;
    };
    let setup = match side {
        Which::Ours => figure.ours,
        Which::Baseline => Some(figure.baseline),
    };
    let result = match setup {
        None => Err("not implemented".to_string()),
        Some(setup) => setup().and_then(|mut runner| runner(n)),
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} {}: {e}", figure.key, side.name());
            ExitCode::FAILURE
        }
    }
}

/// The executable file `name` in a `PATH` directory.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A figure with its measurements.
struct Row {
    figure: &'static Figure,
    ours: Option<Measured>,
    baseline: Measured,
    /// Syscalls per operation, counted where the target was missed.
    syscalls: Option<Result<SyscallCounts, String>>,
    /// Our operation's phases, timed where the target was missed or the figure explains
    /// itself.
    phases: Option<Phases>,
    /// The figure's notes, where it has any.
    notes: Option<Notes>,
}

impl Row {
    /// Both sides' nanoseconds per operation, when both were measured.
    fn both(&self) -> Option<(f64, f64)> {
        match (&self.ours, &self.baseline) {
            (Some(Ok(ours)), Ok(baseline)) => Some((*ours, *baseline)),
            _ => None,
        }
    }

    /// ours / baseline, when both were measured.
    fn ratio(&self) -> Option<f64> {
        self.both()
            .filter(|(_, baseline)| *baseline > 0.0)
            .map(|(ours, baseline)| ours / baseline)
    }

    /// Whether the target is met, when both sides were measured.
    fn met(&self) -> Option<bool> {
        self.both()
            .map(|(ours, baseline)| self.figure.target.met(ours, baseline))
    }

    /// The cells of the table: figure, ours, baseline, ratio, target, met?.
    fn cells(&self) -> [String; 6] {
        let ratio = match (self.ratio(), self.both(), self.figure.target) {
            (Some(r), Some((ours, baseline)), Target::OverheadNs(_)) => {
                format!("{r:.2} ({:+.0} ns)", ours - baseline)
            }
            (Some(r), _, _) => format!("{r:.2}"),
            (None, _, _) => "-".to_string(),
        };
        [
            self.figure.name.to_string(),
            match &self.ours {
                None => "not implemented".to_string(),
                Some(m) => cell(m),
            },
            cell(&self.baseline),
            ratio,
            self.figure.target.cell(),
            match self.met() {
                Some(true) => "yes".to_string(),
                Some(false) => "no".to_string(),
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

/// The syscall names of `counts`, dearest (most calls per operation, ours first) first,
/// with both sides' counts.
fn syscall_rows(counts: &SyscallCounts) -> Vec<(&str, f64, f64)> {
    let mut names: Vec<&str> = counts
        .ours
        .keys()
        .chain(counts.baseline.keys())
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut rows: Vec<(&str, f64, f64)> = names
        .into_iter()
        .map(|name| {
            (
                name,
                counts.ours.get(name).copied().unwrap_or(0.0),
                counts.baseline.get(name).copied().unwrap_or(0.0),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.total_cmp(&a.2)));
    rows
}

/// Total calls per operation of one side.
fn total(side: &BTreeMap<String, f64>) -> f64 {
    side.values().sum()
}

/// The timed phases of a figure (whose target was missed, or that explains itself), as
/// plain text.
fn text_phases(figure: &Figure, phases: &Phases) -> String {
    let mut out = format!("phases, {} (median of each):\n", figure.name);
    match phases {
        Err(e) => {
            let _ = writeln!(out, "  not timed: {e}");
        }
        Ok(phases) => {
            for (name, ns) in phases {
                let _ = writeln!(out, "  {name:<42} {ns:>12.0} ns");
            }
        }
    }
    out
}

/// The syscall counts of a figure whose target was missed, as plain text.
fn text_syscalls(figure: &Figure, counts: &Result<SyscallCounts, String>) -> String {
    let mut out = format!("syscalls per operation, {} (strace -f -c):\n", figure.name);
    match counts {
        Err(e) => {
            let _ = writeln!(out, "  not counted: {e}");
        }
        Ok(counts) => {
            let _ = writeln!(out, "  {:<24} {:>10} {:>10}", "syscall", "ours", "baseline");
            for (name, ours, baseline) in syscall_rows(counts) {
                let _ = writeln!(out, "  {name:<24} {ours:>10.2} {baseline:>10.2}");
            }
            let _ = writeln!(
                out,
                "  {:<24} {:>10.2} {:>10.2}",
                "total",
                total(&counts.ours),
                total(&counts.baseline)
            );
        }
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
         measured in the same run. The ratio is ours / baseline (lower is better); a target \
         written `+<= N ns` bounds the difference ours - baseline instead. Targets are goals, \
         not tests: the test suite asserts none of them.\n"
    );
    let _ = writeln!(out, "- date: {} (UTC)", env.date);
    let _ = writeln!(out, "- kernel: {}", env.kernel);
    let _ = writeln!(out, "- CPU: {} ({} logical CPUs)", env.cpu, env.cpus);
    let _ = writeln!(
        out,
        "- method: {} warm-up operations, then {} repetitions of {} operations (ten times \
         as many for figures of tens of nanoseconds, a tenth for figures that make a \
         connection, a hundredth for figures that create a process, a thousandth for \
         figures that fork from a parent of gigabytes, a two-thousandth for figures that \
         open an ssh session); the two sides' repetitions alternate; each cell is the median \
         time per operation over the repetitions; optimised build (cargo's `bench` \
         profile)\n",
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
        let _ = writeln!(out, "- target: {}", figure.target.sentence());
        if row.ours.is_none() {
            let _ = writeln!(
                out,
                "- status: ours is not measured yet (the API it needs is not implemented)"
            );
        }
        match &row.phases {
            None => {}
            Some(Err(e)) => {
                let _ = writeln!(out, "- phases not timed: {e}");
            }
            Some(Ok(phases)) => {
                let list: Vec<String> = phases
                    .iter()
                    .map(|(name, ns)| format!("{name} {ns:.0} ns"))
                    .collect();
                let _ = writeln!(
                    out,
                    "- phases (median of each, timed separately): {}",
                    list.join(", ")
                );
            }
        }
        match &row.notes {
            None => {}
            Some(Err(e)) => {
                let _ = writeln!(out, "- notes not made: {e}");
            }
            Some(Ok(lines)) => {
                for line in lines {
                    let _ = writeln!(out, "- note: {line}");
                }
            }
        }
        match &row.syscalls {
            None => {}
            Some(Err(e)) => {
                let _ = writeln!(
                    out,
                    "- target missed; syscalls per operation not counted: {e}"
                );
            }
            Some(Ok(counts)) => {
                let _ = writeln!(
                    out,
                    "\nTarget missed. Syscalls per operation, counted with `strace -f -c` \
                     (all threads and child processes, including the exec'd program where \
                     there is one; the difference between runs of {} and {} operations):\n",
                    figure.batch.saturating_mul(COUNT_FEW),
                    figure.batch.saturating_mul(COUNT_MORE)
                );
                let _ = writeln!(out, "| syscall | ours | baseline |");
                let _ = writeln!(out, "|---|---|---|");
                for (name, ours, baseline) in syscall_rows(counts) {
                    let _ = writeln!(out, "| {name} | {ours:.2} | {baseline:.2} |");
                }
                let _ = writeln!(
                    out,
                    "| **total** | **{:.2}** | **{:.2}** |",
                    total(&counts.ours),
                    total(&counts.baseline)
                );
            }
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
