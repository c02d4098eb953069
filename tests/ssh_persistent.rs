//! Persistent threads on another host: made through one ssh session, detached, and
//! reconnected through a later session after the first one is gone (issue 9, section 2).

use std::time::Duration;

use rsyscall::handle::ChildState;
use rsyscall::near::{CLONE, O, Signal};
use rsyscall::thread::{Command, PersistentThread, SshHost, Thread, local_thread};
use rsyscall_tests::ssh::{SshEnv, SshTarget};

/// Bound on each step that is expected to finish.
const LIMIT: Duration = Duration::from_secs(60);

/// `fut`, failing the test if it takes longer than [`LIMIT`].
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(LIMIT).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("{what} did not finish within {LIMIT:?}"))
}

fn host(target: &SshTarget) -> SshHost {
    SshHost::new(target.destination()).config_file(target.config_file())
}

/// A socket path on the remote host (the same machine here) in a fresh directory.
fn socket_path(env: &SshEnv, name: &str) -> std::path::PathBuf {
    env.dir().join(name)
}

/// Runs `sh -c script` in a fresh child of `thread` with stdout and stderr on /dev/null
/// and `/` as working directory (a persistent thread keeps those of the session it was
/// made in, which may be gone), and returns how it ended.
async fn run_quietly(thread: &Thread, script: &str) -> ChildState {
    let child = within("clone", thread.clone(CLONE::empty()))
        .await
        .expect("clone");
    let task = child.task();
    task.chdir("/").await.expect("chdir");
    let null = task.open("/dev/null", O::RDWR, 0).await.expect("open");
    task.dup2(&null, &child.stdout()).await.expect("dup2");
    task.dup2(&null, &child.stderr()).await.expect("dup2");
    drop(null);
    let process = within(
        "exec",
        child.exec(Command::new("/bin/sh", "sh").args(["-c", script])),
    )
    .await
    .expect("exec");
    within("wait", process.wait()).await.expect("wait")
}

#[test]
fn a_persistent_thread_made_over_ssh_is_reconnected_over_a_new_session() {
    let env = SshEnv::new();
    let target = env.proxy_host();
    let path = socket_path(&env, "per.sock");
    let marker = env.dir().join("ran");
    async_io::block_on(async {
        let (ssh1, remote1) = within("connect", host(&target).connect(&local_thread()))
            .await
            .expect("first connection");
        let per = within("clone_persistent", remote1.clone_persistent(&path))
            .await
            .expect("clone_persistent");
        within("make_persistent", per.make_persistent())
            .await
            .expect("make_persistent");
        let pid = per.task().getpid().await.expect("getpid");
        // Children work while the first session lives.
        assert_eq!(run_quietly(&per, "exit 4").await, ChildState::Exited(4));

        // The first session goes: its ssh is killed, its bootstrap ends.
        ssh1.kill(Signal::SIGKILL).await.expect("kill ssh");
        assert_eq!(
            within("ssh wait", ssh1.wait()).await.expect("wait"),
            ChildState::Killed(Signal::SIGKILL)
        );
        drop(remote1);
        // A new session reconnects it.
        let (ssh2, remote2) = within("connect", host(&target).connect(&local_thread()))
            .await
            .expect("second connection");
        within("reconnect", per.reconnect(&remote2))
            .await
            .expect("reconnect through the new session");
        assert_eq!(per.task().getpid().await.expect("getpid"), pid);

        // Channels and children now go through the new session.
        let mut channels = within("open_channels", per.open_channels(1))
            .await
            .expect("open_channels");
        let (ours, theirs) = channels.pop().expect("one channel");
        per.task()
            .write_all_bytes(&theirs, b"through the new session")
            .await
            .expect("write");
        let mut got = [0u8; 23];
        std::io::Read::read_exact(&mut std::fs::File::from(ours), &mut got).expect("read");
        assert_eq!(&got, b"through the new session");
        let script = format!("echo ran > '{}'; exit 5", marker.display());
        assert_eq!(run_quietly(&per, &script).await, ChildState::Exited(5));
        assert_eq!(std::fs::read_to_string(&marker).expect("marker"), "ran\n");

        // The thread ends; so does the second session.
        let monitor = within("exit", per.exit(0)).await.expect("exit");
        drop(monitor);
        assert!(!path.exists(), "the socket file was removed");
        remote2.exit(0).await.expect("exit remote");
        assert_eq!(
            within("ssh wait", ssh2.wait()).await.expect("wait"),
            ChildState::Exited(0)
        );
    });
}

#[test]
fn a_persistent_thread_on_another_host_not_made_persistent_dies_with_its_session() {
    let env = SshEnv::new();
    let target = env.proxy_host();
    let path = socket_path(&env, "dies.sock");
    async_io::block_on(async {
        let (ssh1, remote1) = within("connect", host(&target).connect(&local_thread()))
            .await
            .expect("connection");
        let per: PersistentThread = within("clone_persistent", remote1.clone_persistent(&path))
            .await
            .expect("clone_persistent");
        let pid = per.task().getpid().await.expect("getpid");
        ssh1.kill(Signal::SIGKILL).await.expect("kill ssh");
        within("ssh wait", ssh1.wait()).await.expect("wait");
        // Its creator (the session's bootstrap) is gone, so it is too: the process
        // disappears (its parent-death signal), whoever reaps it.
        let proc_entry = format!("/proc/{}/stat", pid.as_raw());
        let gone = within("the thread's death", async {
            loop {
                match std::fs::read_to_string(&proc_entry) {
                    Err(_) => return true,
                    // A zombie (state Z) is dead.
                    Ok(stat)
                        if stat
                            .rsplit(')')
                            .next()
                            .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                    {
                        return true;
                    }
                    Ok(_) => {
                        async_io::Timer::after(Duration::from_millis(20)).await;
                    }
                }
            }
        })
        .await;
        assert!(gone);
        // A reconnect through a new session finds nothing there.
        let (ssh2, remote2) = within("connect", host(&target).connect(&local_thread()))
            .await
            .expect("second connection");
        let err = within("reconnect", per.reconnect(&remote2))
            .await
            .expect_err("nothing listens any more");
        assert!(
            matches!(err, rsyscall::thread::PersistentError::NoServer { .. }),
            "{err}"
        );
        drop(per);
        remote2.exit(0).await.expect("exit remote");
        within("ssh wait", ssh2.wait()).await.expect("wait");
    });
}

#[test]
fn a_persistent_thread_on_another_host_is_attached_to_over_a_new_session() {
    let env = SshEnv::new();
    let target = env.proxy_host();
    let path = socket_path(&env, "attach.sock");
    async_io::block_on(async {
        let (ssh1, remote1) = within("connect", host(&target).connect(&local_thread()))
            .await
            .expect("first connection");
        let per = within("clone_persistent", remote1.clone_persistent(&path))
            .await
            .expect("clone_persistent");
        within("make_persistent", per.make_persistent())
            .await
            .expect("make_persistent");
        let pid = per.task().getpid().await.expect("getpid");
        // Everything of the first session goes, the value included.
        drop(per);
        ssh1.kill(Signal::SIGKILL).await.expect("kill ssh");
        within("ssh wait", ssh1.wait()).await.expect("wait");
        drop(remote1);

        let (ssh2, remote2) = within("connect", host(&target).connect(&local_thread()))
            .await
            .expect("second connection");
        let attached = within("attach", PersistentThread::attach(&remote2, &path))
            .await
            .expect("attach through the new session");
        assert_eq!(attached.task().getpid().await.expect("getpid"), pid);
        let mut channels = within("open_channels", attached.open_channels(1))
            .await
            .expect("open_channels");
        let (ours, theirs) = channels.pop().expect("one channel");
        attached
            .task()
            .write_all_bytes(&theirs, b"attached")
            .await
            .expect("write");
        let mut got = [0u8; 8];
        std::io::Read::read_exact(&mut std::fs::File::from(ours), &mut got).expect("read");
        assert_eq!(&got, b"attached");
        within("exit", attached.exit(0)).await.expect("exit");
        assert!(!path.exists(), "the socket file was removed");
        remote2.exit(0).await.expect("exit remote");
        assert_eq!(
            within("ssh wait", ssh2.wait()).await.expect("wait"),
            ChildState::Exited(0)
        );
    });
}
