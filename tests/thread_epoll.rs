//! The event loop: Epoller, AsyncFileDescriptor, AsyncReadBuffer, async channels.
//!
//! Counterparts of the original's epoller tests (local, five concurrent, in a child, root
//! epoller, with_handle, delayed EAGAIN, wrong op on a pipe end), cat through async pipes,
//! unix and TCP sockets with async accept/connect, nested forks and unshare(FILES), all
//! against the real kernel.

use std::future::Future;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_lite::future::{self, zip};
use rsyscall::structs::{AnySockaddr, SockaddrIn, SockaddrUn};
use rsyscall::thread::{AsyncFileDescriptor, AsyncReadBuffer};
use rsyscall::{AF, CLONE, ChildThread, Errno, Error, SOCK, SockType, Thread, local_thread};
use rsyscall_tests::procs::{open_fds_of, settled};
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child, run};

/// Fails (instead of hanging) if `f` takes more than ten seconds.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    future::or(f, async {
        async_io::Timer::after(Duration::from_secs(10)).await;
        panic!("{what} did not finish within ten seconds");
    })
    .await
}

/// Runs all of `futs` concurrently; their outputs in order.
async fn join_all<'a, T>(futs: Vec<Pin<Box<dyn Future<Output = T> + 'a>>>) -> Vec<T> {
    let mut futs: Vec<_> = futs.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (slot, result) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(out.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

/// A pipe in `thread`, both ends made async (and non-blocking).
async fn afd_pipe(thread: &Thread) -> (AsyncFileDescriptor, AsyncFileDescriptor) {
    let p = thread.pipe().await.expect("pipe");
    let r = thread
        .make_afd(p.read, true)
        .await
        .expect("make_afd(read end)");
    let w = thread
        .make_afd(p.write, true)
        .await
        .expect("make_afd(write end)");
    (r, w)
}

/// Reads until end of file.
async fn read_to_eof(afd: &AsyncFileDescriptor) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = afd.read_some_bytes(65536).await.expect("read");
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

/// Reads exactly `n` bytes.
async fn read_exact(afd: &AsyncFileDescriptor, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = afd
            .read_some_bytes((n - out.len()).min(65536))
            .await
            .expect("read");
        assert!(!chunk.is_empty(), "EOF after {} of {n} bytes", out.len());
        out.extend_from_slice(&chunk);
    }
    out
}

/// Waits until process `pid` is blocked in `epoll_wait` (as `/proc/<pid>/syscall` says).
async fn wait_in_epoll_wait(pid: i32) {
    loop {
        let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).expect("read syscall");
        let nr = s
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok());
        if nr == Some(libc::SYS_epoll_wait) {
            return;
        }
        async_io::Timer::after(Duration::from_millis(1)).await;
    }
}

/// Number of fds registered on epoll fd `epfd` of process `pid`.
fn epoll_registrations(pid: i32, epfd: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}"))
        .expect("read fdinfo")
        .lines()
        .filter(|l| l.starts_with("tfd:"))
        .count()
}

#[test]
fn pipe_read_and_write() {
    on_local_and_child(|thread, label| async move {
        let (r, w) = afd_pipe(&thread).await;
        w.write_all_bytes(b"hello").await.expect("write");
        assert_eq!(
            r.read_some_bytes(64).await.expect("read"),
            b"hello",
            "{label}"
        );

        // The pointer API: the filled part and the rest.
        let task = thread.task();
        let data = task.ptr(&b"world"[..]).await.expect("ptr");
        let (written, rest) = w.write(data).await.expect("write");
        assert_eq!((written.size(), rest.size()), (5, 0), "{label}");
        let buf = task.malloc_bytes(64).await.expect("malloc");
        let (filled, rest) = r.read(buf).await.expect("read");
        assert_eq!(
            filled.read().await.expect("read memory"),
            b"world",
            "{label}"
        );
        assert_eq!(rest.size(), 59, "{label}");

        // More than a pipe holds: the writer waits for the reader to make room.
        let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let ((), got) = zip(
            async { w.write_all_bytes(&big).await.expect("write_all") },
            read_exact(&r, big.len()),
        )
        .await;
        assert!(got == big, "{label}: 1 MiB through the pipe");

        // A read of 0 bytes from the empty pipe returns nothing at once, as read(2) does.
        let zero = r.read_some_bytes(0).await.expect("read of 0 bytes");
        assert!(zero.is_empty(), "{label}: {zero:?}");
        w.close().await.expect("close");
        assert!(
            r.read_some_bytes(8).await.expect("read").is_empty(),
            "{label}: EOF"
        );
        r.close().await.expect("close");
    });
}

#[test]
fn five_concurrent_readers_in_one_task() {
    on_local_and_child(|thread, label| async move {
        let mut pipes = Vec::new();
        for _ in 0..5 {
            pipes.push(afd_pipe(&thread).await);
        }
        let reads: Vec<Pin<Box<dyn Future<Output = Vec<u8>> + '_>>> = pipes
            .iter()
            .map(|(r, _)| -> Pin<Box<dyn Future<Output = Vec<u8>>>> {
                Box::pin(async move { r.read_some_bytes(64).await.expect("read") })
            })
            .collect();
        // Every reader is waiting before the first write; writes go in reverse order.
        let writes = async {
            for (i, (_, w)) in pipes.iter().enumerate().rev() {
                w.write_all_bytes(format!("pipe {i}").as_bytes())
                    .await
                    .expect("write");
            }
        };
        let (got, ()) = zip(join_all(reads), writes).await;
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, format!("pipe {i}").as_bytes(), "{label}");
        }
        for (r, w) in pipes {
            r.close().await.expect("close");
            w.close().await.expect("close");
        }
    });
}

#[test]
fn wrong_end_of_a_pipe_fails_at_once_with_ebadf() {
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let rooted = local.clone(CLONE::empty()).await.expect("clone");
        rooted.make_root_epoller().await.expect("make_root_epoller");
        for (thread, label) in [
            (local.duplicate(), "local"),
            (child.duplicate(), "child"),
            (rooted.duplicate(), "root epoller"),
        ] {
            let (r, w) = afd_pipe(&thread).await;
            let read = within("read on the write end", w.read_some_bytes(16)).await;
            assert_eq!(
                read.expect_err("read on the write end").errno(),
                Some(Errno::EBADF),
                "{label}"
            );
            let write = within("write on the read end", r.write_all_bytes(b"x")).await;
            assert_eq!(
                write.expect_err("write on the read end").errno(),
                Some(Errno::EBADF),
                "{label}"
            );
            r.close().await.expect("close");
            w.close().await.expect("close");
        }
        exit_cleanly(child, "child").await;
        exit_cleanly(rooted, "rooted").await;
    })
}

#[test]
fn delayed_eagain_loses_no_wakeup() {
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let files = local.clone(CLONE::FILES).await.expect("clone");
        let rooted = local.clone(CLONE::empty()).await.expect("clone");
        rooted.make_root_epoller().await.expect("make_root_epoller");
        for (thread, label) in [
            (child.duplicate(), "child"),
            (files.duplicate(), "files child"),
            (rooted.duplicate(), "root epoller"),
        ] {
            let (r, w) = afd_pipe(&thread).await;
            for i in 0..50 {
                // The read is sent first and gets EAGAIN; the write, sent right behind it
                // on the same connection, makes the pipe readable before that EAGAIN
                // arrives here. The read must still complete.
                let msg = format!("message {i}");
                let (got, wrote) = zip(
                    r.read_some_bytes(64),
                    thread.task().write_bytes(w.handle(), msg.as_bytes()),
                )
                .await;
                assert_eq!(wrote.expect("write"), msg.len(), "{label}");
                assert_eq!(got.expect("read"), msg.as_bytes(), "{label}");
            }
            r.close().await.expect("close");
            w.close().await.expect("close");
        }
        exit_cleanly(child, "child").await;
        exit_cleanly(files, "files").await;
        exit_cleanly(rooted, "rooted").await;
    })
}

#[test]
fn root_epoller_serves_other_syscalls_while_waiting() {
    run(async {
        let local = local_thread();
        let refused = local.make_root_epoller_with(&local.stdin()).await;
        assert!(
            matches!(refused, Err(Error::InvalidArgument { .. })),
            "{refused:?}"
        );
        let child = local.clone(CLONE::empty()).await.expect("clone");
        child.make_root_epoller().await.expect("make_root_epoller");
        let again = child.make_root_epoller().await;
        assert!(
            matches!(again, Err(Error::InvalidArgument { .. })),
            "{again:?}"
        );
        let pid = child.pid().expect("pid").as_raw();
        let epoller = child.root_epoller().expect("root epoller").clone();
        let epfd = epoller.epfd().near().as_raw();
        child.task().flush_closes().await.expect("flush");
        let fds_before = open_fds_of(pid);
        assert_eq!(epoll_registrations(pid, epfd), 1, "the activity fd only");

        let (r, w) = afd_pipe(&child).await;
        let reader = r.read_some_bytes(64);
        let other = async {
            wait_in_epoll_wait(pid).await;
            // The child's server is blocked in epoll_wait: this request wakes it.
            let got = within("getpid during epoll_wait", child.task().getpid())
                .await
                .expect("getpid");
            assert_eq!(got.as_raw(), pid);
            wait_in_epoll_wait(pid).await;
            w.write_all_bytes(b"wake").await.expect("write");
        };
        let (got, ()) = zip(reader, other).await;
        assert_eq!(got.expect("read"), b"wake");
        assert_eq!(epoller.registered(), 2);
        assert_eq!(
            epoll_registrations(pid, epfd),
            2,
            "activity and the read end"
        );

        // Five concurrent readers on the root epoller.
        let mut pipes = Vec::new();
        for _ in 0..5 {
            pipes.push(afd_pipe(&child).await);
        }
        let reads: Vec<Pin<Box<dyn Future<Output = Vec<u8>> + '_>>> = pipes
            .iter()
            .map(|(r, _)| -> Pin<Box<dyn Future<Output = Vec<u8>>>> {
                Box::pin(async move { r.read_some_bytes(64).await.expect("read") })
            })
            .collect();
        let writes = async {
            for (i, (_, w)) in pipes.iter().enumerate().rev() {
                w.write_all_bytes(format!("pipe {i}").as_bytes())
                    .await
                    .expect("write");
            }
        };
        let (got, ()) = zip(join_all(reads), writes).await;
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, format!("pipe {i}").as_bytes());
        }
        for (r, w) in pipes {
            r.close().await.expect("close");
            w.close().await.expect("close");
        }

        // A dropped registration is deleted soon (in the background, or by the next wait,
        // whichever comes first); a closed one at once.
        drop(r);
        let (r2, w2) = afd_pipe(&child).await;
        let (got, ()) = zip(r2.read_some_bytes(8), async {
            wait_in_epoll_wait(pid).await;
            w2.write_all_bytes(b"x").await.expect("write");
        })
        .await;
        assert_eq!(got.expect("read"), b"x");
        r2.close().await.expect("close");
        w2.close().await.expect("close");
        w.close().await.expect("close");
        assert_eq!(
            settled(|| epoll_registrations(pid, epfd)).await,
            1,
            "only the activity fd is left"
        );
        child.task().flush_closes().await.expect("flush");
        assert_eq!(
            settled(|| open_fds_of(pid)).await,
            fds_before,
            "no fd left behind in the child"
        );
        drop(epoller);
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn with_handle_makes_syscalls_through_another_task() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        // The grandchild shares the child's fd table.
        let grandchild = child.clone(CLONE::FILES).await.expect("clone");
        let (r, w) = afd_pipe(&child).await;
        let other = r
            .with_handle(r.handle().for_task(grandchild.task()).expect("for_task"))
            .expect("with_handle");
        assert_eq!(
            other.handle().task().pid(),
            grandchild.task().pid(),
            "syscalls go through the grandchild"
        );
        let (got, ()) = zip(other.read_some_bytes(64), async {
            w.write_all_bytes(b"through the grandchild")
                .await
                .expect("write")
        })
        .await;
        assert_eq!(got.expect("read"), b"through the grandchild");
        // The original still works, on the same registration.
        w.write_all_bytes(b"again").await.expect("write");
        assert_eq!(r.read_some_bytes(64).await.expect("read"), b"again");

        let wrong = r.with_handle(w.handle().clone());
        assert!(
            matches!(wrong, Err(Error::InvalidArgument { .. })),
            "{wrong:?}"
        );
        other.close().await.expect("close");
        r.close().await.expect("close");
        w.close().await.expect("close");
        exit_cleanly(grandchild, "grandchild").await;
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn cat_through_async_pipes() {
    run(async {
        let local = local_thread();
        let to_cat = local.pipe().await.expect("pipe");
        let from_cat = local.pipe().await.expect("pipe");
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let stdin = child.inherit_fd(&to_cat.read).expect("inherit");
        let stdout = child.inherit_fd(&from_cat.write).expect("inherit");
        child
            .task()
            .dup2(&stdin, &child.stdin())
            .await
            .expect("dup2");
        child
            .task()
            .dup2(&stdout, &child.stdout())
            .await
            .expect("dup2");
        let cat = local.environ().which("cat").await.expect("which cat");
        let process = child.exec(cat).await.expect("exec cat");
        to_cat.read.close().await.expect("close");
        from_cat.write.close().await.expect("close");

        let w = local.make_afd(to_cat.write, true).await.expect("make_afd");
        let r = local.make_afd(from_cat.read, true).await.expect("make_afd");
        let data: Vec<u8> = (0..512 * 1024).map(|i| (i % 253) as u8).collect();
        let ((), got) = zip(
            async {
                w.write_all_bytes(&data).await.expect("write");
                w.close().await.expect("close");
            },
            read_to_eof(&r),
        )
        .await;
        assert!(
            got == data,
            "cat echoed {} of {} bytes",
            got.len(),
            data.len()
        );
        r.close().await.expect("close");
        process.check().await.expect("cat exits cleanly");
    })
}

/// A unique abstract unix socket address.
fn abstract_addr(label: &str) -> SockaddrUn {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("rsyscall-epoll-{}-{label}-{n}", std::process::id());
    SockaddrUn::new_abstract(name.as_bytes()).expect("abstract address")
}

#[test]
fn unix_socket_async_accept_and_connect() {
    on_local_and_child(|thread, label| async move {
        let addr = abstract_addr(label);
        let listener = thread
            .socket(AF::UNIX, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socket");
        listener.bind(&addr).await.expect("bind");
        listener.listen(8).await.expect("listen");
        let listener = thread.make_afd(listener, false).await.expect("make_afd");
        let client = thread
            .socket(AF::UNIX, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socket");
        let client = thread.make_afd(client, false).await.expect("make_afd");
        let (conn, connected) = zip(listener.accept(SOCK::NONBLOCK), client.connect(&addr)).await;
        connected.expect("connect");
        let conn = thread
            .make_afd(conn.expect("accept"), false)
            .await
            .expect("make_afd");

        client.write_all_bytes(b"ping").await.expect("write");
        assert_eq!(
            conn.read_some_bytes(16).await.expect("read"),
            b"ping",
            "{label}"
        );
        conn.write_all_bytes(b"pong").await.expect("write");
        assert_eq!(
            client.read_some_bytes(16).await.expect("read"),
            b"pong",
            "{label}"
        );

        // A hangup is seen even with data left unread.
        let (waited, ()) = zip(conn.wait_for_rdhup(), async {
            client.write_all_bytes(b"bye").await.expect("write");
            client.close().await.expect("close");
        })
        .await;
        within("wait_for_rdhup", async { waited.expect("wait_for_rdhup") }).await;
        assert_eq!(
            conn.read_some_bytes(16).await.expect("read"),
            b"bye",
            "{label}"
        );
        assert!(
            conn.read_some_bytes(16).await.expect("read").is_empty(),
            "{label}"
        );
        conn.close().await.expect("close");
        listener.close().await.expect("close");
    });
}

#[test]
fn tcp_socket_async_accept_connect_and_refusal() {
    on_local_and_child(|thread, label| async move {
        let listener = thread
            .socket(AF::INET, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socket");
        listener
            .bind(&SockaddrIn::new(Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        listener.listen(8).await.expect("listen");
        let addr = match listener.getsockname().await.expect("getsockname") {
            AnySockaddr::In(a) => a,
            other => panic!("{label}: not an IPv4 address: {other:?}"),
        };
        assert_ne!(addr.port(), 0);
        let listener = thread.make_afd(listener, false).await.expect("make_afd");
        let client = thread
            .socket(AF::INET, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socket");
        let client = thread.make_afd(client, false).await.expect("make_afd");
        let (accepted, connected) =
            zip(listener.accept_addr(SOCK::NONBLOCK), client.connect(&addr)).await;
        connected.expect("connect");
        let (conn, peer) = accepted.expect("accept");
        let ours = client.handle().getsockname().await.expect("getsockname");
        assert_eq!(
            format!("{peer:?}"),
            format!("{ours:?}"),
            "{label}: accept reports the client's address"
        );
        let conn = thread.make_afd(conn, false).await.expect("make_afd");
        let ((), got) = zip(
            async { client.write_all_bytes(b"over tcp").await.expect("write") },
            read_exact(&conn, 8),
        )
        .await;
        assert_eq!(got, b"over tcp", "{label}");
        conn.close().await.expect("close");
        client.close().await.expect("close");
        listener.close().await.expect("close");

        // A bound socket that does not listen refuses connections.
        let closed = thread
            .socket(AF::INET, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socket");
        closed
            .bind(&SockaddrIn::new(Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let closed_addr = closed.getsockname().await.expect("getsockname");
        let client = thread
            .socket(AF::INET, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socket");
        let client = thread.make_afd(client, false).await.expect("make_afd");
        let refused = within("connect to a closed port", client.connect(&closed_addr)).await;
        assert_eq!(
            refused.expect_err("connect to a closed port").errno(),
            Some(Errno::ECONNREFUSED),
            "{label}"
        );
        client.close().await.expect("close");
        closed.close().await.expect("close");
    });
}

#[test]
fn five_nested_forks_each_do_async_pipe_io() {
    run(async {
        let mut children: Vec<ChildThread> = Vec::new();
        let mut current = local_thread();
        for depth in 1..=5 {
            let child = current.clone(CLONE::empty()).await.expect("clone");
            current = child.duplicate();
            let (r, w) = afd_pipe(&current).await;
            let msg = format!("depth {depth}");
            let (got, ()) = zip(r.read_some_bytes(64), async {
                w.write_all_bytes(msg.as_bytes()).await.expect("write")
            })
            .await;
            assert_eq!(got.expect("read"), msg.as_bytes());
            r.close().await.expect("close");
            w.close().await.expect("close");
            children.push(child);
        }
        // All five at once, readers waiting first.
        let mut pipes = Vec::new();
        for child in &children {
            pipes.push(afd_pipe(child).await);
        }
        let reads: Vec<Pin<Box<dyn Future<Output = Vec<u8>> + '_>>> = pipes
            .iter()
            .map(|(r, _)| -> Pin<Box<dyn Future<Output = Vec<u8>>>> {
                Box::pin(async move { r.read_some_bytes(64).await.expect("read") })
            })
            .collect();
        let writes = async {
            for (i, (_, w)) in pipes.iter().enumerate().rev() {
                w.write_all_bytes(format!("level {i}").as_bytes())
                    .await
                    .expect("write");
            }
        };
        let (got, ()) = zip(join_all(reads), writes).await;
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, format!("level {i}").as_bytes());
        }
        for (r, w) in pipes {
            r.close().await.expect("close");
            w.close().await.expect("close");
        }
        while let Some(child) = children.pop() {
            exit_cleanly(child, "child").await;
        }
    })
}

#[test]
fn nested_async_in_a_grandchild() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let grandchild = child.clone(CLONE::empty()).await.expect("clone");
        let rooted = child.clone(CLONE::empty()).await.expect("clone");
        rooted.make_root_epoller().await.expect("make_root_epoller");
        let (r1, w1) = afd_pipe(&grandchild).await;
        let (r2, w2) = afd_pipe(&rooted).await;
        let (got, ()) = zip(zip(r1.read_some_bytes(64), r2.read_some_bytes(64)), async {
            w2.write_all_bytes(b"rooted").await.expect("write");
            w1.write_all_bytes(b"grandchild").await.expect("write");
        })
        .await;
        assert_eq!(got.0.expect("read"), b"grandchild");
        assert_eq!(got.1.expect("read"), b"rooted");
        for afd in [r1, w1, r2, w2] {
            afd.close().await.expect("close");
        }
        exit_cleanly(grandchild, "grandchild").await;
        exit_cleanly(rooted, "rooted").await;
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn unshare_files_then_async_on_a_root_epoller() {
    run(async {
        let child = local_thread().clone(CLONE::FILES).await.expect("clone");
        child.task().unshare_files().await.expect("unshare_files");
        // The local process cannot reach the child's new table: a typed error.
        let p = child.pipe().await.expect("pipe");
        let unreachable = child.make_afd(p.read, true).await;
        assert!(
            matches!(unreachable, Err(Error::InvalidArgument { .. })),
            "{unreachable:?}"
        );
        let channels = child.open_channels(1).await;
        assert!(
            matches!(channels, Err(Error::InvalidArgument { .. })),
            "{channels:?}"
        );
        drop(p.write);
        // Its own root epoller works.
        child.make_root_epoller().await.expect("make_root_epoller");
        let (r, w) = afd_pipe(&child).await;
        let (got, ()) = zip(r.read_some_bytes(64), async {
            w.write_all_bytes(b"unshared").await.expect("write")
        })
        .await;
        assert_eq!(got.expect("read"), b"unshared");
        r.close().await.expect("close");
        w.close().await.expect("close");
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn make_afd_refuses_an_fd_of_another_table() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let p = child.pipe().await.expect("pipe");
        let wrong = local_thread().make_afd(p.read, true).await;
        assert!(matches!(wrong, Err(Error::Mismatch(_))), "{wrong:?}");
        drop(p.write);
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn async_channels_carry_data_both_ways() {
    on_local_and_child(|thread, label| async move {
        assert!(
            thread
                .open_channels(0)
                .await
                .expect("open_channels")
                .is_empty()
        );
        let channels = thread
            .open_async_channels(3)
            .await
            .expect("open_async_channels");
        assert_eq!(channels.len(), 3);
        for (i, (ours, theirs)) in channels.iter().enumerate() {
            let to_us = format!("to us {i}");
            thread
                .task()
                .write_all_bytes(theirs, to_us.as_bytes())
                .await
                .expect("write");
            assert_eq!(
                ours.read_some_bytes(64).await.expect("read"),
                to_us.as_bytes(),
                "{label}"
            );
            let to_them = format!("to them {i}");
            ours.write_all_bytes(to_them.as_bytes())
                .await
                .expect("write");
            assert_eq!(
                thread.task().read_bytes(theirs, 64).await.expect("read"),
                to_them.as_bytes(),
                "{label}"
            );
        }
        for (ours, theirs) in channels {
            ours.close().await.expect("close");
            theirs.close().await.expect("close");
        }

        let plain = thread.open_channels(2).await.expect("open_channels");
        for (ours, theirs) in plain {
            let mut ours = UnixStream::from(ours);
            ours.write_all(b"plain").expect("write");
            assert_eq!(
                thread.task().read_bytes(&theirs, 64).await.expect("read"),
                b"plain",
                "{label}"
            );
            thread
                .task()
                .write_all_bytes(&theirs, b"back")
                .await
                .expect("write");
            let mut back = [0u8; 4];
            ours.read_exact(&mut back).expect("read");
            assert_eq!(&back, b"back", "{label}");
            theirs.close().await.expect("close");
        }
    });
}

#[test]
fn read_buffer_parses_lines_prefixed_strings_and_structs_across_partial_writes() {
    on_local_and_child(|thread, label| async move {
        let p = thread.pipe().await.expect("pipe");
        let r = thread.make_afd(p.read, true).await.expect("make_afd");
        let wfd = p.write;
        let task = thread.task();
        let mut buf = AsyncReadBuffer::new(r);

        task.write_all_bytes(&wfd, b"hel").await.expect("write");
        let (line, ()) = zip(buf.read_line(), async {
            task.write_all_bytes(&wfd, b"lo\nwor").await.expect("write")
        })
        .await;
        assert_eq!(line.expect("read_line"), b"hello", "{label}");
        assert_eq!(buf.buffered(), b"wor", "{label}: leftover kept");
        let (line, ()) = zip(buf.read_line(), async {
            task.write_all_bytes(&wfd, b"ld\n\n").await.expect("write")
        })
        .await;
        assert_eq!(line.expect("read_line"), b"world", "{label}");
        assert_eq!(buf.read_line().await.expect("empty line"), b"", "{label}");

        let payload = b"a length-prefixed payload";
        let mut framed = (payload.len() as u64).to_le_bytes().to_vec();
        framed.extend_from_slice(payload);
        task.write_all_bytes(&wfd, &framed[..3])
            .await
            .expect("write");
        let (got, ()) = zip(buf.read_length_prefixed(), async {
            task.write_all_bytes(&wfd, &framed[3..12])
                .await
                .expect("write");
            task.write_all_bytes(&wfd, &framed[12..])
                .await
                .expect("write");
        })
        .await;
        assert_eq!(got.expect("read_length_prefixed"), payload, "{label}");

        // Two items in one write, then structs split across writes.
        let mut both = 0u64.to_le_bytes().to_vec();
        both.extend_from_slice(b"next line\n");
        both.extend_from_slice(&0xdead_beef_u32.to_ne_bytes());
        both.extend_from_slice(&7u64.to_ne_bytes()[..5]);
        task.write_all_bytes(&wfd, &both).await.expect("write");
        assert_eq!(
            buf.read_length_prefixed().await.expect("empty string"),
            b"",
            "{label}"
        );
        assert_eq!(
            buf.read_line().await.expect("read_line"),
            b"next line",
            "{label}"
        );
        assert_eq!(
            buf.read_struct::<u32>().await.expect("u32"),
            0xdead_beef,
            "{label}"
        );
        let (got, ()) = zip(buf.read_struct::<u64>(), async {
            task.write_all_bytes(&wfd, &7u64.to_ne_bytes()[5..])
                .await
                .expect("write")
        })
        .await;
        assert_eq!(got.expect("u64"), 7, "{label}");

        // End of file in the middle of a line is an error; the bytes stay buffered.
        task.write_all_bytes(&wfd, b"partial").await.expect("write");
        wfd.close().await.expect("close");
        let err = buf.read_line().await.expect_err("EOF mid-line");
        assert_eq!(
            std::io::Error::from(err).kind(),
            std::io::ErrorKind::UnexpectedEof,
            "{label}"
        );
        assert_eq!(buf.buffered(), b"partial", "{label}");
        assert_eq!(
            buf.read_bytes(7).await.expect("read_bytes"),
            b"partial",
            "{label}"
        );
        let (afd, rest) = buf.into_parts();
        assert!(rest.is_empty());
        afd.close().await.expect("close");
    });
}

#[test]
fn cancelled_wait_on_a_root_epoller_loses_no_event() {
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        child.make_root_epoller().await.expect("make_root_epoller");
        let pid = child.pid().expect("pid").as_raw();
        let epfd = child
            .root_epoller()
            .expect("epoller")
            .epfd()
            .near()
            .as_raw();
        let mut channels = child.open_channels(2).await.expect("open_channels");
        let (ours_b, theirs_b) = channels.pop().expect("channel");
        let (ours_a, theirs_a) = channels.pop().expect("channel");
        let (mut ours_a, mut ours_b) = (UnixStream::from(ours_a), UnixStream::from(ours_b));
        let a = child.make_afd(theirs_a, true).await.expect("make_afd");
        let b = child.make_afd(theirs_b, true).await.expect("make_afd");

        // X waits on A and drives epoll_wait in the child; then Y waits on B too.
        let mut x = Box::pin(a.read_some_bytes(64));
        let mut y = Box::pin(b.read_some_bytes(64));
        let pending = |f: Poll<rsyscall::Result<Vec<u8>>>| assert!(f.is_pending(), "{f:?}");
        future::or(
            std::future::poll_fn(|cx| {
                pending(x.as_mut().poll(cx));
                Poll::<()>::Pending
            }),
            wait_in_epoll_wait(pid),
        )
        .await;
        future::or(
            std::future::poll_fn(|cx| {
                pending(x.as_mut().poll(cx));
                pending(y.as_mut().poll(cx));
                Poll::<()>::Pending
            }),
            async {
                while epoll_registrations(pid, epfd) < 3 {
                    async_io::Timer::after(Duration::from_millis(1)).await;
                }
                wait_in_epoll_wait(pid).await;
            },
        )
        .await;

        // B becomes readable from outside the child: the pending epoll_wait returns with
        // its one-shot event, and X is dropped before seeing it. Y must still wake.
        ours_b.write_all(b"for y").expect("write");
        drop(x);
        let got = within("the reader of B", y).await;
        assert_eq!(got.expect("read"), b"for y");
        ours_a.write_all(b"for a").expect("write");
        assert_eq!(a.read_some_bytes(64).await.expect("read"), b"for a");
        a.close().await.expect("close");
        b.close().await.expect("close");
        drop((ours_a, ours_b));
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        child.make_root_epoller().await.expect("make_root_epoller");
        let (r, w) = afd_pipe(&child).await;
        let read = r.read_some_bytes(8);
        assert_send(&read);
        let write = w.write_all_bytes(b"x");
        assert_send(&write);
        let ((), got) = zip(async { write.await.expect("write") }, read).await;
        assert_eq!(got.expect("read"), b"x");
        let rdhup = r.wait_for_rdhup();
        assert_send(&rdhup);
        drop(rdhup);
        let (lr, lw) = afd_pipe(&local_thread()).await;
        let local_rdhup = lr.wait_for_rdhup();
        assert_send(&local_rdhup);
        drop(local_rdhup);
        let local_read = lr.read_some_bytes(8);
        assert_send(&local_read);
        drop(local_read);
        lr.close().await.expect("close");
        lw.close().await.expect("close");
        let make = child.make_afd(child.stdin(), false);
        assert_send(&make);
        drop(make);
        let mut buf = AsyncReadBuffer::new(r);
        let line = buf.read_line();
        assert_send(&line);
        drop(line);
        let (r, _) = buf.into_parts();
        r.close().await.expect("close");
        w.close().await.expect("close");
        exit_cleanly(child, "child").await;
    })
}
