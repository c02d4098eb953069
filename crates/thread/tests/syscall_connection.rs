//! Tests of `SyscallConnection` against the real server loop (`rsyscall_server::server`)
//! running in a thread of this process (or in a forked child), with the real kernel.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::{Timer, block_on};
use futures_lite::future;
use rsyscall_near::{
    Address, Errno, FileDescriptor, NotSent, Request, SyscallError, SyscallFuture, SyscallInterface,
};
use rsyscall_thread::SyscallConnection;

/// Runs `f` to completion, failing the test if it takes more than 10 seconds.
fn run<T>(f: impl Future<Output = T>) -> T {
    block_on(future::or(f, async {
        Timer::after(Duration::from_secs(10)).await;
        panic!("hung: the future did not complete within 10 s");
    }))
}

/// Polls all futures together (in order, on every wake-up) until all are done.
async fn join_all<F: Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    future::poll_fn(|cx| {
        let mut all_done = true;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match Pin::new(f).poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
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
    out.into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connection to a server loop running in a thread of this process.
struct Fixture {
    conn: Arc<SyscallConnection>,
    server: Option<JoinHandle<i64>>,
    /// A dup of the server's end, when the test wants to shut it down from outside.
    server_end: Option<UnixStream>,
}

impl Fixture {
    fn new() -> Self {
        Self::build(false)
    }

    fn with_server_end() -> Self {
        Self::build(true)
    }

    fn build(keep_server_end: bool) -> Self {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let server_fd = FileDescriptor::new(theirs.as_raw_fd());
        let server_end = keep_server_end.then(|| theirs.try_clone().expect("dup"));
        let server = std::thread::spawn(move || {
            let fd = theirs.as_raw_fd();
            let ret = rsyscall_server::server(fd, fd);
            drop(theirs);
            ret
        });
        let conn = SyscallConnection::new(OwnedFd::from(ours), server_fd).expect("connection");
        Fixture {
            conn: Arc::new(conn),
            server: Some(server),
            server_end,
        }
    }

    /// Drops the connection and waits for the server thread, returning its result.
    fn finish(mut self) -> i64 {
        let server = self.server.take().expect("server thread");
        drop(self);
        server.join().expect("server thread panicked")
    }
}

/// Sends a request through `conn`.
fn call(conn: &SyscallConnection, nr: i64, args: [i64; 6]) -> SyscallFuture<'_> {
    // SAFETY: the tests only send syscalls that touch fds and memory they own and keep
    // alive until the server has run them (getpid, lseek on a test file, read into a test
    // buffer, write to an invalid fd).
    unsafe { conn.syscall(Request::new(nr, args)) }
}

fn getpid(conn: &SyscallConnection) -> SyscallFuture<'_> {
    call(conn, libc::SYS_getpid, [0; 6])
}

fn lseek<'a>(
    conn: &'a SyscallConnection,
    fd: &File,
    offset: i64,
    whence: i32,
) -> SyscallFuture<'a> {
    call(
        conn,
        libc::SYS_lseek,
        [fd.as_raw_fd().into(), offset, whence.into(), 0, 0, 0],
    )
}

/// `read(fd, buf, 1)` in the server: blocks until a byte is written to the pipe.
fn read_one<'a>(
    conn: &'a SyscallConnection,
    fd: &impl AsRawFd,
    buf: &[u8; 1],
) -> SyscallFuture<'a> {
    let addr = Address::from_ptr(buf.as_ptr()).arg();
    call(
        conn,
        libc::SYS_read,
        [fd.as_raw_fd().into(), addr, 1, 0, 0, 0],
    )
}

fn pid() -> i64 {
    i64::from(std::process::id())
}

fn test_file() -> File {
    File::open(std::env::current_exe().expect("current exe")).expect("open test binary")
}

/// Byte `j` of test pattern `i`.
fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j.wrapping_mul(7) ^ i.wrapping_mul(31) ^ (j >> 8)) as u8)
        .collect()
}

#[test]
fn getpid_round_trip() {
    let fx = Fixture::new();
    assert_eq!(run(getpid(&fx.conn)), Ok(pid()));
    assert_eq!(run(getpid(&fx.conn)), Ok(pid()));
    assert!(!fx.conn.is_hung_up());
    let dbg = format!("{:?}", fx.conn);
    assert!(dbg.contains("SyscallConnection"), "{dbg}");
    // Dropping the connection closes our end: the server sees EOF and returns 0.
    assert_eq!(fx.finish(), 0);
}

#[test]
fn concurrent_requests_are_answered_in_order() {
    let fx = Fixture::new();
    let conn = &*fx.conn;
    let file = test_file();

    // Each lseek(SEEK_CUR, +1) returns the offset after it: 1, 2, ... only if the
    // requests ran in the order their futures were first polled and each got its own
    // response back.
    let futs: Vec<_> = (0..64)
        .map(|_| lseek(conn, &file, 1, libc::SEEK_CUR))
        .collect();
    let results = run(join_all(futs));
    let expected: Vec<_> = (1..=64).map(Ok).collect();
    assert_eq!(results, expected);

    // Distinct absolute offsets interleaved with getpid.
    let mut futs = Vec::new();
    for i in 0..64 {
        futs.push(lseek(conn, &file, 1000 + i, libc::SEEK_SET));
        futs.push(getpid(conn));
    }
    let results = run(join_all(futs));
    for (i, pair) in results.chunks(2).enumerate() {
        assert_eq!(pair[0], Ok(1000 + i as i64));
        assert_eq!(pair[1], Ok(pid()));
    }
    assert_eq!(fx.finish(), 0);
}

#[test]
fn errno_passes_through() {
    let fx = Fixture::new();
    let r = run(call(&fx.conn, libc::SYS_write, [-1, 0, 0, 0, 0, 0]));
    assert_eq!(r, Err(SyscallError::Errno(Errno::EBADF)));
    assert_eq!(run(getpid(&fx.conn)), Ok(pid()));
    assert_eq!(fx.finish(), 0);
}

#[test]
fn memory_round_trip_one_mib() {
    let fx = Fixture::new();
    let len = 1 << 20;
    let src = pattern(1, len);
    let mut dst = vec![0u8; len];
    let dst_addr = Address::from_ptr(dst.as_mut_ptr());
    // SAFETY: `dst` is a live buffer of `len` bytes that nothing else touches until the
    // write is done; the server runs in this address space.
    run(unsafe { fx.conn.write_memory(dst_addr, &src) }).expect("write_memory");
    assert!(dst == src, "written bytes differ");

    // SAFETY: `src` is live and readable.
    let back = run(unsafe { fx.conn.read_memory(Address::from_ptr(src.as_ptr()), len) });
    assert!(back.expect("read_memory") == src, "read bytes differ");

    // Zero-length transfers are no-ops.
    // SAFETY: nothing is read.
    let empty = run(unsafe { fx.conn.read_memory(Address::NULL, 0) });
    assert_eq!(empty, Ok(Vec::new()));
    // SAFETY: nothing is written.
    let nothing = run(unsafe { fx.conn.write_memory(Address::NULL, &[]) });
    assert_eq!(nothing, Ok(()));
    assert_eq!(run(getpid(&fx.conn)), Ok(pid()));
    assert_eq!(fx.finish(), 0);
}

#[test]
fn concurrent_memory_transfers_interleaved_with_syscalls() {
    let fx = Fixture::new();
    let conn = &*fx.conn;
    let len = 64 * 1024;
    let patterns: Vec<Vec<u8>> = (0..8).map(|i| pattern(i + 10, len)).collect();
    let mut dsts: Vec<Vec<u8>> = (0..8).map(|_| vec![0u8; len]).collect();
    let addrs: Vec<Address> = dsts
        .iter_mut()
        .map(|d| Address::from_ptr(d.as_mut_ptr()))
        .collect();

    let mut futs: Vec<BoxFut<'_, ()>> = Vec::new();
    for i in 0..8 {
        let (addr, pat) = (addrs[i], &patterns[i]);
        futs.push(Box::pin(async move {
            // SAFETY: `dsts[i]` stays alive and untouched until every future is done.
            unsafe { conn.write_memory(addr, pat) }
                .await
                .expect("write_memory");
            // SAFETY: as above; reading is harmless.
            let back = unsafe { conn.read_memory(addr, len) }
                .await
                .expect("read_memory");
            assert!(back == *pat, "transfer {i} differs");
        }));
        futs.push(Box::pin(async move {
            assert_eq!(getpid(conn).await, Ok(pid()));
            assert_eq!(getpid(conn).await, Ok(pid()));
        }));
    }
    run(join_all(futs));
    for (d, p) in dsts.iter().zip(&patterns) {
        assert!(d == p);
    }
    assert_eq!(fx.finish(), 0);
}

#[test]
fn cancelled_requests_do_not_break_later_ones() {
    let fx = Fixture::new();
    let conn = &*fx.conn;

    // Dropped before being polled: never sent.
    drop(getpid(conn));
    // SAFETY: never polled, so nothing is read.
    drop(unsafe { conn.read_memory(Address::NULL, 100) });
    assert_eq!(run(getpid(conn)), Ok(pid()));

    // Sent, then dropped while the server is blocked in it: its response is discarded.
    let (pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let buf = [0u8; 1];
    let mut blocked = read_one(conn, &pipe_r, &buf);
    assert!(run(future::poll_once(&mut blocked)).is_none());
    // Queued behind it and sent too: a plain request and an in-band read, whose raw bytes
    // must be discarded along with its response.
    let mut behind = getpid(conn);
    assert!(run(future::poll_once(&mut behind)).is_none());
    let src = pattern(3, 300_000);
    // SAFETY: `src` is live and readable.
    let mut abandoned =
        Box::pin(unsafe { conn.read_memory(Address::from_ptr(src.as_ptr()), src.len()) });
    assert!(run(future::poll_once(abandoned.as_mut())).is_none());
    drop(blocked);
    drop(behind);
    drop(abandoned);
    pipe_w.write_all(b"x").expect("write pipe");
    assert_eq!(run(getpid(conn)), Ok(pid()));
    assert_eq!(buf[0], b'x');
    // SAFETY: as above.
    let back = run(unsafe { conn.read_memory(Address::from_ptr(src.as_ptr()), 1000) });
    assert!(back.expect("read_memory") == src[..1000]);

    drop(pipe_r);
    assert_eq!(fx.finish(), 0);
}

#[test]
fn cancelling_unsent_and_partly_sent_requests() {
    let fx = Fixture::new();
    let conn = &*fx.conn;
    let (pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let buf = [0u8; 1];

    // The server blocks in read(), so it reads nothing more from the socket.
    let mut blocked = read_one(conn, &pipe_r, &buf);
    assert!(run(future::poll_once(&mut blocked)).is_none());

    // A write far larger than the socket buffer: only part of it can be sent.
    let len = 4 << 20;
    let src = pattern(5, len);
    let mut dst = vec![0u8; len];
    let dst_addr = Address::from_ptr(dst.as_mut_ptr());
    let mut write = Box::pin(async {
        // SAFETY: `dst` stays alive and untouched until the server has written it (the
        // final getpid below comes after the write on the stream).
        unsafe { conn.write_memory(dst_addr, &src) }.await
    });
    assert!(run(future::poll_once(write.as_mut())).is_none());
    // Queued behind it, entirely unsent: dropping it removes it from the stream.
    let file = test_file();
    let mut unsent = lseek(conn, &file, 77, libc::SEEK_SET);
    assert!(run(future::poll_once(&mut unsent)).is_none());
    drop(unsent);
    // Partly sent: dropping it keeps the rest of its bytes queued.
    drop(write);
    drop(blocked);

    pipe_w.write_all(b"y").expect("write pipe");
    assert_eq!(run(getpid(conn)), Ok(pid()));
    assert!(dst == src, "the abandoned write was not completed");
    // The cancelled lseek never ran.
    assert_eq!(run(lseek(conn, &file, 0, libc::SEEK_CUR)), Ok(0));
    assert_eq!(fx.finish(), 0);
}

/// Runs `pending` and, after 50 ms, `trigger`; returns `pending`'s result and how long it
/// took to complete after the trigger.
fn hang_up_while_pending<T>(
    pending: impl Future<Output = T>,
    trigger: impl FnOnce(),
) -> (T, Duration) {
    run(async {
        let fired = std::cell::Cell::new(None);
        let trigger = async {
            Timer::after(Duration::from_millis(50)).await;
            trigger();
            fired.set(Some(Instant::now()));
        };
        let (r, ()) = future::zip(pending, trigger).await;
        let elapsed = fired.get().expect("trigger ran").elapsed();
        (r, elapsed)
    })
}

#[test]
fn server_shutdown_fails_pending_and_later_requests_with_hangup() {
    let mut fx = Fixture::with_server_end();
    let conn = fx.conn.clone();
    let (pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let buf = [0u8; 1];
    let server_end = fx.server_end.take().expect("server end");

    let pending = future::zip(read_one(&conn, &pipe_r, &buf), getpid(&conn));
    let ((blocked, queued), elapsed) = hang_up_while_pending(pending, || {
        server_end
            .shutdown(Shutdown::Both)
            .expect("shutdown server end");
    });
    assert_eq!(blocked, Err(SyscallError::Hangup));
    assert_eq!(queued, Err(SyscallError::Hangup));
    assert!(elapsed < Duration::from_secs(1), "hangup took {elapsed:?}");
    assert!(conn.is_hung_up());
    assert_eq!(run(getpid(&conn)), Err(SyscallError::Hangup));

    // Let the server finish its read; its response cannot be sent.
    pipe_w.write_all(b"z").expect("write pipe");
    drop(conn);
    assert!(fx.finish() < 0);
}

#[test]
fn request_to_a_vanished_peer_fails_with_hangup() {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let conn = SyscallConnection::new(OwnedFd::from(ours), FileDescriptor::new(99)).expect("conn");
    drop(theirs);
    let start = Instant::now();
    assert_eq!(run(getpid(&conn)), Err(SyscallError::Hangup));
    // SAFETY: the request cannot be sent.
    let r = run(unsafe { conn.read_memory(Address::NULL, 10) });
    assert_eq!(r, Err(SyscallError::Hangup));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(conn.is_hung_up());
}

/// Closes every fd of the calling process except `keep` (sorted), with raw syscalls only.
fn close_all_but(keep: &mut [i32]) {
    keep.sort_unstable();
    let mut from = 3u32;
    for &k in keep.iter() {
        if k as u32 > from {
            // SAFETY: close_range only closes fds; this runs in a freshly forked child that
            // owns its fd table and uses nothing but `keep` afterwards.
            unsafe { libc::syscall(libc::SYS_close_range, from, k as u32 - 1, 0) };
        }
        from = k as u32 + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

#[test]
fn killed_server_process_fails_pending_and_later_requests_with_hangup() {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let (pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let server_fd = theirs.as_raw_fd();
    let pipe_fd = pipe_r.as_raw_fd();
    // SAFETY: the child only runs the no_std server loop (raw syscalls, no allocation, no
    // locks) and exits with `_exit`, so forking a multi-threaded process is fine.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        close_all_but(&mut [server_fd, pipe_fd]);
        let ret = rsyscall_server::server(server_fd, server_fd);
        // SAFETY: `_exit` ends the child without running this process's atexit handlers.
        unsafe { libc::_exit(ret as i32) };
    }
    drop(theirs);
    drop(pipe_r);
    let conn =
        SyscallConnection::new(OwnedFd::from(ours), FileDescriptor::new(server_fd)).expect("conn");

    let child_pid = i64::from(child);
    assert_eq!(run(getpid(&conn)), Ok(child_pid));
    let buf = [0u8; 1];
    // The child blocks in read(): we hold the only write end of the pipe.
    let pending = future::zip(read_one(&conn, &pipe_fd, &buf), getpid(&conn));
    let ((blocked, queued), elapsed) = hang_up_while_pending(pending, || {
        // SAFETY: `child` is our unreaped child, so the pid cannot have been reused.
        assert_eq!(unsafe { libc::kill(child, libc::SIGKILL) }, 0);
    });
    assert_eq!(blocked, Err(SyscallError::Hangup));
    assert_eq!(queued, Err(SyscallError::Hangup));
    assert!(elapsed < Duration::from_secs(1), "hangup took {elapsed:?}");
    assert_eq!(run(getpid(&conn)), Err(SyscallError::Hangup));
    assert!(conn.is_hung_up());

    let mut status = 0;
    // SAFETY: reaps our own child; `status` is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(libc::WIFSIGNALED(status));
    drop(pipe_w.write_all(b"-"));
}

#[test]
fn shutdown_fails_later_requests_as_not_sent() {
    let fx = Fixture::new();
    let conn = fx.conn.clone();
    let (pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let buf = [0u8; 1];

    // A sent request (the server blocks in it) and a partly sent big write, then an
    // unsent request behind them.
    let mut blocked = read_one(&conn, &pipe_r, &buf);
    assert!(run(future::poll_once(&mut blocked)).is_none());
    let len = 4 << 20;
    let src = pattern(6, len);
    let mut dst = vec![0u8; len];
    let dst_addr = Address::from_ptr(dst.as_mut_ptr());
    let mut write = Box::pin(async {
        // SAFETY: `dst` outlives the server's use of it (the server is joined below).
        unsafe { conn.write_memory(dst_addr, &src) }.await
    });
    assert!(run(future::poll_once(write.as_mut())).is_none());
    let mut unsent = getpid(&conn);
    assert!(run(future::poll_once(&mut unsent)).is_none());

    conn.shutdown();
    assert!(conn.is_hung_up());
    let ((a, b), c) = run(future::zip(future::zip(blocked, write), unsent));
    assert_eq!(a, Err(SyscallError::Hangup));
    assert_eq!(b, Err(SyscallError::Hangup));
    assert_eq!(c, Err(SyscallError::NotSent(NotSent::Closed)));
    assert_eq!(
        run(getpid(&conn)),
        Err(SyscallError::NotSent(NotSent::Closed))
    );
    // SAFETY: never sent.
    let r = run(unsafe { conn.write_memory(dst_addr, &[1]) });
    assert_eq!(r, Err(SyscallError::NotSent(NotSent::Closed)));

    pipe_w.write_all(b"w").expect("write pipe");
    drop(conn);
    // The server saw the end of the stream in the middle of the write.
    assert!(fx.finish() < 0);
    drop(dst);
}

#[test]
fn shutdown_with_nothing_pending() {
    let fx = Fixture::new();
    assert_eq!(run(getpid(&fx.conn)), Ok(pid()));
    fx.conn.shutdown();
    fx.conn.shutdown();
    assert_eq!(
        run(getpid(&fx.conn)),
        Err(SyscallError::NotSent(NotSent::Closed))
    );
    assert_eq!(fx.finish(), 0);
}

#[test]
fn hangup_when_readable_fails_pending_requests() {
    let fx = Fixture::new();
    let conn = fx.conn.clone();
    let (pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let (hang_r, mut hang_w) = std::io::pipe().expect("pipe");
    conn.hangup_when_readable(OwnedFd::from(hang_r))
        .expect("register");
    // Not readable yet: requests work.
    assert_eq!(run(getpid(&conn)), Ok(pid()));

    let buf = [0u8; 1];
    let pending = future::zip(read_one(&conn, &pipe_r, &buf), getpid(&conn));
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        hang_w.write_all(b"!").expect("write hangup pipe");
        tx.send(Instant::now()).expect("send");
        hang_w
    });
    let (blocked, queued) = run(pending);
    let elapsed = rx.recv().expect("writer ran").elapsed();
    assert_eq!(blocked, Err(SyscallError::Hangup));
    assert_eq!(queued, Err(SyscallError::Hangup));
    assert!(elapsed < Duration::from_secs(1), "hangup took {elapsed:?}");
    assert!(conn.is_hung_up());
    assert_eq!(run(getpid(&conn)), Err(SyscallError::Hangup));
    drop(writer.join());

    pipe_w.write_all(b"h").expect("write pipe");
    drop(conn);
    assert!(fx.finish() < 0);
}

#[test]
fn hangup_fd_registered_while_a_request_is_pending() {
    let fx = Fixture::new();
    let conn = fx.conn.clone();
    let (pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let (hang_r, mut hang_w) = std::io::pipe().expect("pipe");
    let buf = [0u8; 1];
    let mut blocked = read_one(&conn, &pipe_r, &buf);
    assert!(run(future::poll_once(&mut blocked)).is_none());
    hang_w.write_all(b"!").expect("write hangup pipe");
    conn.hangup_when_readable(OwnedFd::from(hang_r))
        .expect("register");
    assert_eq!(run(blocked), Err(SyscallError::Hangup));
    pipe_w.write_all(b"h").expect("write pipe");
    drop(conn);
    assert!(fx.finish() < 0);
}

#[test]
fn requests_from_two_os_threads() {
    let fx = Fixture::new();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let conn = fx.conn.clone();
            std::thread::spawn(move || {
                let file = test_file();
                for round in 0..20 {
                    let mut futs: Vec<BoxFut<'_, ()>> = Vec::new();
                    for i in 0..10i64 {
                        let (conn, file) = (&*conn, &file);
                        let off = (t * 1_000_000 + round * 1000) as i64 + i;
                        futs.push(Box::pin(async move {
                            assert_eq!(lseek(conn, file, off, libc::SEEK_SET).await, Ok(off));
                        }));
                        futs.push(Box::pin(async move {
                            assert_eq!(getpid(conn).await, Ok(pid()));
                        }));
                    }
                    run(join_all(futs));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread panicked");
    }
    assert_eq!(fx.finish(), 0);
}

#[test]
fn futures_are_send_and_connection_is_send_sync() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SyscallConnection>();
    let fx = Fixture::new();
    let f = getpid(&fx.conn);
    assert_send(&f);
    // SAFETY: never polled.
    let w = unsafe { fx.conn.write_memory(Address::NULL, &[]) };
    assert_send(&w);
    // SAFETY: never polled.
    let r = unsafe { fx.conn.read_memory(Address::NULL, 0) };
    assert_send(&r);
}

#[test]
fn failed_in_band_write_shuts_the_connection_down() {
    let fx = Fixture::new();
    // recvfrom into NULL fails with EFAULT and leaves the data on the server's socket, where
    // the server reads it as requests: all zeros is `read(0, NULL, 0)`, which is harmless.
    // The stream is out of sync, so the connection must be given up.
    let zeros = [0u8; 10 * Request::SIZE];
    // SAFETY: nothing can be written at NULL; the leftover data runs harmless requests.
    let r = run(unsafe { fx.conn.write_memory(Address::NULL, &zeros) });
    assert_eq!(r, Err(SyscallError::Hangup));
    assert!(fx.conn.is_hung_up());
    assert_eq!(run(getpid(&fx.conn)), Err(SyscallError::Hangup));
    // The server ends (EOF, or EPIPE on a response, depending on timing).
    fx.finish();
}

#[test]
fn big_read_and_big_write_in_flight_together() {
    // The server blocks sending the read's bytes while we block sending the write's:
    // only a reader that keeps reading while it flushes avoids the deadlock.
    let fx = Fixture::new();
    let conn = &*fx.conn;
    let len = 3 << 20;
    let src = pattern(8, len);
    let data = pattern(9, len);
    let mut dst = vec![0u8; len];
    let dst_addr = Address::from_ptr(dst.as_mut_ptr());
    let (back, written) = run(future::zip(
        // SAFETY: `src` is live and readable.
        async { unsafe { conn.read_memory(Address::from_ptr(src.as_ptr()), len) }.await },
        // SAFETY: `dst` is live and untouched until the write is done.
        async { unsafe { conn.write_memory(dst_addr, &data) }.await },
    ));
    assert!(back.expect("read_memory") == src);
    written.expect("write_memory");
    assert!(dst == data);
    assert_eq!(fx.finish(), 0);
}
