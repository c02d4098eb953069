//! Nothing left behind by ssh threads (issue 9 section 3): 50 connect/exit cycles, 20
//! connect/SIGKILL-the-program cycles, and `connect` dropped after any number of polls leave
//! no process (ssh, ProxyCommand, janitor, remote script or bootstrap), socket file or
//! directory, locally or on the remote host (this machine: the tests' hosts are local).
//!
//! The test process is a child subreaper: what the killed program (or ssh) orphans comes
//! to us, so it is seen, and reaped. Its tests count process-wide resources: serialized.

use std::io::{BufRead, BufReader};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use rsyscall::local_thread;
use rsyscall_handle::ChildState;
use rsyscall_tests::errors::serial;
use rsyscall_tests::procs::{open_fds, settled};
use rsyscall_tests::ssh::SshEnv;
use rsyscall_tests::ssh_leaks::{
    ConnDirs, LoggingSsh, alive, become_subreaper, cmdline, live_descendants, reap_zombies_except,
};
use rsyscall_tests::tasks::run;
use rsyscall_thread::SshHost;

/// Bound on one connection (or its teardown).
const LIMIT: Duration = Duration::from_secs(30);
/// Bound on what an ended connection leaves to disappear.
const GONE: Duration = Duration::from_secs(10);
/// The environment variables of the program that gets killed.
const MODE_ENV: &str = "RSYSCALL_SSH_CLEANUP_MODE";
const CONFIG_ENV: &str = "RSYSCALL_SSH_CLEANUP_CONFIG";
const DEST_ENV: &str = "RSYSCALL_SSH_CLEANUP_DEST";

/// `fut`, failing the test if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::or(fut, async {
        async_io::Timer::after(limit).await;
        panic!("{what}: not done within {limit:?}");
    })
    .await
}

/// Our live descendants and fds.
struct Baseline {
    fds: usize,
    descendants: Vec<i32>,
}

fn baseline() -> Baseline {
    become_subreaper();
    run(async {
        settled(|| live_descendants().len()).await;
        Baseline {
            fds: settled(open_fds).await,
            descendants: live_descendants(),
        }
    })
}

/// Waits (bounded) until our live descendants and fds are back to `base`; reaps the
/// orphans that came to us.
fn assert_back_to(base: &Baseline, what: &str) {
    let start = Instant::now();
    loop {
        let extra: Vec<_> = live_descendants()
            .into_iter()
            .filter(|p| !base.descendants.contains(p))
            .map(|p| (p, cmdline(p)))
            .collect();
        if extra.is_empty() {
            break;
        }
        assert!(start.elapsed() < GONE, "{what}: processes left: {extra:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    reap_zombies_except(&[]);
    let fds = run(settled(open_fds));
    assert!(
        fds <= base.fds,
        "{what}: fds leaked: {} before, {fds}",
        base.fds
    );
}

/// Warms up what a connection starts lazily (the reactor, the service thread, the
/// reaper), so that the baseline counts them.
fn warm_up(host: &SshHost) {
    run(async {
        let (ssh, remote) = within(LIMIT, "warm-up", host.connect(&local_thread()))
            .await
            .unwrap();
        remote.exit(0).await.unwrap();
        drop(remote);
        assert_eq!(ssh.wait().await.unwrap(), ChildState::Exited(0));
    });
}

#[test]
fn connect_exit_cycles_leave_nothing() {
    let _g = serial();
    let env = SshEnv::new();
    let target = env.proxy_host();
    let host = SshHost::new(target.destination()).config_file(target.config_file());
    warm_up(&host);
    let base = baseline();
    let start = Instant::now();
    let mut all = Vec::new();
    for i in 0..50 {
        let dirs = run(async {
            let (ssh, remote) = within(LIMIT, "connect", host.connect(&local_thread()))
                .await
                .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
            let dirs = ConnDirs::of_ssh(ssh.pid().as_raw()).expect("ssh's -L argument");
            assert!(dirs.local.exists() && dirs.remote.exists(), "{dirs:?}");
            remote.exit(0).await.unwrap();
            drop(remote);
            let state = within(LIMIT, "ssh exit", ssh.wait()).await.unwrap();
            assert_eq!(state, ChildState::Exited(0), "cycle {i}");
            dirs
        });
        all.push(dirs);
    }
    let cycles = start.elapsed();
    for dirs in &all {
        dirs.assert_gone_within(GONE, "connect/exit cycle");
    }
    assert_back_to(&base, "connect/exit cycles");
    eprintln!(
        "50 connect/exit cycles: {cycles:?} ({:?} each)",
        cycles / 50
    );
}

/// The program that gets killed: connects, prints what the test needs to check, waits;
/// in mode `blocked`, with the remote thread blocked in a `read` of a pipe nobody writes
/// (so it does not see its connection end: only a signal ends it).
#[test]
fn child_mode() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    assert!(mode == "idle" || mode == "blocked", "{mode}");
    let config = std::env::var(CONFIG_ENV).unwrap();
    let dest = std::env::var(DEST_ENV).unwrap();
    run(async {
        let (ssh, remote) = SshHost::new(dest)
            .config_file(config)
            .connect(&local_thread())
            .await
            .unwrap();
        let pid = remote.task().getpid().await.unwrap().as_raw();
        let pipe = remote.pipe().await.unwrap();
        let blocked = async {
            if mode == "blocked" {
                let r = remote.task().read_bytes(&pipe.read, 1).await;
                panic!("the read returned: {r:?}");
            }
            std::future::pending::<()>().await
        };
        let ready = async {
            // Let the read reach the host first.
            async_io::Timer::after(Duration::from_millis(50)).await;
            println!("READY {} {pid}", ssh.pid().as_raw());
            // Wait to be killed.
            async_io::Timer::after(Duration::from_secs(50)).await;
            panic!("the victim was not killed");
        };
        futures_lite::future::or(blocked, ready).await
    });
}

#[test]
fn connect_then_sigkill_the_program_cycles_leave_nothing() {
    let _g = serial();
    let env = SshEnv::new();
    let target = env.proxy_host();
    warm_up(&SshHost::new(target.destination()).config_file(target.config_file()));
    let base = baseline();
    let start = Instant::now();
    for i in 0..20 {
        let mut victim = StdCommand::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_mode", "--nocapture", "--test-threads=1"])
            .env(MODE_ENV, if i % 2 == 0 { "idle" } else { "blocked" })
            .env(CONFIG_ENV, target.config_file())
            .env(DEST_ENV, target.destination())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
        // Bounded: the victim panics (and exits) if it cannot connect within `run`'s 60 s.
        let ready = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("cycle {i}: the victim ended before READY"))
                .unwrap();
            if let Some(at) = line.find("READY ") {
                break line[at + 6..].to_owned();
            }
        };
        let mut fields = ready.split_whitespace().map(|f| f.parse::<i32>().unwrap());
        let (ssh, bootstrap) = (fields.next().unwrap(), fields.next().unwrap());
        let dirs = ConnDirs::of_ssh(ssh).expect("ssh's -L argument");
        assert!(alive(bootstrap), "cycle {i}: the remote thread {bootstrap}");
        victim.kill().unwrap();
        victim.wait().unwrap();
        drop(lines);
        dirs.assert_gone_within(GONE, "after SIGKILL of the program");
        let t = Instant::now();
        while alive(ssh) || alive(bootstrap) {
            assert!(
                t.elapsed() < GONE,
                "cycle {i}: ssh or the bootstrap outlived the kill"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_back_to(&base, "connect/SIGKILL cycle");
    }
    eprintln!(
        "20 connect/SIGKILL cycles: {:?} ({:?} each)",
        start.elapsed(),
        start.elapsed() / 20
    );
}

/// Polls `fut` up to `n` times, letting the reactor run 1 ms in between; drops it if it
/// has not completed.
async fn poll_then_drop<F: std::future::Future>(fut: F, n: usize) -> Option<F::Output> {
    let mut fut = Box::pin(fut);
    for _ in 0..n {
        if let Some(out) = futures_lite::future::poll_once(&mut fut).await {
            return Some(out);
        }
        async_io::Timer::after(Duration::from_millis(1)).await;
    }
    None
}

#[test]
fn dropping_connect_at_any_point_leaves_nothing() {
    let _g = serial();
    let env = SshEnv::new();
    let target = env.proxy_host();
    let ssh = LoggingSsh::new(&env);
    let host = SshHost::new(target.destination())
        .config_file(target.config_file())
        .program(ssh.path());
    warm_up(&host);
    let base = baseline();
    let mut checked = ssh.runs().len();
    // 1, 2, 3, 4, 6, 9, 13, ... polls (1 ms apart), until connect completes.
    let mut n = 1;
    let mut dropped = 0;
    loop {
        let done = run(poll_then_drop(host.connect(&local_thread()), n));
        let completed = done.is_some();
        if let Some(result) = done {
            let (process, remote) = result.unwrap();
            run(async {
                remote.exit(0).await.unwrap();
                drop(remote);
                within(LIMIT, "ssh exit", process.wait()).await.unwrap();
            });
        } else {
            dropped += 1;
        }
        let runs = ssh.runs();
        for (pid, dirs) in &runs[checked..] {
            dirs.assert_gone_within(GONE, &format!("connect dropped after {n} polls"));
            assert!(
                !alive(*pid),
                "ssh {pid} outlived connect dropped after {n} polls"
            );
        }
        checked = runs.len();
        assert_back_to(&base, &format!("connect dropped after {n} polls"));
        if completed {
            break;
        }
        n += n.div_ceil(2);
        assert!(n < 100_000, "connect never completed");
    }
    assert!(
        dropped >= 5,
        "only {dropped} drop points before connect completed"
    );
    eprintln!("connect dropped at {dropped} points; completed within {n} polls");
}

#[test]
fn the_deployed_binary_is_gone_while_the_thread_lives() {
    let _g = serial();
    let env = SshEnv::new();
    let target = env.proxy_host();
    let host = SshHost::new(target.destination()).config_file(target.config_file());
    let dirs = run(async {
        let (ssh, remote) = within(LIMIT, "connect", host.connect(&local_thread()))
            .await
            .unwrap();
        let dirs = ConnDirs::of_ssh(ssh.pid().as_raw()).expect("ssh's -L argument");
        let pid = remote.task().getpid().await.unwrap().as_raw();
        let binary = dirs.remote.join("b");
        let deleted = format!("{} (deleted)", binary.display());
        // Seen from here (the host is this machine) and through the thread itself: the
        // process runs a binary whose file is gone.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe.to_string_lossy(), deleted);
        let exe = remote
            .task()
            .readlinkat(None, &b"/proc/self/exe"[..])
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&exe), deleted);
        assert!(binary.symlink_metadata().is_err(), "{binary:?} exists");
        // What stays, by design, until the thread ends: the remote directory with the
        // forward's `data` socket (connections to the thread are made through it), and
        // nothing else.
        let mut left: Vec<String> = std::fs::read_dir(&dirs.remote)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["data"], "in {:?}", dirs.remote);
        use std::os::unix::fs::FileTypeExt;
        let data = std::fs::symlink_metadata(dirs.remote.join("data")).unwrap();
        assert!(data.file_type().is_socket());
        // Channels still work through it.
        let (ours, theirs) = remote.open_channels(1).await.unwrap().pop().unwrap();
        theirs.close().await.unwrap();
        // ssh ends only once every forwarded connection is closed, ours included.
        drop(ours);
        remote.exit(0).await.unwrap();
        drop(remote);
        let state = within(LIMIT, "ssh exit", ssh.wait()).await.unwrap();
        assert_eq!(state, ChildState::Exited(0));
        dirs
    });
    dirs.assert_gone_within(GONE, "after the thread exited");
}

#[test]
fn dropping_the_thread_and_ssh_without_waiting_leaves_nothing() {
    let _g = serial();
    let env = SshEnv::new();
    let target = env.proxy_host();
    let host = SshHost::new(target.destination()).config_file(target.config_file());
    warm_up(&host);
    let base = baseline();
    for ssh_first in [true, false] {
        let what = if ssh_first {
            "ssh's process dropped, then the thread"
        } else {
            "the thread dropped, then ssh's process"
        };
        let (dirs, ssh_pid, pids) = run(async {
            let (ssh, remote) = within(LIMIT, "connect", host.connect(&local_thread()))
                .await
                .unwrap();
            let ssh_pid = ssh.pid().as_raw();
            let dirs = ConnDirs::of_ssh(ssh_pid).expect("ssh's -L argument");
            // A thread in use: a child cloned there, a channel, a pipe with a read pending
            // on the child that is dropped with it.
            let rpid = remote.task().getpid().await.unwrap().as_raw();
            let child = remote.clone(rsyscall::CLONE::empty()).await.unwrap();
            let cpid = child.task().getpid().await.unwrap().as_raw();
            let (local, theirs) = remote.open_channels(1).await.unwrap().pop().unwrap();
            let pipe = child.pipe().await.unwrap();
            let pending = child.task().read_bytes(&pipe.read, 1);
            assert!(
                futures_lite::future::poll_once(Box::pin(pending))
                    .await
                    .is_none(),
                "the read is pending"
            );
            if ssh_first {
                drop(ssh);
                drop((pipe, theirs, child, remote));
            } else {
                drop((pipe, theirs, child, remote));
                drop(ssh);
            }
            drop(local);
            (dirs, ssh_pid, [rpid, cpid])
        });
        // Bounded: ssh ends on its own (nothing waits for it but the library), the remote
        // side with it, and both directories (with their sockets) go.
        dirs.assert_gone_within(GONE, what);
        let start = Instant::now();
        while alive(ssh_pid) || pids.iter().any(|&p| alive(p)) {
            assert!(
                start.elapsed() < GONE,
                "{what}: ssh {ssh_pid} or the remote processes {pids:?} still run"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // ssh was reaped by the library: not left a zombie child of ours.
        while rsyscall_tests::procs::children()
            .iter()
            .any(|c| c.pid == ssh_pid)
        {
            assert!(start.elapsed() < GONE, "{what}: ssh {ssh_pid} not reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_back_to(&base, what);
    }
}
