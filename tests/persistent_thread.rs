//! Persistent threads (`Thread::clone_persistent`, `PersistentThread`): the operations every
//! thread kind goes through (`rsyscall_tests::exercise`), made and attached, before and after
//! reconnects, with the typed errors of what they do not support; the original's
//! scenarios (reconnect then exit, exit without reconnect, a clone from a persistent
//! thread, `unshare(FILES)`), surviving or not the creator's `SIGKILL`, attaching from
//! another program, reclaiming the socket file a thread killed with its creator left (and
//! nothing else), and bad input (a path too long for `sun_path`, no server, a busy one).
//!
//! The cross-program tests re-run this test binary in a "child mode" chosen by the
//! `RSYSCALL_PERSISTENT_MODE` variable (the `child_mode` test does the work there, and is a
//! no-op in a normal run). A scenario process is a child subreaper, so the persistent thread
//! orphaned by its creator's death comes back to it and is reaped there, not left to init.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use rsyscall::{
    CLONE, ChildState, Error, FileDescriptor, O, PersistentError, PersistentThread, Signal, Thread,
    local_thread, near,
};
use rsyscall_tests::errors::serial;
use rsyscall_tests::exercise::{exercise, exercise_in_place};
use rsyscall_tests::procs::open_fds;
use rsyscall_tests::tasks::{poll_now, run};
use rsyscall_tests::tmp::TempDir;

const MODE_ENV: &str = "RSYSCALL_PERSISTENT_MODE";
const PATH_ENV: &str = "RSYSCALL_PERSISTENT_PATH";
const PID_ENV: &str = "RSYSCALL_PERSISTENT_PID";
const MARK_ENV: &str = "RSYSCALL_PERSISTENT_MARK";
/// How long a bounded wait for a process or file to go lasts.
const DEADLINE: Duration = Duration::from_secs(20);

/// Whether process `pid` exists (zombie or not).
fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (bounded) until `cond` holds; returns whether it did.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Writes through a pipe made in `thread` and reads it back: a syscall round trip that
/// moves memory both ways.
async fn pipe_round_trip(thread: &Thread, data: &[u8]) {
    let pipe = thread.pipe().await.unwrap();
    thread
        .task()
        .write_all_bytes(&pipe.write, data)
        .await
        .unwrap();
    let back = thread
        .task()
        .read_bytes(&pipe.read, data.len())
        .await
        .unwrap();
    assert_eq!(back, data);
}

/// One whole life of a persistent thread (with a failed attach), so that what the library
/// opens once per process (its service and reaper threads' fds, the reactor) is open
/// before a test counts fds.
fn warm_up(dir: &TempDir) {
    let path = dir.join("warm-up");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        p.reconnect(&local).await.unwrap();
        let _ = PersistentThread::attach(&local, dir.join("nothing")).await;
        p.exit(0).await.unwrap().unwrap().wait().await.unwrap();
    });
}

/// Issue 8 section 1's operations, run on a persistent thread as on every thread kind
/// (`rsyscall_tests::exercise`): syscalls and memory, fd passing, channels and async I/O,
/// clone and nested clone, exec from its children with their output captured. Before any
/// reconnect, after one through the local thread and after one through a clone child. And
/// what it documents as unsupported, a root epoller, is refused with a typed error that
/// leaves it working.
#[test]
fn a_persistent_thread_does_what_every_thread_does() {
    let _g = serial();
    let dir = TempDir::new("persist-exercise");
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        exercise(&p, "persistent").await;
        p.reconnect(&local).await.unwrap();
        exercise(&p, "persistent, reconnected").await;
        let via = local.clone(CLONE::empty()).await.unwrap();
        p.reconnect(&via).await.unwrap();
        exercise(&p, "persistent, reconnected through a child").await;
        via.exit(0).await.unwrap().wait().await.unwrap();
        // Its syscall socket changes at each reconnect: no root epoller.
        let e = p.make_root_epoller().await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        assert!(e.to_string().contains("no syscall socket"), "{e}");
        exercise_in_place(&p, "persistent, root epoller refused").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists(), "the socket file was left behind");
}

/// A persistent thread attached to (here from the program that made it, once its own
/// value is gone) does everything that needs no clone, before and after a reconnect;
/// clone, documented as refused for an attached thread, is a typed error.
#[test]
fn an_attached_persistent_thread_does_all_but_clone() {
    let _g = serial();
    let dir = TempDir::new("persist-attached-exercise");
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let (pid, _kill) = left_by_its_creator(&path).await;
        let a = PersistentThread::attach(&local, &path).await.unwrap();
        exercise_in_place(&a, "attached").await;
        let e = a.clone(CLONE::empty()).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        assert!(e.to_string().contains("are unknown"), "{e}");
        a.reconnect(&local).await.unwrap();
        exercise_in_place(&a, "attached, reconnected").await;
        let e = a.make_root_epoller().await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        assert_eq!(a.exit(0).await.unwrap().map(|_| ()), None);
        assert!(eventually(|| !exists(pid)), "the thread did not end");
    });
    assert!(!path.exists(), "the socket file was left behind");
}

#[test]
fn reconnect_then_exit() {
    let _g = serial();
    let dir = TempDir::new("persist-reconnect");
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        let pid = p.task().getpid().await.unwrap();
        assert_eq!(Some(pid), p.local_pid());
        assert!(path.exists());
        // An fd made before the reconnect stays valid after it: same table.
        let pipe = p.pipe().await.unwrap();
        p.reconnect(&local).await.unwrap();
        assert_eq!(p.task().getpid().await.unwrap(), pid);
        p.task()
            .write_all_bytes(&pipe.write, b"kept")
            .await
            .unwrap();
        assert_eq!(p.task().read_bytes(&pipe.read, 4).await.unwrap(), b"kept");
        // And again, with a syscall racing the reconnect: it waits for the new connection.
        let (r, got) = futures_lite::future::zip(p.reconnect(&local), p.task().getpid()).await;
        r.unwrap();
        assert_eq!(got.unwrap(), pid);
        pipe_round_trip(&p, b"after two reconnects").await;
        drop(pipe);
        let monitor = p
            .exit(3)
            .await
            .unwrap()
            .expect("the creator gets the monitor");
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(3));
    });
    assert!(!path.exists(), "the socket file was left behind");
}

#[test]
fn exit_without_reconnect() {
    let _g = serial();
    let dir = TempDir::new("persist-exit");
    let path = dir.join("sock");
    run(async {
        let p = local_thread().clone_persistent(&path).await.unwrap();
        pipe_round_trip(&p, b"hello").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists());
}

#[test]
fn clone_from_persistent_then_exit() {
    let _g = serial();
    let dir = TempDir::new("persist-clone");
    let path = dir.join("sock");
    run(async {
        let p = local_thread().clone_persistent(&path).await.unwrap();
        let child = p.clone(CLONE::empty()).await.unwrap();
        let child_pid = child.task().getpid().await.unwrap();
        assert_ne!(child_pid, p.task().getpid().await.unwrap());
        pipe_round_trip(&child, b"grandchild").await;
        let cm = child.exit(7).await.unwrap();
        assert_eq!(cm.wait().await.unwrap(), ChildState::Exited(7));
        // The persistent thread is untouched, and reconnects as before.
        p.reconnect(&local_thread()).await.unwrap();
        pipe_round_trip(&p, b"still here").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists());
}

#[test]
fn unshare_files_then_exit() {
    let _g = serial();
    let dir = TempDir::new("persist-unshare");
    let path = dir.join("sock");
    run(async {
        let p = local_thread().clone_persistent(&path).await.unwrap();
        p.unshare(CLONE::FILES).await.unwrap();
        pipe_round_trip(&p, b"new table").await;
        // The listening socket and the served socket survived the close-on-exec sweep: a
        // reconnect still works.
        p.reconnect(&local_thread()).await.unwrap();
        pipe_round_trip(&p, b"reconnected").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists());
}

#[test]
fn dropping_kills_it_and_removes_the_socket() {
    let _g = serial();
    let dir = TempDir::new("persist-drop");
    let path = dir.join("sock");
    let pid = run(async {
        let p = local_thread().clone_persistent(&path).await.unwrap();
        let pid = p.local_pid().unwrap().as_raw();
        drop(p);
        pid
    });
    assert!(
        eventually(|| !exists(pid)),
        "the dropped thread {pid} still exists"
    );
    assert!(
        eventually(|| !path.exists()),
        "the socket file was left behind"
    );
}

#[test]
fn socket_path_longer_than_sun_path() {
    let _g = serial();
    let dir = TempDir::new("persist-long");
    let mut long = dir.path().to_owned();
    while long.as_os_str().len() < 200 {
        long.push("a-rather-long-directory-name");
    }
    std::fs::create_dir_all(&long).unwrap();
    let path = long.join("sock");
    assert!(path.as_os_str().len() > 108);
    warm_up(&dir);
    let fds_before = open_fds();
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        assert!(path.exists());
        p.reconnect(&local).await.unwrap();
        pipe_round_trip(&p, b"long path").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists());
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

#[test]
fn no_server_is_a_typed_error() {
    let _g = serial();
    let dir = TempDir::new("persist-noserver");
    warm_up(&dir);
    let fds_before = open_fds();
    run(async {
        let local = local_thread();
        // Nothing at all there.
        let missing = dir.join("missing");
        let e = PersistentThread::attach(&local, &missing)
            .await
            .unwrap_err();
        assert!(matches!(e, PersistentError::NoServer { .. }), "{e:?}");
        assert!(e.to_string().contains("make a new thread"), "{e}");
        // A stale socket file: bound once, nobody listening any more.
        let stale = dir.join("stale");
        drop(UnixListener::bind(&stale).unwrap());
        let e = PersistentThread::attach(&local, &stale).await.unwrap_err();
        assert!(matches!(e, PersistentError::NoServer { .. }), "{e:?}");
        // Attaching only reads: the file stays (a clone_persistent there reclaims it).
        assert!(stale.exists());
        // A regular file.
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let e = PersistentThread::attach(&local, &file).await.unwrap_err();
        assert!(matches!(e, PersistentError::NoServer { .. }), "{e:?}");
    });
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

#[test]
fn reconnect_to_a_dead_thread_fails_and_later_calls_hang_up() {
    let _g = serial();
    let dir = TempDir::new("persist-dead");
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        let pid = p.local_pid().unwrap();
        // Kill it behind the library's back, and wait until it is dead (a zombie, or
        // gone): a process still being torn down may accept one more connection on its
        // listening socket, and close it.
        local
            .task()
            .kill(pid, rsyscall::Signal::SIGKILL)
            .await
            .unwrap();
        let stat = format!("/proc/{}/stat", pid.as_raw());
        assert!(
            eventually(|| std::fs::read_to_string(&stat).map_or(true, |s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })),
            "pid {} did not die",
            pid.as_raw()
        );
        let e = p.reconnect(&local).await.unwrap_err();
        assert!(matches!(e, PersistentError::NoServer { .. }), "{e:?}");
        let e = p.task().getpid().await.unwrap_err();
        assert!(e.is_hangup(), "{e:?}");
        assert!(p.is_dead());
        // The socket file is ours to remove now; dropping does it.
        drop(p);
    });
    assert!(eventually(|| !path.exists()));
}

#[test]
fn attach_to_a_busy_server_times_out() {
    let _g = serial();
    let dir = TempDir::new("persist-busy");
    let path = dir.join("sock");
    warm_up(&dir);
    let fds_before = open_fds();
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        // Our own connection is alive: the server serves us, so an attach is not answered.
        let e = PersistentThread::attach(&local, &path).await.unwrap_err();
        assert!(matches!(e, PersistentError::Busy { .. }), "{e:?}");
        assert!(e.to_string().contains("serving another client"), "{e}");
        // The refused attach did not disturb the thread, and a reconnect works (the server
        // drops the abandoned attach when it gets to it).
        pipe_round_trip(&p, b"undisturbed").await;
        p.reconnect(&local).await.unwrap();
        pipe_round_trip(&p, b"reconnected").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists());
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

// ---- Across programs ----

/// Runs this test binary in child mode `mode` with `envs`, stdout piped.
fn spawn_mode(mode: &str, envs: &[(&str, String)]) -> std::process::Child {
    let mut cmd = StdCommand::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_mode", "--nocapture", "--test-threads=1"])
        .env(MODE_ENV, mode)
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The value of the first `KEY=value` line of a child's stdout with this key.
fn read_value(child: &mut std::process::Child, key: &str) -> String {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let prefix = format!("{key}=");
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("child ended without printing {key}"))
            .unwrap();
        // libtest may print "test child_mode ... " before it on the same line.
        if let Some(v) = line.find(&prefix).map(|i| &line[i + prefix.len()..]) {
            // Keep reading in the background so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return v.to_owned();
        }
    }
}

/// Waits (bounded) for child `pid` of ours to end, and reaps it; returns its wait status.
fn reap(pid: i32) -> i32 {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert!(
            r == 0,
            "waitpid({pid}): {}",
            std::io::Error::last_os_error()
        );
        assert!(start.elapsed() < DEADLINE, "{pid} did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reaps (bounded) every remaining child of this process.
fn reap_all() {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only `status`.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r < 0 {
            return; // ECHILD: none left
        }
        if r == 0 {
            assert!(start.elapsed() < DEADLINE, "children did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The child modes. `creator`: makes a persistent thread at `$PATH` (made persistent if
/// `$MARK` is set), prints its pid and waits to be killed. `attacher`: attaches to `$PATH`,
/// checks it reached pid `$PID` with environment `$MARK`, makes syscalls, exits it.
/// `survive`, `die` and `reclaim`: the scenarios, as subreapers.
#[test]
fn child_mode() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    let path = std::env::var(PATH_ENV).map(PathBuf::from);
    match mode.as_str() {
        "creator" => run(async {
            let p = local_thread()
                .clone_persistent(path.unwrap())
                .await
                .unwrap();
            if std::env::var(MARK_ENV).is_ok() {
                p.make_persistent().await.unwrap();
            }
            println!("PID={}", p.local_pid().unwrap().as_raw());
            // Wait to be killed.
            async_io::Timer::after(Duration::from_secs(60)).await;
            panic!("the creator was not killed");
        }),
        "attacher" => run(async {
            let local = local_thread();
            let p = PersistentThread::attach(&local, path.unwrap())
                .await
                .unwrap();
            let pid: i32 = std::env::var(PID_ENV).unwrap().parse().unwrap();
            assert_eq!(p.task().getpid().await.unwrap().as_raw(), pid);
            assert_eq!(p.local_pid().map(|p| p.as_raw()), Some(pid));
            assert_ne!(pid as u32, std::process::id());
            // Its environment is the creator's.
            assert_eq!(
                p.environ().get(MARK_ENV).map(|v| v.into_string().unwrap()),
                std::env::var(MARK_ENV).ok()
            );
            // Memory moves in-band: a pipe round trip, and an fd passed to us.
            pipe_round_trip(&p, b"from another program").await;
            let ours = local.pipe().await.unwrap();
            let theirs = p.pass_fd(&ours.write).await.unwrap();
            p.task().write_all_bytes(&theirs, b"passed").await.unwrap();
            assert_eq!(
                local.task().read_bytes(&ours.read, 6).await.unwrap(),
                b"passed"
            );
            // Its server code's addresses are in the creating program's memory, unknown
            // here: clone is refused.
            let e = p.clone(CLONE::empty()).await.unwrap_err();
            assert!(e.to_string().contains("are unknown"), "{e}");
            assert!(p.exit(0).await.unwrap().is_none());
            println!("ATTACHED=ok");
        }),
        "survive" | "die" => scenario(mode == "survive"),
        "reclaim" => reclaim_scenario(),
        other => panic!("unknown mode {other}"),
    }
}

/// A creator makes a persistent thread (made persistent or not), is `SIGKILL`ed; then the
/// thread is attached to and exited from a third program, or is seen dead.
fn scenario(make_persistent: bool) {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) changes only this process's attribute.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0);
    let dir = TempDir::new("persist-scenario");
    let path = dir.join("sock");
    let mut envs = vec![(PATH_ENV, path.to_str().unwrap().to_owned())];
    if make_persistent {
        envs.push((MARK_ENV, "marked".to_owned()));
    }
    let mut creator = spawn_mode("creator", &envs);
    let pid: i32 = read_value(&mut creator, "PID").parse().unwrap();
    let _kill = KillOnDrop(pid);
    assert!(exists(pid));
    creator.kill().unwrap();
    creator.wait().unwrap();
    if make_persistent {
        envs.push((PID_ENV, pid.to_string()));
        let mut attacher = spawn_mode("attacher", &envs);
        assert_eq!(read_value(&mut attacher, "ATTACHED"), "ok");
        assert!(attacher.wait().unwrap().success());
        // Orphaned to us: it exited with 0.
        let status = reap(pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
        assert!(!path.exists(), "the socket file was left behind");
    } else {
        // Killed with its creator (its parent-death signal).
        let status = reap(pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{status:#x}"
        );
        // Its socket file is left behind, and says so when attached to.
        assert!(path.exists());
        let e = run(PersistentThread::attach(&local_thread(), &path)).unwrap_err();
        assert!(matches!(e, PersistentError::NoServer { .. }), "{e:?}");
    }
    reap_all();
    println!("SCENARIO=ok");
}

/// A creator makes a persistent thread at `path`, not made persistent, and is `SIGKILL`ed;
/// the thread dies with it (its parent-death signal) and is reaped here (we are its
/// subreaper). Returns its pid.
fn killed_with_its_creator(path: &Path) -> i32 {
    let envs = [(PATH_ENV, path.to_str().unwrap().to_owned())];
    let mut creator = spawn_mode("creator", &envs);
    let pid: i32 = read_value(&mut creator, "PID").parse().unwrap();
    let _kill = KillOnDrop(pid);
    assert!(exists(pid));
    creator.kill().unwrap();
    creator.wait().unwrap();
    let status = reap(pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "{status:#x}"
    );
    // Other processes of the dead creator (its clone children, their futex helpers) may
    // hold a copy of the listening socket for a moment longer: the socket is stale only
    // once nothing listens any more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => break,
            _ if std::time::Instant::now() >= deadline => {
                panic!("something still listens at {path:?} 10 s after its creator died")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    pid
}

/// The socket file a thread killed with its creator left behind is reclaimed by the next
/// `clone_persistent` at its path: the new thread works, and its exit removes the file.
fn reclaim_scenario() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) changes only this process's attribute.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0);
    let dir = TempDir::new("persist-reclaim");
    let path = dir.join("sock");
    let dead = killed_with_its_creator(&path);
    assert!(is_socket(&path), "no socket file was left behind");
    run(async {
        let local = local_thread();
        // Attaching only reads: it fails and leaves the file alone.
        let e = PersistentThread::attach(&local, &path).await.unwrap_err();
        assert!(matches!(e, PersistentError::NoServer { .. }), "{e:?}");
        assert!(is_socket(&path));
        let p = local
            .clone_persistent(&path)
            .await
            .expect("the stale socket file was not reclaimed");
        // And its error said the next clone_persistent would.
        assert!(e.to_string().contains("reclaims"), "{e}");
        assert_ne!(p.task().getpid().await.unwrap().as_raw(), dead);
        pipe_round_trip(&p, b"reclaimed").await;
        // It listens there: a reconnect goes through the path.
        p.reconnect(&local).await.unwrap();
        pipe_round_trip(&p, b"reconnected").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists(), "the socket file was left behind");
    reap_all();
    println!("SCENARIO=ok");
}

/// Whether `path` is a unix socket file (not following a symlink).
fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// SIGKILLs a process when dropped (a failing scenario must not leave a persistent thread
/// behind); harmless once it is reaped, as its pid is then not ours to reuse before the
/// scenario process ends... so it is only sent if the process is still there.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() && exists(self.0) {
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// Runs scenario `mode` in a process of its own; checks it succeeded.
fn run_scenario(mode: &str) {
    let mut s = spawn_mode(mode, &[]);
    assert_eq!(read_value(&mut s, "SCENARIO"), "ok");
    let status = s.wait().unwrap();
    assert!(status.success(), "scenario {mode}: {status}");
}

#[test]
fn made_persistent_survives_creator_sigkill_and_is_attached_from_another_program() {
    let _g = serial();
    run_scenario("survive");
}

#[test]
fn not_made_persistent_dies_with_its_creator() {
    let _g = serial();
    run_scenario("die");
}

#[test]
fn a_socket_left_by_a_thread_killed_with_its_creator_is_reclaimed() {
    let _g = serial();
    run_scenario("reclaim");
}

/// `clone_persistent(path)` fails with `EADDRINUSE`.
async fn refused_in_use(local: &Thread, path: &Path) {
    let e = local.clone_persistent(path).await.unwrap_err();
    assert_eq!(e.errno(), Some(rsyscall::Errno::EADDRINUSE), "{e:?}");
}

#[test]
fn a_live_server_is_not_reclaimed() {
    let _g = serial();
    let dir = TempDir::new("persist-live");
    warm_up(&dir);
    let fds_before = open_fds();
    let path = dir.join("sock");
    let listener_path = dir.join("listener");
    let full_path = dir.join("full");
    run(async {
        let local = local_thread();
        // Another persistent thread, serving us.
        let live = local.clone_persistent(&path).await.unwrap();
        refused_in_use(&local, &path).await;
        // It is untouched: it works, and reconnects through its path (its server drops
        // the probe left in its queue when it gets to it).
        pipe_round_trip(&live, b"still live").await;
        live.reconnect(&local).await.unwrap();
        pipe_round_trip(&live, b"reconnected").await;
        // Any listening socket, with room in its queue: the probe is queued there.
        let listener = UnixListener::bind(&listener_path).unwrap();
        refused_in_use(&local, &listener_path).await;
        assert!(is_socket(&listener_path));
        // The check's connection was queued there (bounded wait: before the fix there is
        // none), and closed without a byte.
        listener.set_nonblocking(true).unwrap();
        let mut accepted = None;
        assert!(
            eventually(|| {
                accepted = listener.accept().ok();
                accepted.is_some()
            }),
            "no probe connection was queued"
        );
        let (mut probe, _) = accepted.unwrap();
        probe.set_nonblocking(false).unwrap();
        probe.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut probe, &mut buf).unwrap();
        assert!(buf.is_empty(), "the probe sent {buf:?}");
        // A listening socket whose queue is full: connect says EAGAIN, not ECONNREFUSED.
        let full = UnixListener::bind(&full_path).unwrap();
        // SAFETY: listen on a socket we own; takes no pointers.
        let r = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&full), 0) };
        assert_eq!(r, 0);
        let _queued = std::os::unix::net::UnixStream::connect(&full_path).unwrap();
        refused_in_use(&local, &full_path).await;
        assert!(is_socket(&full_path));
        drop((listener, full, probe));
        let monitor = live.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists());
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

#[test]
fn a_regular_file_or_directory_is_not_reclaimed() {
    let _g = serial();
    let dir = TempDir::new("persist-file");
    warm_up(&dir);
    let fds_before = open_fds();
    let file = dir.join("file");
    std::fs::write(&file, b"precious").unwrap();
    let subdir = dir.join("subdir");
    std::fs::create_dir(&subdir).unwrap();
    // A symlink to a stale socket: the link is not a socket, and is not followed.
    let stale = dir.join("stale");
    drop(UnixListener::bind(&stale).unwrap());
    let link = dir.join("link");
    std::os::unix::fs::symlink(&stale, &link).unwrap();
    run(async {
        let local = local_thread();
        refused_in_use(&local, &file).await;
        refused_in_use(&local, &subdir).await;
        refused_in_use(&local, &link).await;
    });
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    assert!(subdir.is_dir());
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(is_socket(&stale));
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

#[test]
fn a_stale_socket_at_a_path_longer_than_sun_path_is_reclaimed() {
    let _g = serial();
    let dir = TempDir::new("persist-stale-long");
    let mut long = dir.path().to_owned();
    while long.as_os_str().len() < 200 {
        long.push("a-rather-long-directory-name");
    }
    std::fs::create_dir_all(&long).unwrap();
    let path = long.join("sock");
    assert!(path.as_os_str().len() > 108);
    // A stale socket there: bound at a short path, closed, and moved (a unix socket is
    // reached through its inode, whatever its name).
    let short = dir.join("s");
    drop(UnixListener::bind(&short).unwrap());
    std::fs::rename(&short, &path).unwrap();
    assert!(is_socket(&path));
    warm_up(&dir);
    let fds_before = open_fds();
    run(async {
        let local = local_thread();
        let p = local
            .clone_persistent(&path)
            .await
            .expect("the stale socket file was not reclaimed");
        pipe_round_trip(&p, b"reclaimed at a long path").await;
        p.reconnect(&local).await.unwrap();
        pipe_round_trip(&p, b"reconnected").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
    assert!(!path.exists());
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

#[test]
fn reconnect_through_itself_is_refused() {
    let _g = serial();
    let dir = TempDir::new("persist-self");
    let path = dir.join("sock");
    run(async {
        let p = local_thread().clone_persistent(&path).await.unwrap();
        let e = p.reconnect(&p).await.unwrap_err();
        assert!(e.to_string().contains("through itself"), "{e}");
        // Refused before disconnecting: it still works.
        pipe_round_trip(&p, b"still connected").await;
        p.exit(0).await.unwrap().unwrap().wait().await.unwrap();
    });
}

/// Polls `fut` up to `n` times, letting the reactor run in between; drops it if it has not
/// completed.
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
fn dropping_clone_persistent_at_any_point_leaves_nothing() {
    let _g = serial();
    let dir = TempDir::new("persist-cancel-clone");
    warm_up(&dir);
    let fds_before = open_fds();
    let path = dir.join("sock");
    for n in 0..200 {
        let done = run(async {
            let local = local_thread();
            match poll_then_drop(local.clone_persistent(&path), n).await {
                Some(p) => {
                    p.unwrap()
                        .exit(0)
                        .await
                        .unwrap()
                        .unwrap()
                        .wait()
                        .await
                        .unwrap();
                    true
                }
                None => false,
            }
        });
        assert!(
            eventually(|| !path.exists()),
            "dropped after {n} polls: the socket file was left behind"
        );
        assert!(
            eventually(|| rsyscall_tests::procs::children().is_empty()),
            "dropped after {n} polls: children left: {:?}",
            rsyscall_tests::procs::children()
        );
        if done {
            // Dropped at every earlier point: some of them inside the clone.
            // How many polls it takes depends on scheduling (answers that are already
            // there are read within the same poll); at least the first one must wait.
            assert!(n >= 1, "clone_persistent completed without waiting");
            eprintln!("clone_persistent completed after {n} polls");
            break;
        }
        assert!(n < 199, "clone_persistent never completed");
    }
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

#[test]
fn dropping_reconnect_at_any_point_leaves_it_reconnectable() {
    let _g = serial();
    let dir = TempDir::new("persist-cancel-reconnect");
    warm_up(&dir);
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        // Through a child thread: its socket and connect go over its connection, so the
        // reconnect is pending at many points.
        let via = local.clone(CLONE::empty()).await.unwrap();
        let fds_before = open_fds();
        for n in 0..200 {
            let done = poll_then_drop(p.reconnect(&via), n).await.is_some();
            // Whatever the dropped reconnect left, a full one works.
            p.reconnect(&via).await.unwrap();
            pipe_round_trip(&p, b"after a dropped reconnect").await;
            if done {
                // How many polls it takes depends on scheduling (answers already there are
                // read within the same poll); at least the first one must wait.
                assert!(n >= 1, "reconnect completed without waiting");
                eprintln!("reconnect completed after {n} polls");
                break;
            }
            assert!(n < 199, "reconnect never completed");
        }
        assert!(
            eventually(|| open_fds() <= fds_before),
            "fds leaked: {} before, {} after",
            fds_before,
            open_fds()
        );
        via.exit(0).await.unwrap().wait().await.unwrap();
        p.exit(0).await.unwrap().unwrap().wait().await.unwrap();
    });
    assert!(!path.exists());
}

#[test]
fn calls_wait_while_disconnected_and_the_next_reconnect_serves_them() {
    let _g = serial();
    let dir = TempDir::new("persist-wait");
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        let pid = p.task().getpid().await.unwrap();
        // A client that connects first and says nothing: the server takes it once we hang
        // up, and waits for its handshake, so our reconnect is not answered.
        let squatter = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let e = p.reconnect(&local).await.unwrap_err();
        assert!(matches!(e, PersistentError::Busy { .. }), "{e:?}");
        // Disconnected: a call waits (it is still pending after a while; dropping it,
        // as here, cancels it before anything is sent).
        assert!(
            poll_then_drop(p.task().getpid(), 50).await.is_none(),
            "a call completed with no connection"
        );
        // A call that waits is served by the next reconnect.
        drop(squatter);
        let (r, got) = futures_lite::future::zip(
            async {
                // Let the call start waiting first.
                async_io::Timer::after(Duration::from_millis(20)).await;
                p.reconnect(&local).await
            },
            p.task().getpid(),
        )
        .await;
        r.unwrap();
        assert_eq!(got.unwrap(), pid);
        p.exit(0).await.unwrap().unwrap().wait().await.unwrap();
    });
    assert!(!path.exists());
}

#[test]
fn make_persistent_clears_the_death_signal_and_starts_a_session() {
    let _g = serial();
    let dir = TempDir::new("persist-make");
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        assert_eq!(
            p.task().get_pdeathsig().await.unwrap(),
            Some(rsyscall::Signal::SIGKILL)
        );
        p.make_persistent().await.unwrap();
        let pid = p.task().getpid().await.unwrap();
        assert_eq!(p.task().get_pdeathsig().await.unwrap(), None);
        // Its own process group (and session: setsid makes both).
        assert_eq!(p.task().getpgid(pid).await.unwrap(), pid);
        // Still reconnectable from here, and its creator still gets its monitor.
        p.reconnect(&local).await.unwrap();
        pipe_round_trip(&p, b"persistent").await;
        let monitor = p
            .exit(5)
            .await
            .unwrap()
            .expect("the creator keeps the monitor");
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(5));
    });
    assert!(!path.exists());
}

/// A fake server at `path` that accepts one connection, reads the count and the fd
/// message's byte, and then answers `reply` and hangs up.
fn fake_server(path: &Path, reply: Vec<u8>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        // The count and the one-byte payload (its fds are closed by the kernel).
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        let _ = conn.write_all(&reply);
    })
}

#[test]
fn a_peer_that_breaks_the_handshake_is_a_typed_error() {
    let _g = serial();
    let dir = TempDir::new("persist-fake");
    warm_up(&dir);
    let fds_before = open_fds();
    run(async {
        let local = local_thread();
        // Hangs up without answering.
        let path = dir.join("mute");
        let server = fake_server(&path, Vec::new());
        let e = PersistentThread::attach(&local, &path).await.unwrap_err();
        assert!(matches!(e, PersistentError::Handshake { .. }), "{e:?}");
        assert!(
            e.to_string().contains("not a persistent rsyscall server"),
            "{e}"
        );
        // And what to do about it.
        assert!(
            e.to_string().contains("check that") && e.to_string().contains("clone_persistent"),
            "{e}"
        );
        server.join().unwrap();
        // Answers negative fd numbers.
        let path = dir.join("liar");
        let server = fake_server(
            &path,
            [(-1i32).to_le_bytes(), (-5i32).to_le_bytes()].concat(),
        );
        let e = PersistentThread::attach(&local, &path).await.unwrap_err();
        assert!(matches!(e, PersistentError::Handshake { .. }), "{e:?}");
        assert!(e.to_string().contains("check that"), "{e}");
        server.join().unwrap();
    });
    assert!(
        eventually(|| open_fds() <= fds_before),
        "fds leaked: {} before, {} after",
        fds_before,
        open_fds()
    );
}

/// Makes a persistent thread at `path`, made persistent, and drops the creator's value:
/// its connection (and its fd-passing socket's peer) go with it, as when its program
/// ends. Returns the thread's pid (it is still our child: its monitor reaps it once it
/// exits) and a guard that kills it if the test fails.
async fn left_by_its_creator(path: &Path) -> (i32, KillOnDrop) {
    let p = local_thread().clone_persistent(path).await.unwrap();
    p.make_persistent().await.unwrap();
    let pid = p.local_pid().unwrap().as_raw();
    let guard = KillOnDrop(pid);
    drop(p);
    (pid, guard)
}

/// Attaches to the thread at `path` (pid `pid`), checks a round trip of `data` and ends
/// it; waits (bounded) for it to be gone.
async fn exit_attached(path: &Path, pid: i32, data: &[u8]) {
    let p = PersistentThread::attach(&local_thread(), path)
        .await
        .unwrap();
    pipe_round_trip(&p, data).await;
    assert_eq!(p.exit(0).await.unwrap().map(|_| ()), None);
    assert!(eventually(|| !exists(pid)), "the thread did not end");
}

/// Attaches to the thread at `path` and returns how many fds its table holds once the
/// attach is up (after one more syscall, so that closes queued by the attach are sent),
/// then drops the attached value: its program is gone as far as the thread can tell.
async fn attach_and_count(path: &Path, pid: i32) -> usize {
    let p = PersistentThread::attach(&local_thread(), path)
        .await
        .unwrap();
    // The thread is in our pid namespace here.
    assert_eq!(p.task().getpid().await.unwrap().as_raw(), pid);
    rsyscall_tests::procs::open_fds_of(pid)
}

#[test]
fn attaching_again_and_again_leaves_no_fd_behind() {
    let _g = serial();
    let dir = TempDir::new("persist-reattach");
    let path = dir.join("sock");
    warm_up(&dir);
    run(async {
        let (pid, _kill) = left_by_its_creator(&path).await;
        let counts = [
            attach_and_count(&path, pid).await,
            attach_and_count(&path, pid).await,
            attach_and_count(&path, pid).await,
            attach_and_count(&path, pid).await,
        ];
        assert!(
            counts.windows(2).all(|w| w[0] == w[1]),
            "the thread's fd count grows with each attach: {counts:?}"
        );
        exit_attached(&path, pid, b"last attach").await;
    });
    assert!(!path.exists());
}

#[test]
fn an_attached_thread_keeps_its_listening_socket_through_cloexec_closing() {
    let _g = serial();
    let dir = TempDir::new("persist-attach-listen");
    let path = dir.join("sock");
    warm_up(&dir);
    run(async {
        let local = local_thread();
        let (pid, _kill) = left_by_its_creator(&path).await;
        // Attached under another spelling of the path: the listening socket is found by
        // the file it is bound to, not by its name.
        let respelled = dir.join(".").join("sock");
        let a = PersistentThread::attach(&local, &respelled).await.unwrap();
        // Closes every close-on-exec fd no handle names, except the server's own.
        a.do_cloexec_except(&[]).await.unwrap();
        drop(a);
        let b = PersistentThread::attach(&local, &path).await.unwrap();
        b.unshare_files(false).await.unwrap();
        drop(b);
        exit_attached(&path, pid, b"still listening").await;
    });
    assert!(!path.exists());
}

#[test]
fn an_attached_thread_in_another_pid_namespace_is_seen_dying() {
    let _g = serial();
    let dir = TempDir::new("persist-attach-pidns");
    let path = dir.join("sock");
    warm_up(&dir);
    run(async {
        let local = local_thread();
        // The init of a new pid namespace makes the thread there: its pid means nothing
        // in ours, so only a pidfd from the thread itself can watch it.
        let init = local.clone(CLONE::NEWPID).await.unwrap();
        let p = init.clone_persistent(&path).await.unwrap();
        assert_eq!(p.local_pid(), None);
        p.make_persistent().await.unwrap();
        drop(p);
        let a = PersistentThread::attach(&local, &path).await.unwrap();
        assert_eq!(a.local_pid(), None);
        // Copies of every socket of its table come here, among them the server's end of
        // its syscall socket: its death does not close that socket.
        let dir_fd = a
            .task()
            .open("/proc/self/fd", O::RDONLY | O::DIRECTORY, 0)
            .await
            .unwrap();
        let listed: Vec<i32> = dir_fd
            .getdents_all()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| std::str::from_utf8(&e.name).ok()?.parse().ok())
            .filter(|&n| n != dir_fd.near().as_raw())
            .collect();
        dir_fd.close().await.unwrap();
        let borrowed: Vec<FileDescriptor> = listed
            .iter()
            // SAFETY: each was just listed in the thread's table, and nothing closes or
            // replaces it while these handles live (they are only sent below).
            .map(|&n| unsafe { FileDescriptor::borrowed(a.task(), near::FileDescriptor::new(n)) })
            .collect();
        let (ours, theirs) = a.open_channels(1).await.unwrap().pop().unwrap();
        let refs: Vec<&FileDescriptor> = borrowed.iter().collect();
        a.task().send_fds(&theirs, &refs).await.unwrap();
        drop(refs);
        drop((borrowed, theirs));
        let local_task = rsyscall::Task::local();
        let ours = FileDescriptor::from_owned_fd(&local_task, ours).unwrap();
        let copies = local_task.recv_fds(&ours, listed.len()).await.unwrap();
        // The thread kills itself: no answer ever comes, and the socket stays open here.
        let own = a.task().getpid().await.unwrap();
        let killed = futures_lite::future::or(
            async { Some(a.task().kill(own, Signal::SIGKILL).await) },
            async {
                async_io::Timer::after(DEADLINE).await;
                None
            },
        )
        .await;
        let e = killed
            .expect("the call on a dead thread was not failed")
            .unwrap_err();
        assert!(e.is_hangup(), "{e:?}");
        drop((copies, ours));
        drop(a);
        drop(init);
    });
}

/// A `pipe()` dropped on a persistent thread after its answer was read but not taken:
/// the room of the two fds is freed through the persistent thread's own interface, whose
/// destructor reads it and schedules a flush (which once deadlocked on the interface's
/// lock). The pipes made so are closed, and the thread's table ends as it began.
#[test]
fn pipe_dropped_after_its_answer_on_a_persistent_thread() {
    let _g = serial();
    let dir = TempDir::new("persist-dropped-pipe");
    let path = dir.join("sock");
    run(async {
        let local = local_thread();
        let p = local.clone_persistent(&path).await.unwrap();
        let pid = p.task().pid().as_raw();
        let fds = || async {
            p.task().flush_closes().await.unwrap();
            rsyscall_tests::procs::open_fds_of(pid)
        };
        pipe_round_trip(&p, b"before").await;
        let baseline = fds().await;
        for _ in 0..60 {
            // A request in flight first, so that the pipe's requests queue behind it.
            let mut first = Box::pin(p.task().getpid());
            if poll_now(&mut first).is_ready() {
                // Answered at once: nothing to queue behind.
                continue;
            }
            let mut pipe = Box::pin(p.pipe());
            if poll_now(&mut pipe).is_ready() {
                first.await.unwrap();
                continue;
            }
            first.await.unwrap();
            p.task().getpid().await.unwrap();
            drop(pipe);
        }
        let mut now = fds().await;
        let deadline = Instant::now() + DEADLINE;
        while now > baseline && Instant::now() < deadline {
            async_io::Timer::after(Duration::from_millis(20)).await;
            now = fds().await;
        }
        assert!(now <= baseline, "{now} fds open, {baseline} before");
        pipe_round_trip(&p, b"after").await;
        let monitor = p.exit(0).await.unwrap().unwrap();
        assert_eq!(monitor.wait().await.unwrap(), ChildState::Exited(0));
    });
}
