//! The sketches of shared/design/API.md as tested examples: what using the library should
//! feel like, running for real.

use rsyscall::handle::structs::{Cmsg, SendCmsg, Sigset, cmsg_space};
use rsyscall::{AF, CLONE, MSG, SOCK, Signal, SockType, local_thread};
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child, run};

/// "Memory is explicit and typed".
#[test]
fn memory_is_explicit_and_typed() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let pipe = thread.pipe().await.expect("pipe");
        task.write_all_bytes(&pipe.write, b"typed")
            .await
            .expect("write");

        let buf = task.malloc_bytes(4096).await.expect("malloc"); // Pointer<[u8]>, uninitialised
        let (data, rest) = pipe.read.read(buf).await.expect("read"); // the filled part and the rest
        let bytes: Vec<u8> = data.read().await.expect("read back");
        assert_eq!(bytes, b"typed", "{label}");
        assert_eq!(rest.size(), 4096 - 5);

        let mask = task
            .ptr(&Sigset::from([Signal::SIGCHLD]))
            .await
            .expect("ptr"); // WrittenPointer<Sigset>
        assert!(mask.read().await.expect("read").contains(Signal::SIGCHLD));

        // Received fds arrive as owning handles, exactly once.
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        task.sendmsg_bytes(
            &a,
            &[b"x"],
            &[SendCmsg::Rights(&[&pipe.write])],
            MSG::empty(),
        )
        .await
        .expect("sendmsg");
        let (data, msg) = task
            .recvmsg_bytes(&b, 1, cmsg_space(4), MSG::empty())
            .await
            .expect("recvmsg");
        assert_eq!(data, b"x");
        let fds: Vec<_> = msg
            .control
            .into_iter()
            .flat_map(|c| match c {
                Cmsg::Rights(fds) => fds,
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(fds.len(), 1, "{label}");
        task.write_all_bytes(&fds[0], b"via passed fd")
            .await
            .expect("write through it");
        assert_eq!(
            task.read_bytes(&pipe.read, 100).await.expect("read"),
            b"via passed fd"
        );

        // A pointer of another address space or an fd of another table is refused before
        // anything is sent.
        let other = local_thread().clone(CLONE::empty()).await.expect("clone");
        let err = other
            .task()
            .write_bytes(&pipe.write, b"no")
            .await
            .expect_err("other table");
        assert!(
            matches!(err, rsyscall::Error::Mismatch(_)),
            "{label}: {err}"
        );
    })
}

/// "Many processes from one program, concurrently".
#[test]
fn many_processes_concurrently() {
    run(async {
        let parent = local_thread();
        let (a, b) =
            futures_lite::future::zip(parent.clone(CLONE::empty()), parent.clone(CLONE::FILES))
                .await;
        let (a, b) = (a.expect("clone"), b.expect("clone"));
        // Syscalls in different children run in parallel; syscalls to one child pipeline
        // over its socket.
        let many_a: Vec<_> = (0..32).map(|_| a.task().getpid()).collect();
        let many_b: Vec<_> = (0..32).map(|_| b.task().getpid()).collect();
        let (pa, pb) = futures_lite::future::zip(join_all(many_a), join_all(many_b)).await;
        assert!(pa.iter().all(|p| p.as_ref().ok() == a.pid().as_ref()));
        assert!(pb.iter().all(|p| p.as_ref().ok() == b.pid().as_ref()));
        for c in [a, b] {
            exit_cleanly(c, "child").await;
        }
    })
}

/// Polls every future together (a tiny join_all, so no extra dependency).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// "Run a program inside fresh namespaces, with its output captured".
#[test]
fn a_program_in_fresh_namespaces_with_its_output_captured() {
    run(async {
        let ours_before = tmp_tmpfs_mounts();
        let parent = local_thread();
        let child = parent
            .clone(CLONE::NEWUSER | CLONE::NEWPID | CLONE::NEWNS)
            .await
            .expect("clone into new user, pid and mount namespaces");
        child
            .mount("tmpfs", "/tmp", "tmpfs", rsyscall::MS::empty(), "")
            .await
            .expect("mount runs inside the child");
        let pipe = parent.pipe().await.expect("pipe");
        let write_end = child
            .pass_fd(&pipe.write)
            .await
            .expect("same pipe, child's table");
        child
            .task()
            .dup2(&write_end, &child.stdout())
            .await
            .expect("dup2");
        write_end.close().await.expect("close");
        drop(pipe.write);
        let echo = parent.environ().which("sh").await.expect("which sh").args([
            "-c",
            "echo $$; id -u; grep -c ' /tmp tmpfs ' /proc/self/mounts",
        ]);
        let process = child.exec(echo).await.expect("exec");
        let out = parent.read_to_eof(&pipe.read).await.expect("read");
        process.check().await.expect("clean exit");
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("1\n{uid}\n1\n"),
            "pid 1 of its namespace, our uid mapped, its own /tmp"
        );
        // Our mount table is untouched.
        assert_eq!(
            tmp_tmpfs_mounts(),
            ours_before,
            "the mount stayed in the child's namespace"
        );
    })
}

/// How many tmpfs mounts at /tmp our own mount namespace has.
fn tmp_tmpfs_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" /tmp tmpfs "))
        .count()
}

/// "Non-blocking IO on any thread's fds".
#[test]
fn non_blocking_io_on_any_threads_fds() {
    on_local_and_child(|thread, label| async move {
        let listener = thread
            .socket(
                rsyscall::AF::INET,
                rsyscall::SockType::STREAM,
                rsyscall::SOCK::NONBLOCK,
            )
            .await
            .expect("socket");
        let addr = thread
            .bind_getsockname(
                &listener,
                &rsyscall::structs::SockaddrIn::new(std::net::Ipv4Addr::LOCALHOST, 0),
            )
            .await
            .expect("bind");
        listener.listen(8).await.expect("listen");
        let listener = thread.make_afd(listener, false).await.expect("make_afd");
        let sock = thread
            .socket(
                rsyscall::AF::INET,
                rsyscall::SockType::STREAM,
                rsyscall::SOCK::empty(),
            )
            .await
            .expect("socket");
        let afd = thread
            .make_afd(sock, true)
            .await
            .expect("registered on the thread's epoller");
        let (conn, connected) = futures_lite::future::zip(
            listener.accept(rsyscall::SOCK::NONBLOCK),
            afd.connect(&addr),
        )
        .await;
        connected.expect("connect");
        let conn = thread
            .make_afd(conn.expect("accept"), false)
            .await
            .expect("make_afd");
        afd.write_all_bytes(b"hello").await.expect("write");
        let reply = conn.read_some_bytes(4096).await.expect("read");
        assert_eq!(reply, b"hello", "{label}");
    })
}
