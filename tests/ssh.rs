//! Threads on another host over the real OpenSSH (`SshHost`), checked to work like local
//! ones: syscalls with memory, clone and nested clone, exec with output captured locally
//! through channels, `open_channels` and async I/O, fd passing within the host, copying a
//! file through a channel, several connections to one host, 64 remote threads at once, a
//! fan-out over 8 sshd daemons in network namespaces of their own, and nothing left behind
//! when a remote thread is dropped without exit.
//!
//! Hosts come from `rsyscall_tests::ssh` (per-connection `sshd -i` through `ProxyCommand`
//! unless said otherwise), so the "remote" host is this machine: its pids and files can be
//! checked from here too. Every await that could hang is bounded; every ssh process a test
//! starts is waited for by the test.

use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use rsyscall::thread::SshHost;
use rsyscall::{
    AF, AsyncChildProcess, CLONE, ChildState, ChildThread, Command, FileDescriptor, O, SOCK,
    SockType, Thread, local_thread,
};
use rsyscall_tests::errors::{assert_invalid, serial};
use rsyscall_tests::rng::{Rng, seed};
use rsyscall_tests::ssh::{NetnsSshd, SshEnv, SshTarget};
use rsyscall_tests::tasks::join_all;
use rsyscall_tests::tmp::TempDir;

/// Bound on any one step that is expected to finish (a connect, a wait, a read).
const STEP: Duration = Duration::from_secs(60);

/// Bound on a whole test.
const WHOLE: Duration = Duration::from_secs(240);

/// `fut`, or a panic naming `what` once `limit` has passed.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    futures_lite::future::or(fut, async {
        async_io::Timer::after(limit).await;
        panic!("{what}: not done within {limit:?}");
    })
    .await
}

/// Runs a test body to completion, failing if it takes longer than [`WHOLE`]; prints how
/// long it took.
fn run<T>(name: &str, f: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = async_io::block_on(within(WHOLE, name, f));
    eprintln!("{name}: {:?}", start.elapsed());
    out
}

/// Connects a thread to `target` from the local thread, bounded; prints the time taken.
async fn connect(target: &SshTarget) -> (AsyncChildProcess, Thread) {
    let host = SshHost::new(target.destination()).config_file(target.config_file());
    let start = Instant::now();
    let out = within(STEP, "connect", host.connect(&local_thread()))
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", target.destination()));
    eprintln!("connect: {:?}", start.elapsed());
    out
}

/// Exits the remote thread and checks that ssh then exits cleanly.
async fn finish(ssh: AsyncChildProcess, remote: Thread) {
    within(STEP, "remote exit", remote.exit(0))
        .await
        .expect("remote exit");
    assert_eq!(
        within(STEP, "ssh wait", ssh.wait())
            .await
            .expect("ssh wait"),
        ChildState::Exited(0),
        "ssh ends cleanly once its thread exited"
    );
}

/// Exits a child thread and checks that it exited with 0.
async fn exit_child(child: ChildThread, what: &str) {
    let process = within(STEP, what, child.exit(0))
        .await
        .unwrap_or_else(|e| panic!("{what}: exit: {e}"));
    assert_eq!(
        within(STEP, what, process.wait())
            .await
            .unwrap_or_else(|e| panic!("{what}: wait: {e}")),
        ChildState::Exited(0),
        "{what}"
    );
}

/// A local end of a channel, registered with the reactor.
fn async_local(fd: OwnedFd) -> Async<UnixStream> {
    Async::new(UnixStream::from(fd)).expect("register the local end")
}

/// Reads the local end of a channel until end of file, bounded.
async fn read_local_to_eof(fd: OwnedFd, what: &str) -> Vec<u8> {
    let mut stream = async_local(fd);
    let mut out = Vec::new();
    within(STEP, what, stream.read_to_end(&mut out))
        .await
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    out
}

/// Runs `sh -c script` in a fresh child of `remote` with its stdout on a channel, and
/// returns what it wrote (read locally) and how it ended.
async fn remote_sh_output(remote: &Thread, script: &str) -> (Vec<u8>, ChildState) {
    let (local, theirs) = within(STEP, "open_channels", remote.open_channels(1))
        .await
        .expect("open_channels")
        .pop()
        .expect("one channel");
    let child = within(STEP, "clone", remote.clone(CLONE::empty()))
        .await
        .expect("clone");
    let inherited = child.inherit_fd(&theirs).expect("inherit");
    within(STEP, "dup2", child.task().dup2(&inherited, &child.stdout()))
        .await
        .expect("dup2 onto stdout");
    // Only the child keeps the channel: closed now in the parent, and in the child by
    // the exec (close-on-exec), so the local end sees EOF when sh is done.
    inherited.close().await.expect("close");
    theirs.close().await.expect("close");
    let sh = Command::new("/bin/sh", "sh").args(["-c", script]);
    let process = within(STEP, "exec", child.exec(sh)).await.expect("exec sh");
    let out = read_local_to_eof(local, "sh's output").await;
    let state = within(STEP, "wait", process.wait()).await.expect("wait");
    (out, state)
}

/// The state letter of `/proc/PID/stat` (seen from here: the proxy host is this machine).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn connect_gives_a_live_remote_process_and_exits_cleanly() {
    let env = SshEnv::new();
    run("connect_and_exit", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let pid = within(STEP, "getpid", remote.task().getpid())
            .await
            .expect("getpid")
            .as_raw();
        assert_ne!(pid as u32, std::process::id());
        let state = proc_state(pid).expect("the remote pid is a process");
        assert_ne!(state, 'Z', "the remote process is alive");
        // Its executable, read through the thread itself, is the bootstrap, not us.
        let exe = within(
            STEP,
            "readlink",
            remote
                .task()
                .readlinkat(None, format!("/proc/{pid}/exe").as_bytes()),
        )
        .await
        .expect("readlink exe");
        let ours = std::fs::read_link("/proc/self/exe").expect("our exe");
        assert_ne!(
            PathBuf::from(String::from_utf8_lossy(&exe).into_owned()),
            ours
        );
        assert!(
            String::from_utf8_lossy(&exe).contains("rsyscall"),
            "exe {:?} is the bootstrap",
            String::from_utf8_lossy(&exe)
        );
        // The environment is the remote shell's, from the describe strings.
        for var in ["PATH", "HOME"] {
            let value = remote.environ().get(var);
            assert!(
                value.as_ref().is_some_and(|v| !v.is_empty()),
                "{var} in the remote environment"
            );
        }
        finish(ssh, remote).await;
        // The remote process is gone (reaped by its parent, the remote shell's sshd).
        let gone = rsyscall_tests::procs::settled(|| proc_state(pid)).await;
        assert!(
            gone.is_none() || gone == Some('Z'),
            "remote process {pid} still running: {gone:?}"
        );
    });
}

#[test]
fn syscalls_with_memory_on_a_file() {
    let env = SshEnv::new();
    let dir = TempDir::new("ssh-file");
    let path = dir.join("written-remotely");
    run("syscalls_with_memory", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let task = remote.task();
        let path_bytes = path.as_os_str().as_encoded_bytes();
        let fd = task
            .open(path_bytes, O::RDWR | O::CREAT | O::EXCL, 0o600)
            .await
            .expect("open");
        let data = b"written by a thread on another host";
        task.write_all_bytes(&fd, data).await.expect("write");
        fd.lseek(0, rsyscall::SEEK::SET).await.expect("lseek");
        assert_eq!(
            task.read_bytes(&fd, 100).await.expect("read back"),
            data,
            "read back through the remote task"
        );
        let st = task.stat(path_bytes).await.expect("stat");
        assert_eq!(st.size, data.len() as i64, "stat size");
        assert_eq!(st.mode & 0o777, 0o600, "stat mode");
        // It is a real file (the proxy host is this machine).
        assert_eq!(std::fs::read(&path).expect("read locally"), data);
        drop(fd);
        task.unlinkat(None, path_bytes, rsyscall::AT::empty())
            .await
            .expect("unlink");
        assert!(!path.exists(), "unlinked");
        assert!(
            rsyscall_tests::errors::errno(task.stat(path_bytes).await)
                == Some(rsyscall::Errno::ENOENT),
            "stat after unlink gives ENOENT"
        );
        finish(ssh, remote).await;
    });
}

#[test]
fn clone_and_nested_clone() {
    let env = SshEnv::new();
    run("clone_and_nested_clone", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let rpid = remote.task().getpid().await.expect("getpid");
        // A child, and a grandchild cloned from it.
        let child = within(STEP, "clone", remote.clone(CLONE::empty()))
            .await
            .expect("clone");
        let cpid = child.task().getpid().await.expect("child getpid");
        assert_ne!(cpid, rpid);
        assert_eq!(child.task().getppid().await.expect("getppid"), rpid);
        let grandchild = within(STEP, "nested clone", child.clone(CLONE::empty()))
            .await
            .expect("nested clone");
        let gpid = grandchild.task().getpid().await.expect("grandchild getpid");
        assert_eq!(grandchild.task().getppid().await.expect("getppid"), cpid);
        let buf = grandchild
            .task()
            .ptr(&b"in the grandchild"[..])
            .await
            .expect("ptr");
        assert_eq!(buf.read().await.expect("read"), b"in the grandchild");
        drop(buf);
        // CLONE_FILES children: they share the table, so an fd made in one is seen by the
        // other.
        let shared = within(STEP, "clone FILES", remote.clone(CLONE::FILES))
            .await
            .expect("clone FILES");
        let pipe = shared.pipe().await.expect("pipe in the CLONE_FILES child");
        remote
            .task()
            .write_all_bytes(
                &pipe.write.for_task(remote.task()).expect("same table"),
                b"same table",
            )
            .await
            .expect("write from the parent");
        assert_eq!(
            shared
                .task()
                .read_bytes(&pipe.read, 16)
                .await
                .expect("read"),
            b"same table"
        );
        drop(pipe);
        let shared_nested = within(STEP, "nested clone FILES", child.clone(CLONE::FILES))
            .await
            .expect("nested clone FILES");
        assert_ne!(shared_nested.task().getpid().await.expect("getpid"), gpid);
        // A child that unshares its table: its syscalls (and channels) still work.
        let unsharing = within(STEP, "clone FILES", remote.clone(CLONE::FILES))
            .await
            .expect("clone FILES");
        within(STEP, "unshare_files", unsharing.unshare_files(false))
            .await
            .expect("unshare_files");
        let p = unsharing.pipe().await.expect("pipe after unshare");
        unsharing
            .task()
            .write_all_bytes(&p.write, b"own table")
            .await
            .expect("write");
        assert_eq!(
            unsharing
                .task()
                .read_bytes(&p.read, 16)
                .await
                .expect("read"),
            b"own table"
        );
        drop(p);
        let (local, theirs) = within(STEP, "channels", unsharing.open_channels(1))
            .await
            .expect("channels of the unshared child")
            .pop()
            .expect("one");
        unsharing
            .task()
            .write_all_bytes(&theirs, b"via a channel")
            .await
            .expect("write channel");
        // Closed now (a dropped handle's close waits for the thread's next syscall).
        theirs.close().await.expect("close");
        assert_eq!(
            read_local_to_eof(local, "unshared child's channel").await,
            b"via a channel"
        );
        // CLONE_PARENT cannot be honoured on another host.
        assert_invalid(remote.clone(CLONE::PARENT).await, "clone CLONE_PARENT");
        assert_invalid(
            child.clone(CLONE::PARENT).await,
            "nested clone CLONE_PARENT",
        );
        exit_child(shared_nested, "nested CLONE_FILES child").await;
        exit_child(grandchild, "grandchild").await;
        exit_child(child, "child").await;
        exit_child(shared, "CLONE_FILES child").await;
        exit_child(unsharing, "unsharing child").await;
        finish(ssh, remote).await;
    });
}

#[test]
fn the_parent_works_while_its_child_is_idle() {
    // A child's hangup watch runs on its parent (its futex helper's pidfd on the parent's
    // root epoller). The parent must stay usable while the child makes no request.
    let env = SshEnv::new();
    run("parent_while_child_idle", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let rpid = remote.task().getpid().await.expect("getpid");
        let child = within(STEP, "clone", remote.clone(CLONE::empty()))
            .await
            .expect("clone");
        let cpid = within(STEP, "child getpid", child.task().getpid())
            .await
            .expect("child getpid");
        assert_ne!(cpid, rpid);
        // The child is idle now: the parent answers, again and again.
        for _ in 0..10 {
            assert_eq!(
                within(STEP, "parent getpid", remote.task().getpid())
                    .await
                    .expect("parent getpid"),
                rpid
            );
        }
        let pipe = within(STEP, "parent pipe", remote.pipe())
            .await
            .expect("pipe");
        drop(pipe);
        // And the child still answers after the parent's work.
        assert_eq!(
            within(STEP, "child getpid again", child.task().getpid())
                .await
                .expect("child getpid"),
            cpid
        );
        exit_child(child, "child").await;
        finish(ssh, remote).await;
    });
}

#[test]
fn exec_with_output_captured_locally() {
    let env = SshEnv::new();
    run("exec_output", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let (out, state) = remote_sh_output(&remote, "echo hello; exit 7").await;
        assert_eq!(out, b"hello\n");
        assert_eq!(state, ChildState::Exited(7));
        finish(ssh, remote).await;
    });
}

#[test]
fn channels_both_ways_and_async_io() {
    let env = SshEnv::new();
    run("channels_async", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let chans = within(STEP, "open_channels", remote.open_channels(4))
            .await
            .expect("open_channels");
        assert_eq!(chans.len(), 4);
        let mut pairs = Vec::new();
        for (ours, theirs) in chans {
            let theirs = within(STEP, "make_afd", remote.make_afd(theirs, true))
                .await
                .expect("make_afd");
            pairs.push((async_local(ours), theirs));
        }
        // All four at once, both ways: each side writes, then reads the other's bytes.
        let results = join_all(
            pairs
                .iter_mut()
                .enumerate()
                .map(|(i, (ours, theirs))| async move {
                    let down = format!("local to remote on channel {i}").into_bytes();
                    let up = format!("remote to local on channel {i}, longer").into_bytes();
                    let (wrote_down, wrote_up) = futures_lite::future::zip(
                        async { ours.write_all(&down).await },
                        theirs.write_all_bytes(&up),
                    )
                    .await;
                    wrote_down.expect("local write");
                    wrote_up.expect("remote write");
                    let mut got_down = Vec::new();
                    while got_down.len() < down.len() {
                        let part = theirs.read_some_bytes(256).await.expect("remote read");
                        assert!(!part.is_empty(), "early EOF on channel {i}");
                        got_down.extend(part);
                    }
                    let mut got_up = vec![0u8; up.len()];
                    ours.read_exact(&mut got_up).await.expect("local read");
                    (got_down == down, got_up == up)
                })
                .collect(),
        );
        let results = within(STEP, "4 channels", results).await;
        assert_eq!(results, vec![(true, true); 4]);
        drop(pairs);

        // Async I/O on a remote socketpair: the read waits until the writer writes later.
        let (a, b) = remote
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty())
            .await
            .expect("socketpair");
        let reader = remote.make_afd(a, true).await.expect("make_afd");
        let writer_task = remote.duplicate();
        let (got, ()) = within(
            STEP,
            "async read of a remote socket",
            futures_lite::future::zip(reader.read_some_bytes(64), async {
                async_io::Timer::after(Duration::from_millis(200)).await;
                writer_task
                    .task()
                    .write_all_bytes(&b, b"written later")
                    .await
                    .expect("write later");
            }),
        )
        .await;
        assert_eq!(got.expect("async read"), b"written later");
        // And a remote pipe, read asynchronously by a clone's write.
        let pipe = remote.pipe().await.expect("pipe");
        let reader = remote
            .make_afd(pipe.read, true)
            .await
            .expect("make_afd pipe");
        let child = remote.clone(CLONE::empty()).await.expect("clone");
        let w = child.inherit_fd(&pipe.write).expect("inherit");
        drop(pipe.write);
        let (got, ()) = within(
            STEP,
            "async read of a remote pipe",
            futures_lite::future::zip(reader.read_some_bytes(64), async {
                async_io::Timer::after(Duration::from_millis(200)).await;
                child
                    .task()
                    .write_all_bytes(&w, b"from the child")
                    .await
                    .expect("child write");
            }),
        )
        .await;
        assert_eq!(got.expect("async read pipe"), b"from the child");
        drop(w);
        exit_child(child, "writer child").await;
        drop((reader, writer_task));
        finish(ssh, remote).await;
    });
}

#[test]
fn fd_passing_within_the_host() {
    let env = SshEnv::new();
    run("fd_passing", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let (a, b) = remote
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty())
            .await
            .expect("socketpair");
        let child = within(STEP, "clone", remote.clone(CLONE::empty()))
            .await
            .expect("clone");
        let b_child = child.inherit_fd(&b).expect("inherit");
        drop(b);
        // A pipe made after the clone: the child does not have it until it is passed.
        let pipe = remote.pipe().await.expect("pipe");
        remote
            .task()
            .send_fds(&a, &[&pipe.write])
            .await
            .expect("send_fds");
        let mut got = within(STEP, "recv_fds", child.task().recv_fds(&b_child, 1))
            .await
            .expect("recv_fds");
        let passed = got.pop().expect("one fd");
        assert_ne!(
            child.task().fd_table().id(),
            remote.task().fd_table().id(),
            "the child has its own table"
        );
        child
            .task()
            .write_all_bytes(&passed, b"through a passed fd")
            .await
            .expect("write through the passed fd");
        drop(passed);
        assert_eq!(
            remote
                .task()
                .read_bytes(&pipe.read, 64)
                .await
                .expect("read"),
            b"through a passed fd"
        );
        // And the other way: the child sends, the remote thread receives.
        let cpipe = child.pipe().await.expect("child pipe");
        child
            .task()
            .send_fds(&b_child, &[&cpipe.read])
            .await
            .expect("child send_fds");
        let back = remote
            .task()
            .recv_fds(&a, 1)
            .await
            .expect("recv_fds")
            .pop()
            .expect("one");
        child
            .task()
            .write_all_bytes(&cpipe.write, b"back up")
            .await
            .expect("write");
        assert_eq!(
            remote.task().read_bytes(&back, 64).await.expect("read"),
            b"back up"
        );
        drop((back, cpipe, b_child, a, pipe));
        exit_child(child, "child").await;

        // A local fd cannot reach another host.
        let (r, _w) = std::io::pipe().expect("local pipe");
        let local_fd =
            FileDescriptor::from_owned_fd(local_thread().task(), OwnedFd::from(r)).expect("wrap");
        let detail = assert_invalid(remote.pass_fd(&local_fd).await, "pass_fd across hosts");
        assert!(
            detail.contains("open_channels"),
            "the error says what to do: {detail}"
        );
        finish(ssh, remote).await;
    });
}

#[test]
fn copy_a_file_local_to_remote_through_a_channel() {
    let env = SshEnv::new();
    let dir = TempDir::new("ssh-copy");
    let path = dir.join("copied");
    let data = Rng::new(seed()).bytes(3 << 20);
    run("copy_file", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let (local, theirs) = within(STEP, "open_channels", remote.open_channels(1))
            .await
            .expect("open_channels")
            .pop()
            .expect("one channel");
        // A remote `cat` from the channel into the file.
        let child = remote.clone(CLONE::empty()).await.expect("clone");
        let input = child.inherit_fd(&theirs).expect("inherit");
        theirs.close().await.expect("close");
        let path_bytes = path.as_os_str().as_encoded_bytes();
        let file = child
            .task()
            .open(path_bytes, O::WRONLY | O::CREAT | O::TRUNC, 0o600)
            .await
            .expect("open the target");
        child
            .task()
            .dup2(&input, &child.stdin())
            .await
            .expect("dup2 stdin");
        child
            .task()
            .dup2(&file, &child.stdout())
            .await
            .expect("dup2 stdout");
        input.close().await.expect("close");
        file.close().await.expect("close");
        let cat = Command::new("/bin/cat", "cat");
        let process = within(STEP, "exec cat", child.exec(cat))
            .await
            .expect("exec cat");
        let mut stream = async_local(local);
        within(STEP, "write the data", async {
            stream.write_all(&data).await.expect("write locally");
            stream.flush().await.expect("flush");
        })
        .await;
        stream
            .get_ref()
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        assert_eq!(
            within(STEP, "wait cat", process.wait())
                .await
                .expect("wait"),
            ChildState::Exited(0)
        );
        drop(stream);
        // Read back through the remote task, and compare checksums.
        let task = remote.task();
        let fd = task.open(path_bytes, O::RDONLY, 0).await.expect("open");
        let back = within(STEP, "read back", task.read_to_eof(&fd))
            .await
            .expect("read back");
        assert_eq!(back.len(), data.len(), "size");
        assert_eq!(checksum(&back), checksum(&data), "checksum");
        assert!(back == data, "contents");
        drop(fd);
        finish(ssh, remote).await;
    });
}

fn checksum(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(data);
    h.finish()
}

#[test]
fn connect_again_while_the_first_lives() {
    let env = SshEnv::new();
    run("connect_again", async {
        let target = env.proxy_host();
        let (ssh1, first) = connect(&target).await;
        let (ssh2, second) = connect(&target).await;
        let p1 = first.task().getpid().await.expect("getpid first");
        let p2 = second.task().getpid().await.expect("getpid second");
        assert_ne!(p1, p2, "two remote processes");
        assert_ne!(ssh1.pid(), ssh2.pid(), "two ssh processes");
        // Both work, interleaved: exec in each, output through each one's channels.
        let ((o1, s1), (o2, s2)) = futures_lite::future::zip(
            remote_sh_output(&first, "echo first"),
            remote_sh_output(&second, "echo second"),
        )
        .await;
        assert_eq!(
            (o1.as_slice(), s1),
            (&b"first\n"[..], ChildState::Exited(0))
        );
        assert_eq!(
            (o2.as_slice(), s2),
            (&b"second\n"[..], ChildState::Exited(0))
        );
        finish(ssh1, first).await;
        // The second is untouched by the first's end.
        assert_eq!(second.task().getpid().await.expect("getpid again"), p2);
        finish(ssh2, second).await;
    });
}

#[test]
fn sixty_four_remote_threads_over_one_host() {
    let env = SshEnv::new();
    run("sixty_four", async {
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let rpid = remote.task().getpid().await.expect("getpid");
        let clones = within(
            STEP * 2,
            "64 clones",
            join_all((0..64).map(|_| remote.clone(CLONE::empty())).collect()),
        )
        .await;
        let children: Vec<ChildThread> = clones.into_iter().map(|c| c.expect("clone")).collect();
        let work = join_all(
            children
                .into_iter()
                .map(|child| async move {
                    let pid = child.task().getpid().await.expect("getpid");
                    let ppid = child.task().getppid().await.expect("getppid");
                    let process = child
                        .exec(Command::new("/bin/true", "true"))
                        .await
                        .expect("exec true");
                    (pid, ppid, process.wait().await.expect("wait"))
                })
                .collect(),
        );
        let results = within(STEP * 2, "64 getpid + exec", work).await;
        let mut pids: Vec<_> = results.iter().map(|(p, _, _)| *p).collect();
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 64, "64 distinct processes");
        for (pid, ppid, state) in &results {
            assert_eq!(*ppid, rpid, "{pid:?} is a child of the remote thread");
            assert_eq!(*state, ChildState::Exited(0), "{pid:?}");
        }
        finish(ssh, remote).await;
    });
}

#[test]
fn fan_out_over_eight_netns_hosts() {
    let env = SshEnv::new();
    let start = Instant::now();
    let hosts: Vec<NetnsSshd> = (0..8).map(|_| NetnsSshd::start(&env)).collect();
    eprintln!("8 NetnsSshd started in {:?}", start.elapsed());
    run("fan_out", async {
        let connected = within(
            STEP * 2,
            "8 connects",
            join_all(hosts.iter().map(|h| connect(h.target())).collect()),
        )
        .await;
        let outputs = within(
            STEP * 2,
            "8 programs",
            join_all(
                connected
                    .iter()
                    .map(|(_, remote)| async move {
                        let ns = remote
                            .task()
                            .readlinkat(None, &b"/proc/self/ns/net"[..])
                            .await
                            .expect("readlink ns");
                        let out = remote_sh_output(remote, "echo $SSH_CONNECTION").await;
                        (ns, out)
                    })
                    .collect(),
            ),
        )
        .await;
        for (host, (ns, (out, state))) in hosts.iter().zip(&outputs) {
            assert_eq!(*state, ChildState::Exited(0));
            let text = String::from_utf8_lossy(out);
            let fields: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(fields.len(), 4, "SSH_CONNECTION: {text:?}");
            assert_eq!(
                fields[2],
                host.address().to_string(),
                "the server address is this host's"
            );
            let daemon_ns = std::fs::read_link(format!("/proc/{}/ns/net", host.pid()))
                .expect("the daemon's netns");
            assert_eq!(
                String::from_utf8_lossy(ns),
                daemon_ns.to_string_lossy(),
                "the thread is in the host's network namespace"
            );
        }
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let mut seen: Vec<_> = outputs.iter().map(|(ns, _)| ns.clone()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8, "8 distinct network namespaces");
        assert!(
            !seen.contains(&ours.as_os_str().as_encoded_bytes().to_vec()),
            "none is ours"
        );
        join_all(
            connected
                .into_iter()
                .map(|(ssh, remote)| finish(ssh, remote))
                .collect(),
        )
        .await;
    });
    drop(hosts);
}

/// The local private directory of the connection run by the ssh process `pid`: the
/// directory of the forward in its `-L` argument.
fn local_dir_of_ssh(pid: i32) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("ssh's cmdline");
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let spec = args
        .windows(2)
        .find(|w| w[0] == b"-L")
        .map(|w| String::from_utf8_lossy(w[1]).into_owned())
        .expect("ssh has a -L argument");
    let (forward, _) = spec.split_once(':').expect("LOCAL:REMOTE");
    let dir = PathBuf::from(forward)
        .parent()
        .expect("forward's directory")
        .to_owned();
    assert!(
        dir.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rsyscall-ssh-")),
        "{dir:?}"
    );
    dir
}

/// The `rsyscall-ssh-*` directories in the temporary directory.
fn local_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for base in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("rsyscall-ssh-") {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn dropping_the_remote_thread_ends_ssh_and_removes_the_local_dir() {
    // Compares the set of local directories: no other test of this binary that takes the
    // lock runs meanwhile, and the others' directories are told apart by ssh's -L.
    let _serial = serial();
    let env = SshEnv::new();
    run("drop_without_exit", async {
        let before = local_dirs();
        let (ssh, remote) = connect(&env.proxy_host()).await;
        let dir = local_dir_of_ssh(ssh.pid().as_raw());
        assert!(dir.exists(), "{dir:?} exists while the thread lives");
        assert!(!before.contains(&dir), "a fresh directory");
        // Use the thread a little, with a child and an epoller, so that more than one
        // handle refers to the connection.
        let child = remote.clone(CLONE::empty()).await.expect("clone");
        let (a, b) = remote
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty())
            .await
            .expect("socketpair");
        let afd = remote.make_afd(a, true).await.expect("make_afd");
        exit_child(child, "child").await;
        drop((afd, b));
        drop(remote);
        let state = within(STEP, "ssh ends after the thread is dropped", ssh.wait())
            .await
            .expect("ssh wait");
        assert!(
            matches!(state, ChildState::Exited(_)),
            "ssh exited: {state:?}"
        );
        within(STEP, "the local dir is removed", async {
            while dir.exists() {
                async_io::Timer::after(Duration::from_millis(20)).await;
            }
        })
        .await;
    });
}
