//! Bad input and faults for ssh threads (issue 9 section 5): each failed connection gives an
//! [`Error::Ssh`] of the right [`SshFailure`] with ssh's stderr and a hint, within a bound,
//! and leaves nothing behind: no process of ours (ssh, ProxyCommand, remote script or
//! bootstrap), no directory of the attempt (local or remote), no fd. The hosts are this
//! machine (`rsyscall_tests::ssh`), so the remote side is checked here too.
//!
//! The tests count process-wide resources: they are serialized. The test process is a child
//! subreaper, so whatever a connection orphans comes to us and is counted.

use std::future::Future;
use std::sync::Once;
use std::time::{Duration, Instant};

use rsyscall::{CLONE, Signal, Thread, local_thread};
use rsyscall_handle::{ChildState, Error, SshFailure};
use rsyscall_tests::errors::serial;
use rsyscall_tests::procs::{open_fds, settled};
use rsyscall_tests::ssh::{SshEnv, SshTarget, output_within};
use rsyscall_tests::ssh_leaks::{
    LoggingSsh, alive, become_subreaper, live_descendants, reap_zombies_except,
};
use rsyscall_tests::tasks::run;
use rsyscall_tests::tmp::TempDir;
use rsyscall_thread::SshHost;

/// Bound on a connection attempt that is expected to fail or succeed promptly.
const ATTEMPT: Duration = Duration::from_secs(30);
/// Bound on what a failed or finished connection leaves to disappear.
const GONE: Duration = Duration::from_secs(10);

/// `fut`, failing the test if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    futures_lite::future::or(fut, async {
        async_io::Timer::after(limit).await;
        panic!("{what}: not done within {limit:?}");
    })
    .await
}

/// A host builder for `target`, run through `ssh`.
fn host_for(target: &SshTarget, ssh: &LoggingSsh) -> SshHost {
    SshHost::new(target.destination())
        .config_file(target.config_file())
        .program(ssh.path())
}

/// What a test process has before an attempt.
struct Baseline {
    fds: usize,
    descendants: Vec<i32>,
}

/// Warms up (once) everything a connection starts lazily (the reactor, the service
/// thread, the reaper), then takes the baseline.
fn baseline(env: &SshEnv) -> Baseline {
    static WARM: Once = Once::new();
    become_subreaper();
    WARM.call_once(|| {
        let t = env.proxy_host();
        run(async {
            let (ssh, remote) = SshHost::new(t.destination())
                .config_file(t.config_file())
                .connect(&local_thread())
                .await
                .expect("warm-up connect");
            remote.exit(0).await.unwrap();
            drop(remote);
            assert_eq!(ssh.wait().await.unwrap(), ChildState::Exited(0));
        });
    });
    run(async {
        settled(live_descendants_count).await;
        Baseline {
            fds: settled(open_fds).await,
            descendants: live_descendants(),
        }
    })
}

fn live_descendants_count() -> usize {
    live_descendants().len()
}

/// Checks that nothing of the attempts `ssh` logged is left (within [`GONE`]): their
/// directories and processes are gone, every ssh was reaped, our descendants and fds are
/// back to the baseline.
fn assert_clean(base: &Baseline, ssh: &LoggingSsh, what: &str) {
    let runs = ssh.runs();
    for (pid, dirs) in &runs {
        dirs.assert_gone_within(GONE, what);
        assert!(!alive(*pid), "{what}: ssh {pid} still runs");
    }
    assert_back_to(base, &runs.iter().map(|r| r.0).collect::<Vec<_>>(), what);
}

/// Our live descendants and fds back to `base` (within [`GONE`]); `ssh_pids` (children
/// the library reaps) must not be left as zombies.
fn assert_back_to(base: &Baseline, ssh_pids: &[i32], what: &str) {
    let start = Instant::now();
    loop {
        let extra: Vec<i32> = live_descendants()
            .into_iter()
            .filter(|p| !base.descendants.contains(p))
            .collect();
        if extra.is_empty() {
            break;
        }
        let described: Vec<_> = extra
            .iter()
            .map(|&p| (p, rsyscall_tests::ssh_leaks::cmdline(p)))
            .collect();
        assert!(
            start.elapsed() < GONE,
            "{what}: processes left: {described:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ssh was reaped by the library: not a zombie child of ours, and not ours at all.
    for &pid in ssh_pids {
        let start = Instant::now();
        while rsyscall_tests::procs::children()
            .iter()
            .any(|c| c.pid == pid)
        {
            assert!(start.elapsed() < GONE, "{what}: ssh {pid} was not reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    reap_zombies_except(ssh_pids);
    let fds = run(settled(open_fds));
    assert!(
        fds <= base.fds,
        "{what}: fds leaked: {} before, {fds} after",
        base.fds
    );
}

/// The parts of an [`Error::Ssh`]; panics on another result.
fn ssh_error<T>(
    r: rsyscall::Result<T>,
    what: &str,
) -> (SshFailure, Option<ChildState>, String, String) {
    match r {
        Err(Error::Ssh {
            kind,
            state,
            stderr,
            hint,
            ..
        }) => (kind, state, stderr, hint),
        Err(e) => panic!("{what}: expected Error::Ssh, got {e:?}"),
        Ok(_) => panic!("{what}: expected Error::Ssh, got a thread"),
    }
}

#[test]
fn authentication_refused() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    let host = host_for(&env.refused_host(), &ssh);
    let r = run(within(ATTEMPT, "connect", host.connect(&local_thread())));
    let (kind, state, stderr, hint) = ssh_error(r, "refused");
    assert_eq!(kind, SshFailure::AuthenticationRefused, "{stderr}");
    assert_eq!(state, Some(ChildState::Exited(255)));
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(hint.contains("identity"), "{hint}");
    assert_eq!(ssh.runs().len(), 1);
    assert_clean(&base, &ssh, "refused");
}

#[test]
fn silent_host_is_unreachable_within_its_connect_timeout() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    let host = host_for(&env.silent_host(2), &ssh).connect_timeout(Duration::from_secs(2));
    // ConnectTimeout is 2 s: ssh gives up then; 15 s bounds it with room for a busy machine.
    let r = run(within(
        Duration::from_secs(15),
        "connect to a silent host",
        host.connect(&local_thread()),
    ));
    let (kind, state, stderr, hint) = ssh_error(r, "silent");
    // "Connection timed out during banner exchange": the host did not answer within
    // ConnectTimeout, i.e. it could not be reached (TimedOut is our own bound on the
    // remote setup, after ssh connected).
    assert_eq!(kind, SshFailure::Unreachable, "{stderr}");
    assert_eq!(state, Some(ChildState::Exited(255)));
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(hint.contains("connect_timeout"), "{hint}");
    assert_clean(&base, &ssh, "silent");
}

#[test]
fn no_ssh_client() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let t = env.proxy_host();
    let host = SshHost::new(t.destination())
        .config_file(t.config_file())
        .program("/nonexistent/ssh");
    let r = run(within(ATTEMPT, "connect", host.connect(&local_thread())));
    let (kind, state, _, hint) = ssh_error(r, "/nonexistent/ssh");
    assert_eq!(kind, SshFailure::NoClient);
    assert_eq!(state, None);
    assert!(hint.contains("/nonexistent/ssh"), "{hint}");
    assert!(hint.contains("openssh-client"), "{hint}");

    // A thread whose PATH has no ssh.
    let empty = TempDir::new("no-ssh-path");
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.unwrap();
        let thread: Thread = child.duplicate();
        thread
            .environ()
            .set("PATH", empty.path().as_os_str())
            .unwrap();
        let host = SshHost::new(t.destination()).config_file(t.config_file());
        let r = within(ATTEMPT, "connect", host.connect(&thread)).await;
        let (kind, _, _, hint) = ssh_error(r, "PATH without ssh");
        assert_eq!(kind, SshFailure::NoClient);
        assert!(hint.contains("SshHost::program"), "{hint}");
        drop(thread);
        child.exit(0).await.unwrap().check().await.unwrap();
    });
    assert_back_to(&base, &[], "no ssh client");
}

#[test]
fn ssh_client_that_cannot_be_executed_is_no_client() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let t = env.proxy_host();
    // Executable by its mode, but neither ELF nor a script: execve fails (ENOEXEC).
    let dir = TempDir::new("bad-ssh");
    let bad = dir.join("ssh");
    std::fs::write(&bad, [0u8, 1, 2, 3]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = SshHost::new(t.destination())
        .config_file(t.config_file())
        .program(&bad);
    let r = run(within(ATTEMPT, "connect", host.connect(&local_thread())));
    let (kind, state, _, hint) = ssh_error(r, "a program that cannot be executed");
    assert_eq!(kind, SshFailure::NoClient, "{hint}");
    assert_eq!(state, None);
    assert!(hint.contains(bad.to_str().unwrap()), "{hint}");
    assert_back_to(&base, &[], "ssh that cannot be executed");
}

#[test]
fn noexec_tmp_falls_back_and_removes_the_fallback_dir() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    let host = host_for(&env.noexec_tmp_host(), &ssh);
    let exe = run(async {
        let (process, remote) = within(ATTEMPT, "connect", host.connect(&local_thread()))
            .await
            .expect("connect to a host whose /tmp is noexec");
        // It works: a syscall, and where its binary was.
        assert!(remote.task().getpid().await.unwrap().as_raw() > 0);
        let exe = remote
            .task()
            .readlinkat(None, "/proc/self/exe")
            .await
            .unwrap();
        remote.exit(0).await.unwrap();
        drop(remote);
        let state = within(ATTEMPT, "ssh exit", process.wait()).await.unwrap();
        assert_eq!(state, ChildState::Exited(0));
        String::from_utf8(exe).unwrap()
    });
    let (_, dirs) = ssh.runs().pop().unwrap();
    let fallback = format!(".rsyscall-{}/b", dirs.nonce);
    assert!(
        !exe.starts_with("/tmp/") && exe.contains(&fallback),
        "the binary ran from {exe}"
    );
    // Removed from the fallback directory too, as soon as the thread ran.
    assert!(exe.ends_with("/b (deleted)"), "the binary ran from {exe}");
    assert_clean(&base, &ssh, "noexec /tmp");
}

#[test]
fn every_directory_noexec_is_no_executable_directory() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    // /tmp and every fallback (/dev/shm, $HOME, /var/tmp; no $XDG_RUNTIME_DIR without PAM)
    // are noexec there.
    let target = env.all_noexec_host();
    // The host is as said: a program copied into any candidate cannot be executed there.
    // (A candidate that is not a directory there is skipped by the script as by this.)
    let probe = "echo \"XDG=${XDG_RUNTIME_DIR:-}\"; for d in /tmp /dev/shm \"$HOME\" /var/tmp; do \
                 if test -d \"$d\"; then cp /bin/true \"$d/rsyscall-probe-$$\" && \
                 \"$d/rsyscall-probe-$$\"; echo \"$d $?\"; rm -f \"$d/rsyscall-probe-$$\"; fi; done";
    let out = output_within(
        target.ssh_command().arg(target.destination()).arg(probe),
        ATTEMPT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"XDG="), "{text}");
    assert_eq!(lines.get(1), Some(&"/tmp 126"), "{text}");
    for line in &lines[1..] {
        assert!(line.ends_with(" 126"), "executed there: {text}");
    }
    let host = host_for(&target, &ssh);
    let r = run(within(ATTEMPT, "connect", host.connect(&local_thread())));
    let (kind, state, stderr, hint) = ssh_error(r, "every directory noexec");
    assert_eq!(
        kind,
        SshFailure::NoExecutableDirectory,
        "{state:?} {stderr}"
    );
    assert_eq!(state, Some(ChildState::Exited(92)));
    assert!(
        stderr.contains("no directory lets programs be executed"),
        "{stderr}"
    );
    assert!(hint.contains("noexec"), "{hint}");
    assert!(hint.contains("remote_temp_dir"), "{hint}");
    // The remote directory and every fallback tried were made in the real directories
    // (bind mounts of them), seen from here: all gone.
    assert_eq!(ssh.runs().len(), 1);
    assert_clean(&base, &ssh, "every directory noexec");
}

#[test]
fn remote_dir_that_cannot_be_made_is_remote_files() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    let host = host_for(&env.proxy_host(), &ssh).remote_temp_dir("/proc");
    let r = run(within(ATTEMPT, "connect", host.connect(&local_thread())));
    let (kind, state, stderr, hint) = ssh_error(r, "/proc");
    assert_eq!(kind, SshFailure::RemoteFiles, "{stderr}");
    assert_eq!(state, Some(ChildState::Exited(90)));
    assert!(stderr.contains("mkdir"), "{stderr}");
    assert!(hint.contains("remote_temp_dir"), "{hint}");
    assert_clean(&base, &ssh, "remote dir in /proc");
}

#[test]
fn ssh_killed_mid_session_hangs_up_pending_and_new_calls() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    let host = host_for(&env.proxy_host(), &ssh);
    run(async {
        let (process, remote) = within(ATTEMPT, "connect", host.connect(&local_thread()))
            .await
            .unwrap();
        let step = Duration::from_secs(10);
        let pipe = within(step, "pipe", remote.pipe()).await.unwrap();
        // A read nobody will answer, blocked on the remote host.
        let pending = remote.task().read_bytes(&pipe.read, 1);
        let killer = async {
            // Let the request reach the host.
            async_io::Timer::after(Duration::from_millis(200)).await;
            process.kill(Signal::SIGKILL).await.unwrap();
        };
        let (read, ()) = within(
            Duration::from_secs(1) + Duration::from_millis(200),
            "the pending calls after ssh was killed",
            futures_lite::future::zip(pending, killer),
        )
        .await;
        let e = read.unwrap_err();
        assert!(e.is_hangup(), "read: {e}");
        let e = within(Duration::from_secs(1), "a new call", remote.task().getpid())
            .await
            .unwrap_err();
        assert!(e.is_hangup(), "getpid: {e}");
        let state = within(ATTEMPT, "ssh reaped", process.wait()).await.unwrap();
        assert_eq!(state, ChildState::Killed(Signal::SIGKILL));
        drop((pipe, remote));
    });
    assert_clean(&base, &ssh, "ssh killed");
}

#[test]
fn ssh_killed_with_a_remote_child_alive_hangs_up_everything() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    let host = host_for(&env.proxy_host(), &ssh);
    run(async {
        let (process, remote) = within(ATTEMPT, "connect", host.connect(&local_thread()))
            .await
            .unwrap();
        let step = Duration::from_secs(10);
        // A child of the remote thread, watched on its root epoller, and a pipe in it.
        let child = within(step, "clone", remote.clone(rsyscall::near::CLONE::empty()))
            .await
            .unwrap();
        within(step, "getpid", child.task().getpid()).await.unwrap();
        let pipe = within(step, "pipe", child.pipe()).await.unwrap();
        let remote_pipe = within(step, "pipe", remote.pipe()).await.unwrap();
        let pending = remote.task().read_bytes(&remote_pipe.read, 1);
        let pending_child = child.task().read_bytes(&pipe.read, 1);
        let killer = async {
            async_io::Timer::after(Duration::from_millis(200)).await;
            process.kill(Signal::SIGKILL).await.unwrap();
        };
        let ((read, read_child), ()) = within(
            Duration::from_secs(1) + Duration::from_millis(200),
            "the pending calls after ssh was killed",
            futures_lite::future::zip(futures_lite::future::zip(pending, pending_child), killer),
        )
        .await;
        assert!(read.unwrap_err().is_hangup());
        assert!(read_child.unwrap_err().is_hangup());
        let state = within(ATTEMPT, "ssh reaped", process.wait()).await.unwrap();
        assert_eq!(state, ChildState::Killed(Signal::SIGKILL));
        drop((pipe, remote_pipe, child, remote));
    });
    assert_clean(&base, &ssh, "ssh killed with a child");
}

#[test]
fn clones_of_a_remote_thread_answer_every_call() {
    // Twenty rounds of connect, clone, getpid and pipe in the clone, each bounded.
    let _g = serial();
    let env = SshEnv::new();
    let ssh = LoggingSsh::new(&env);
    let host = host_for(&env.proxy_host(), &ssh);
    run(async {
        let step = Duration::from_secs(10);
        for round in 0..20 {
            let (process, remote) = within(ATTEMPT, "connect", host.connect(&local_thread()))
                .await
                .unwrap();
            let child = within(step, "clone", remote.clone(rsyscall::near::CLONE::empty()))
                .await
                .unwrap();
            within(step, "getpid", child.task().getpid()).await.unwrap();
            let pipe = within(step, "pipe in the clone", child.pipe())
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            drop(pipe);
            within(step, "child exit", child.exit(0)).await.unwrap();
            within(step, "exit", remote.exit(0)).await.unwrap();
            within(ATTEMPT, "ssh", process.wait()).await.unwrap();
        }
    });
}

#[test]
fn login_shell_that_is_not_sh_is_remote_shell() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    // Kept: dropping the target deletes its user.
    let target = env.non_sh_user_host();
    let host = host_for(&target, &ssh);
    let r = run(within(ATTEMPT, "connect", host.connect(&local_thread())));
    let (kind, state, stderr, hint) = ssh_error(r, "perl login shell");
    assert_eq!(kind, SshFailure::RemoteShell, "{state:?} {stderr}");
    assert!(
        matches!(state, Some(ChildState::Exited(s)) if s != 0 && s != 255),
        "{state:?}"
    );
    assert!(stderr.contains("perl"), "{stderr}");
    assert!(hint.contains("login shell"), "{hint}");
    assert_clean(&base, &ssh, "perl login shell");
}

#[test]
fn bad_remote_temp_dir_is_refused_at_once() {
    let _g = serial();
    let env = SshEnv::new();
    let base = baseline(&env);
    let ssh = LoggingSsh::new(&env);
    for dir in ["/tmp/it's", "tmp", "", "/tmp/a b", "/tmp/$(x)"] {
        let host = host_for(&env.proxy_host(), &ssh).remote_temp_dir(dir);
        let r = run(within(
            Duration::from_secs(5),
            "connect",
            host.connect(&local_thread()),
        ));
        match r {
            Err(Error::InvalidArgument { detail, .. }) => {
                assert!(detail.contains("absolute path"), "{detail}")
            }
            other => panic!("{dir:?}: expected InvalidArgument, got {:?}", other.err()),
        }
    }
    // Refused before ssh ran.
    assert!(ssh.runs().is_empty());
    assert_back_to(&base, &[], "bad remote dir");
}
