//! Parent death: a program with descendants of every kind the library makes, SIGKILLed from
//! outside, leaves none of them alive.
//!
//! The program is this test binary run again with [`PROGRAM_ENV`] set, which makes the one
//! test in it build the tree instead of checking it. It makes clone children (with their
//! own fd table and sharing its table), clones of those, children in new user and pid
//! namespaces with children of their own, programs exec'd from children at every depth and
//! children of an exec'd program (inside a pid namespace, whose init takes them along), then
//! lists every process descending from it, as `/proc` shows them, and waits to be killed.
//!
//! What the library cannot promise is left out: a process that an exec'd program forks
//! itself, outside a pid namespace, survives (the kernel does not pass `PR_SET_PDEATHSIG`
//! on through `fork`); run the program in a new pid namespace to take such processes along.
//!
//! The test kills it and checks, by polling up to a deadline, that every listed process is
//! gone: no longer in `/proc`, a zombie, or a different process under a reused pid (its
//! start time differs). The test makes itself a child subreaper, so that the orphans come to
//! it and it reaps them all afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rsyscall::{CLONE, ChildThread, Thread, local_thread};
use rsyscall_tests::programs::sleeper;
use rsyscall_tests::server::inherit_fd;

/// Set (to the number of the write end of the report pipe) in the program's environment.
const PROGRAM_ENV: &str = "RSYSCALL_TEST_PARENT_DEATH_REPORT_FD";
/// The name of the test, which the program runs (alone) to build its tree.
const TEST_NAME: &str = "descendants_of_every_kind_die_with_a_killed_program";
/// Descendants the program must have: the issue asks for at least 20.
const MIN_DESCENDANTS: usize = 20;
/// How long after the SIGKILL every descendant must be gone.
const DEADLINE: Duration = Duration::from_secs(2);
/// How long the program may take to build its tree and report it.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60);
/// `sleep` processes the program starts: four exec'd from children at various depths and
/// two started by a shell in a pid namespace.
const SLEEPS: usize = 6;

/// One process, as `/proc/<pid>/stat` and `/proc/<pid>/status` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: i32,
    ppid: i32,
    /// Field 22 of `stat`: when the process started, in clock ticks since boot. A pid
    /// reused by another process comes with another start time.
    start: u64,
    /// Field 3 of `stat`.
    state: char,
    comm: String,
    /// How many pid namespaces it has a pid in (the `NSpid:` line).
    ns_depth: usize,
}

/// Reads `/proc/<pid>`: `None` if there is no such process (any more).
fn read_proc(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split at the
    // last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(22 - 3)?.parse().ok()?;
    let ns_depth = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|l| l.split_whitespace().count())
        })
        .unwrap_or(1);
    Some(Proc {
        pid,
        ppid,
        start,
        state,
        comm,
        ns_depth,
    })
}

/// Every process now in `/proc`.
fn all_procs() -> Vec<Proc> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.extend(read_proc(pid));
        }
    }
    out
}

/// The processes descending from `root` (not `root` itself).
fn descendants(root: i32) -> Vec<Proc> {
    let procs = all_procs();
    let mut children: BTreeMap<i32, Vec<&Proc>> = BTreeMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for c in children.get(&pid).into_iter().flatten() {
            out.push((*c).clone());
            todo.push(c.pid);
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Whether the process `p` described is still alive: its pid names a process with the same
/// start time that is not a zombie (or dead, `X`).
fn alive(p: &Proc) -> bool {
    match read_proc(p.pid) {
        Some(now) => now.start == p.start && !matches!(now.state, 'Z' | 'X'),
        None => false,
    }
}

// ---------------------------------------------------------------------------------------
// The program.

/// Clones a child of `parent` with `flags`, failing loudly.
async fn clone(parent: &Thread, flags: CLONE, what: &str) -> ChildThread {
    parent
        .clone(flags)
        .await
        .unwrap_or_else(|e| panic!("clone {what} ({flags:?}): {e}"))
}

/// Builds the tree; returns what must stay alive for it to stay up (dropping a child's
/// handle kills it).
async fn build_tree() -> Vec<Box<dyn std::any::Any>> {
    let local = local_thread();
    let sleep = sleeper().await;
    let sh = local.environ().which("sh").await.expect("which sh");
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();

    // Clone children with their own fd table and with ours, some idle, some with children.
    for i in 0..3 {
        keep.push(Box::new(
            clone(&local, CLONE::empty(), &format!("plain {i}")).await,
        ));
    }
    for i in 0..2 {
        keep.push(Box::new(
            clone(&local, CLONE::FILES, &format!("files {i}")).await,
        ));
    }
    // Nested clones: a child's children and grandchild, of both table kinds.
    let a = clone(&local, CLONE::empty(), "nest a").await;
    let b = clone(&a, CLONE::empty(), "nest a/b").await;
    let c = clone(&a, CLONE::FILES, "nest a/c").await;
    let d = clone(&b, CLONE::empty(), "nest a/b/d").await;
    let e = clone(&c, CLONE::FILES, "nest a/c/e").await;
    // A child sharing our table, with children of its own.
    let f = clone(&local, CLONE::FILES, "nest f").await;
    let g = clone(&f, CLONE::empty(), "nest f/g").await;
    let h = clone(&f, CLONE::FILES, "nest f/h").await;

    // Exec'd programs: from a child of ours, from a grandchild and from a great-grandchild.
    let s1 = clone(&local, CLONE::empty(), "sleep 1").await;
    keep.push(Box::new(
        s1.exec(sleep.clone()).await.expect("exec sleep 1"),
    ));
    let s2 = clone(&local, CLONE::FILES, "sleep 2").await;
    keep.push(Box::new(
        s2.exec(sleep.clone()).await.expect("exec sleep 2"),
    ));
    let s3 = clone(&b, CLONE::empty(), "sleep 3").await;
    keep.push(Box::new(
        s3.exec(sleep.clone()).await.expect("exec sleep 3"),
    ));
    let s4 = clone(&d, CLONE::FILES, "sleep 4").await;
    keep.push(Box::new(
        s4.exec(sleep.clone()).await.expect("exec sleep 4"),
    ));

    // New user namespaces, and user+pid namespaces with children inside.
    keep.push(Box::new(clone(&local, CLONE::NEWUSER, "user ns").await));
    let p = clone(&local, CLONE::NEWUSER | CLONE::NEWPID, "pid ns p").await;
    let p1 = clone(&p, CLONE::empty(), "pid ns p/1").await;
    let p2 = clone(&p, CLONE::FILES, "pid ns p/2").await;
    let p11 = clone(&p1, CLONE::empty(), "pid ns p/1/1").await;
    // A pid namespace inside a child: its init is a grandchild of ours.
    let q = clone(&a, CLONE::NEWUSER | CLONE::NEWPID, "pid ns a/q").await;
    let q1 = clone(&q, CLONE::empty(), "pid ns a/q/1").await;

    // An exec'd shell, init of its pid namespace, and its own children (which nothing of
    // ours created: they die because their namespace's init dies).
    let r = clone(&local, CLONE::NEWUSER | CLONE::NEWPID, "pid ns r").await;
    let shell = sh.clone().arg("-c").arg("sleep 1000 & sleep 1000 & wait");
    keep.push(Box::new(r.exec(shell).await.expect("exec sh")));

    keep.push(Box::new((a, b, c, d, e, f, g, h)));
    keep.push(Box::new((p, p1, p2, p11, q, q1)));
    keep
}

/// The program: builds the tree, reports every descendant on `report` (one line per
/// process: `pid start comm ns_depth`, then `end`), and waits to be killed.
fn program(report_fd: i32) -> ! {
    // SAFETY: the test gave us this fd, the write end of the report pipe, for us alone.
    let mut report = unsafe { File::from_raw_fd(report_fd) };
    // Not for our children: the exec'd ones would hold it open.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(report.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    let keep = rsyscall_tests::tasks::run(build_tree());
    let me = std::process::id() as i32;
    // The shell's two sleeps appear a little after the exec: wait for all of them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut procs = descendants(me);
    while procs.iter().filter(|p| p.comm == "sleep").count() < SLEEPS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        procs = descendants(me);
    }
    let mut text = String::new();
    for p in &procs {
        text.push_str(&format!(
            "{} {} {} {}\n",
            p.pid, p.start, p.comm, p.ns_depth
        ));
    }
    text.push_str("end\n");
    report
        .write_all(text.as_bytes())
        .expect("writing the report");
    drop(report);
    // The test kills us long before this; if it does not, exiting ends the tree as well.
    std::thread::sleep(BUILD_TIMEOUT);
    drop(keep);
    std::process::exit(3);
}

// ---------------------------------------------------------------------------------------
// The test.

/// The running program. When dropped (so also when the test fails), it is killed and
/// reaped, and so is every process that is our child then: orphans of its tree, which come
/// to us as their subreaper, and which nothing else could reap.
struct Program(std::process::Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let me = std::process::id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            reap_exited();
            let children: Vec<Proc> = all_procs().into_iter().filter(|p| p.ppid == me).collect();
            if children.is_empty() || Instant::now() > deadline {
                return;
            }
            for p in children.iter().filter(|p| alive(p)) {
                // SAFETY: kill only sends a signal, to a child of ours (so its pid cannot be
                // reused before we reap it).
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads the report from `read_end` until its `end` line, within [`BUILD_TIMEOUT`].
fn read_report(read_end: &mut File) -> Vec<Proc> {
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let mut text = String::new();
    while !text.ends_with("end\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no report from the program within {BUILD_TIMEOUT:?}: {text}"
        );
        let mut pfd = libc::pollfd {
            fd: read_end.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes only `pfd`.
        let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if ready <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        let n = read_end.read(&mut buf).expect("reading the report");
        assert!(
            n > 0,
            "the program ended before reporting (see its stderr): {text}"
        );
        text.push_str(std::str::from_utf8(&buf[..n]).expect("a text report"));
    }
    text.lines()
        .filter(|l| *l != "end")
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "report line {l:?}");
            Proc {
                pid: f[0].parse().expect("pid"),
                ppid: 0,
                start: f[1].parse().expect("start"),
                state: 'R',
                comm: f[2].to_string(),
                ns_depth: f[3].parse().expect("depth"),
            }
        })
        .collect()
}

/// Reaps every child of ours that has exited (orphans of the tree, reparented to us).
fn reap_exited() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only `status`; this test binary starts no other children
        // that something else waits for.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if pid <= 0 {
            return;
        }
    }
}

#[test]
fn descendants_of_every_kind_die_with_a_killed_program() {
    if let Some(fd) = std::env::var_os(PROGRAM_ENV) {
        let fd = fd
            .to_str()
            .and_then(|s| s.parse().ok())
            .expect("a report fd");
        program(fd);
    }

    // Orphans of the tree are reparented to us, not to init, so that we reap them.
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(ret, 0, "PR_SET_CHILD_SUBREAPER");

    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned by nobody else.
    let (mut read_end, write_end) =
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args([TEST_NAME, "--exact", "--test-threads=1", "--nocapture"])
        .env(PROGRAM_ENV, write_end.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    inherit_fd(&mut cmd, write_end.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe: the program dies with the thread that started it (this one).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut program = Program(cmd.spawn().expect("starting the program"));
    drop(write_end);
    let program_pid = program.0.id() as i32;

    let reported = read_report(&mut read_end);
    let listing: String = reported
        .iter()
        .map(|p| format!("  {} {} (pid namespaces: {})\n", p.pid, p.comm, p.ns_depth))
        .collect();
    // What is alive now, and still the program's: a futex helper may have exited since
    // the listing (it ends once its child has exec'd).
    let now: BTreeSet<(i32, u64)> = descendants(program_pid)
        .iter()
        .map(|p| (p.pid, p.start))
        .collect();
    let reported: Vec<Proc> = reported
        .into_iter()
        .filter(|p| now.contains(&(p.pid, p.start)) && alive(p))
        .collect();
    assert!(
        reported.len() >= MIN_DESCENDANTS,
        "only {} descendants alive before the kill; listed:\n{listing}",
        reported.len()
    );
    let sleeps = reported.iter().filter(|p| p.comm == "sleep").count();
    assert_eq!(sleeps, SLEEPS, "sleep processes; listed:\n{listing}");
    assert!(
        reported.iter().any(|p| p.comm == "sh" && p.ns_depth > 1),
        "no shell in a pid namespace; listed:\n{listing}"
    );
    assert!(
        reported.iter().filter(|p| p.ns_depth > 1).count() >= 8,
        "too few processes in pid namespaces; listed:\n{listing}"
    );

    // SAFETY: kill with a pid of our unreaped child.
    assert_eq!(unsafe { libc::kill(program_pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let status = program.0.wait().expect("waiting for the program");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the program ended otherwise: {status:?}"
    );

    let mut left: Vec<&Proc> = reported.iter().collect();
    while !left.is_empty() && killed.elapsed() < DEADLINE {
        reap_exited();
        std::thread::sleep(Duration::from_millis(10));
        left.retain(|p| alive(p));
    }
    left.retain(|p| alive(p));
    let gone_after = killed.elapsed();
    let survivors: Vec<String> = left
        .iter()
        .map(|p| format!("{} ({})", p.pid, p.comm))
        .collect();
    // Survivors are orphans now, so our children: dropping `program` kills and reaps them.
    drop(program);
    assert!(
        survivors.is_empty(),
        "{} of {} descendants still alive {DEADLINE:?} after the program was SIGKILLed: {}\n\
         all descendants:\n{listing}",
        survivors.len(),
        reported.len(),
        survivors.join(", ")
    );
    eprintln!(
        "{} descendants, all gone {gone_after:?} after the SIGKILL:\n{listing}",
        reported.len()
    );
}
