//! Std and async interop (issue 10 section 5): `AsyncFileDescriptor` as futures'
//! `AsyncRead`/`AsyncWrite` between threads, local fds as std's `OwnedFd`/`AsFd`, a
//! `ChildState` as std's `ExitStatus` and errors as `io::Error`, all against the real kernel.

use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use futures_lite::future::{self, poll_once};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use rsyscall::handle::LocalFileDescriptor;
use rsyscall::thread::AsyncFileDescriptor;
use rsyscall::{AF, CLONE, FileDescriptor, SOCK, SockType, Thread, local_thread};
use rsyscall_tests::rng::{Rng, seed};
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child, run};
use rsyscall_tests::tmp::TempDir;

/// Fails (instead of hanging) if `f` takes more than thirty seconds.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    future::or(f, async {
        async_io::Timer::after(Duration::from_secs(30)).await;
        panic!("{what} did not finish within thirty seconds");
    })
    .await
}

/// Reads `r` to end of file while `writer` is dropped 50 ms after the read began (so the
/// reader is waiting by then, with no syscall after the drop); returns what was read.
async fn read_to_eof_as_writer_goes<W: Send + 'static>(
    r: &mut AsyncFileDescriptor,
    writer: W,
    what: &str,
) -> Vec<u8> {
    let writer_goes = async move {
        async_io::Timer::after(Duration::from_millis(50)).await;
        drop(writer);
    };
    let mut got = Vec::new();
    let (read, ()) = within(what, future::zip(r.read_to_end(&mut got), writer_goes)).await;
    let n = read.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(n, got.len(), "{what}");
    got
}

/// A pipe in `thread`, both ends made async: (read end, write end).
async fn afd_pipe(thread: &Thread) -> (AsyncFileDescriptor, AsyncFileDescriptor) {
    let pipe = thread.pipe().await.expect("pipe");
    let r = thread
        .make_afd(pipe.read, true)
        .await
        .expect("make_afd read");
    let w = thread
        .make_afd(pipe.write, true)
        .await
        .expect("make_afd write");
    (r, w)
}

#[test]
fn io_copy_moves_a_4_mib_file_between_two_children() {
    let seed = seed();
    let dir = TempDir::new("interop-copy");
    let src = dir.join("src");
    std::fs::write(&src, Rng::new(seed).bytes(4 << 20)).expect("write the file");
    run(async {
        let a = local_thread().clone(CLONE::empty()).await.expect("clone a");
        let b = local_thread().clone(CLONE::empty()).await.expect("clone b");
        // The file goes into a pipe of a's table, from there to a pipe of b's table by
        // futures_lite::io::copy, and is read back out of b's pipe.
        let (mut a_read, mut a_write) = afd_pipe(&a).await;
        let (mut b_read, mut b_write) = afd_pipe(&b).await;
        let data = std::fs::read(&src).expect("read the file");
        let feed = async {
            AsyncWriteExt::write_all(&mut a_write, &data)
                .await
                .expect("write_all into a's pipe");
            AsyncWriteExt::close(&mut a_write)
                .await
                .expect("AsyncWrite::close");
            // The pipe's reader sees end of file once the write end is closed for good.
            AsyncFileDescriptor::close(a_write)
                .await
                .expect("close a's write end");
        };
        let copy = async {
            let n = futures_lite::io::copy(&mut a_read, &mut b_write)
                .await
                .expect("copy from a to b");
            AsyncFileDescriptor::close(b_write)
                .await
                .expect("close b's write end");
            n
        };
        let drain = async {
            let mut got = Vec::new();
            b_read.read_to_end(&mut got).await.expect("read_to_end");
            got
        };
        let (((), copied), got) =
            within("the copy", future::zip(future::zip(feed, copy), drain)).await;
        assert_eq!(copied, data.len() as u64, "seed {seed}");
        assert_eq!(got.len(), data.len(), "seed {seed}");
        assert!(got == data, "the bytes differ (seed {seed})");
        drop((a_read, b_read));
        exit_cleanly(a, "child a").await;
        exit_cleanly(b, "child b").await;
    });
    dir.remove().expect("remove the temporary directory");
}

#[test]
fn a_poll_read_given_up_keeps_its_bytes_for_the_next() {
    on_local_and_child(|thread, label| async move {
        let (mut r, mut w) = afd_pipe(&thread).await;
        let mut big = [0u8; 10];
        // Nothing to read yet: the read stays in flight, and this caller goes away.
        assert!(
            poll_once(AsyncReadExt::read(&mut r, &mut big))
                .await
                .is_none(),
            "{label}"
        );
        AsyncWriteExt::write_all(&mut w, b"abc")
            .await
            .expect("write_all");
        w.flush().await.expect("flush");
        // The next reads, with smaller buffers, get what the in-flight read got, in order.
        let mut small = [0u8; 2];
        let n = within("read", AsyncReadExt::read(&mut r, &mut small))
            .await
            .expect("read");
        assert_eq!(&small[..n], b"ab", "{label}");
        let n = within("read", AsyncReadExt::read(&mut r, &mut small))
            .await
            .expect("read");
        assert_eq!(&small[..n], b"c", "{label}");
        // Many writes behind the caller (more than the pipe holds), read as they come,
        // then end of file.
        let write = async move {
            for i in 0..100u8 {
                AsyncWriteExt::write_all(&mut w, &[i; 1000])
                    .await
                    .expect("write_all");
            }
            w.flush().await.expect("flush");
            drop(w);
        };
        let mut got = Vec::new();
        let ((), read) = within(
            "writes and read_to_end",
            future::zip(write, r.read_to_end(&mut got)),
        )
        .await;
        read.expect("read_to_end");
        let want: Vec<u8> = (0..100u8).flat_map(|i| [i; 1000]).collect();
        assert!(got == want, "{label}: {} bytes", got.len());
    });
}

#[test]
fn dropping_the_writing_end_gives_a_waiting_reader_end_of_file() {
    on_local_and_child(|thread, label| async move {
        let (mut r, w) = afd_pipe(&thread).await;
        // The reader waits for data first; then the writing end goes, with no other syscall
        // on the table after it: its close must not wait for one.
        let got = read_to_eof_as_writer_goes(&mut r, w, label).await;
        assert!(got.is_empty(), "{label}");
    });
}

#[test]
fn dropping_a_local_write_end_gives_a_waiting_reader_end_of_file() {
    run(async {
        let thread = local_thread();
        let pipe = thread.pipe().await.expect("pipe");
        let mut r = thread.make_afd(pipe.read, true).await.expect("make_afd");
        // A plain handle of the local table, dropped while the reader waits and with no
        // syscall after it: its fd must be closed by the drop itself.
        let got = read_to_eof_as_writer_goes(&mut r, pipe.write, "the local write end").await;
        assert!(got.is_empty());
    });
}

#[test]
fn dropping_a_plain_write_end_of_a_child_table_gives_a_waiting_reader_end_of_file() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pipe = child.pipe().await.expect("pipe in the child");
        let mut r = child.make_afd(pipe.read, true).await.expect("make_afd");
        let write_end = pipe.write;
        child
            .task()
            .write_all_bytes(&write_end, b"before")
            .await
            .expect("write");
        // The reader takes what was written and waits again; then the plain handle of the
        // child's table goes, with no syscall on that table after it.
        let got = read_to_eof_as_writer_goes(&mut r, write_end, "the child's write end").await;
        assert_eq!(got, b"before");
        drop(r);
        exit_cleanly(child, "child").await;
    });
}

#[test]
fn dropping_write_ends_on_a_root_epoller_gives_a_waiting_reader_end_of_file() {
    run(async {
        // A bootstrapped thread: its fds are watched by its root epoller, in its process.
        let (launcher, thread) = rsyscall_tests::programs::env_thread().await;
        thread.make_root_epoller().await.expect("root epoller");
        for async_writer in [false, true] {
            let (mut r, w) = afd_pipe(&thread).await;
            assert!(format!("{w:?}").contains("root epoller"), "{w:?}");
            // The writer is an AsyncFileDescriptor on the root epoller (its deregistration
            // keeps the fd open until done), or a plain handle.
            let writer: Box<dyn std::any::Any + Send> = if async_writer {
                Box::new(w)
            } else {
                let plain = w.handle().clone();
                drop(w);
                Box::new(plain)
            };
            let what = format!("async writer: {async_writer}");
            let got = read_to_eof_as_writer_goes(&mut r, writer, &what).await;
            assert!(got.is_empty(), "{what}");
        }
        thread.exit(0).await.expect("exit");
        launcher.check().await.expect("the launcher");
    });
}

#[test]
fn a_dropped_write_end_is_closed_through_a_live_sharer_of_its_table() {
    run(async {
        // p and c share one fd table; p's task is made first, then p exits: the close
        // must go out through c, the task of the table that can still send.
        let p = local_thread().clone(CLONE::empty()).await.expect("clone p");
        let c = p
            .clone(CLONE::FILES)
            .await
            .expect("clone c sharing p's table");
        let pipe = c.pipe().await.expect("pipe");
        let mut r = c.make_afd(pipe.read, true).await.expect("make_afd");
        let plain = FileDescriptor::for_task(&pipe.write, p.task()).expect("p's handle");
        drop(pipe.write);
        let exited = p.exit(0).await.expect("p exits");
        exited.check().await.expect("p's end");
        let got = read_to_eof_as_writer_goes(&mut r, plain, "p's write end").await;
        assert!(got.is_empty());
        drop(r);
        exit_cleanly(c, "c").await;
    });
}

#[test]
fn flush_closes_returns_once_a_close_taken_by_the_background_flush_is_done() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pid = child.pid().expect("pid").as_raw();
        // Each drop hands the close to the background flush; a flush called once that took
        // it must still return only once the close is done.
        for round in 0..200 {
            let pipe = child.pipe().await.expect("pipe in the child");
            let n = pipe.write.near().as_raw();
            drop(pipe.write);
            // Until the background flush took it from the queue (its close is then in
            // flight, or done).
            let table = child.task().fd_table();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while table.pending_closes() > 0 {
                assert!(std::time::Instant::now() < deadline, "never taken");
                std::hint::spin_loop();
            }
            child.task().flush_closes().await.expect("flush_closes");
            assert!(
                std::fs::read_link(format!("/proc/{pid}/fd/{n}")).is_err(),
                "round {round}: fd {n} still open after flush_closes"
            );
            pipe.read.close().await.expect("close");
        }
        exit_cleanly(child, "child").await;
    });
}

#[test]
fn a_write_accepted_and_not_flushed_goes_on_by_itself() {
    on_local_and_child(|thread, label| async move {
        let (mut r, mut w) = afd_pipe(&thread).await;
        // Accepted behind the caller, which then only reads: the write finishes anyway.
        for i in 0..20u8 {
            assert_eq!(
                AsyncWriteExt::write(&mut w, &[i; 100])
                    .await
                    .expect("write"),
                100,
                "{label}"
            );
            let mut got = [0u8; 100];
            within("read of an unflushed write", r.read_exact(&mut got))
                .await
                .expect("read_exact");
            assert_eq!(got, [i; 100], "{label}");
        }
        w.flush().await.expect("flush");
    });
}

#[test]
fn async_close_shuts_a_socket_down_and_errors_keep_their_errno() {
    on_local_and_child(|thread, label| async move {
        let (x, y) = thread
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socketpair");
        let mut x = thread.make_afd(x, false).await.expect("make_afd");
        let mut y = thread.make_afd(y, false).await.expect("make_afd");
        AsyncWriteExt::write_all(&mut x, b"hello")
            .await
            .expect("write_all");
        AsyncWriteExt::close(&mut x)
            .await
            .expect("AsyncWrite::close");
        // The peer sees end of file while `x` is still open.
        let mut got = Vec::new();
        within("read_to_end", y.read_to_end(&mut got))
            .await
            .expect("read_to_end");
        assert_eq!(got, b"hello", "{label}");
        // Writing after the shutdown fails with EPIPE, as an io::Error with its errno
        // (SIGPIPE is ignored by the test harness, and clone children inherit that).
        let err = async {
            AsyncWriteExt::write_all(&mut x, b"more").await?;
            x.flush().await
        }
        .await
        .expect_err("a write after shutdown");
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE), "{label}: {err}");
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{label}");
        // Reading a write-only fd: EBADF at once.
        let (_r, mut w) = afd_pipe(&thread).await;
        let err = AsyncReadExt::read(&mut w, &mut [0; 4])
            .await
            .expect_err("read of a write end");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{label}");
    });
}

#[test]
fn only_fds_of_the_local_table_become_std_fds() {
    run(async {
        // A child with its own table: its fds are refused (their numbers mean nothing
        // here), and come back intact.
        let own = local_thread().clone(CLONE::empty()).await.expect("clone");
        let pipe = own.pipe().await.expect("pipe");
        let read = LocalFileDescriptor::new(pipe.read).expect_err("a child's own table");
        let write = OwnedFd::try_from(pipe.write).expect_err("a child's own table");
        own.task()
            .write_all_bytes(&write, b"still")
            .await
            .expect("write");
        assert_eq!(
            own.task().read_bytes(&read, 10).await.expect("read"),
            b"still"
        );
        drop((read, write));
        exit_cleanly(own, "child with its own table").await;

        // A child sharing our table: its fds are ours too.
        let shared = local_thread()
            .clone(CLONE::FILES)
            .await
            .expect("clone FILES");
        let pipe = shared.pipe().await.expect("pipe");
        let read = LocalFileDescriptor::new(pipe.read).expect("a shared table");
        let write = OwnedFd::try_from(pipe.write).expect("the only handle, shared table");
        let mut file = std::fs::File::from(write);
        std::io::Write::write_all(&mut file, b"shared").expect("std write");
        drop(file);
        let mut copy = std::fs::File::from(read.as_fd().try_clone_to_owned().expect("dup"));
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut copy, &mut got).expect("std read");
        assert_eq!(got, b"shared");
        assert_eq!(read.as_raw_fd(), read.near().as_raw());
        drop(read);
        exit_cleanly(shared, "child sharing our table").await;
    });
}

#[test]
fn a_child_state_is_the_exit_status_std_sees() {
    run(async {
        let parent = local_thread();
        let sh = parent.environ().which("sh").await.expect("which sh");
        for script in ["exit 7", "exit 0", "kill -TERM $$", "kill -KILL $$"] {
            let child = parent.clone(CLONE::empty()).await.expect("clone");
            let process = child
                .exec(sh.clone().args(["-c", script]))
                .await
                .expect("exec");
            let state = within(script, process.wait()).await.expect("wait");
            let ours = ExitStatus::from(state);
            let std = std::process::Command::new("sh")
                .args(["-c", script])
                .status()
                .expect("std's run");
            assert_eq!(ours, std, "{script}: {state:?}");
            assert_eq!((ours.code(), ours.signal()), (std.code(), std.signal()));
        }
    });
}
