//! Many children at once: 200 clone children alive together, each pipelining 100 `getpid`
//! requests with I/O through a pipe in its own fd table, every result checked; once under
//! `async_io::block_on` (all in one task) and once on a multi-threaded tokio runtime (a task
//! per child, spread over its workers).
//!
//! The two tests take the binary's lock, so that at most 200 children exist at a time.

use std::future::Future;
use std::time::{Duration, Instant};

use rsyscall::{CLONE, ChildThread, Thread, local_thread};
use rsyscall_tests::errors::serial;
use rsyscall_tests::procs::count_children;
use rsyscall_tests::tasks::{exit_cleanly, join_all, run};

/// Children alive at once.
const CHILDREN: usize = 200;
/// `getpid` requests each child has in flight together.
const GETPIDS: usize = 100;
/// Messages each child writes into its pipe (all in flight together) and reads back.
const MESSAGES: usize = 8;
/// Bytes in a message: at most `PIPE_BUF`, so that each write is atomic.
const MESSAGE_LEN: usize = 24;
/// Worker threads of the tokio runtime.
const WORKERS: usize = 4;

/// Message `k` of child `i`: distinct for every pair.
fn message(i: usize, k: usize) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    let text = format!("child {i:03} message {k:02}.");
    m[..text.len()].copy_from_slice(text.as_bytes());
    for (j, b) in m.iter_mut().enumerate().skip(text.len()) {
        *b = (i * 31 + k * 7 + j) as u8;
    }
    m
}

/// Each child has its own fd table, and several fds in ours: make sure the limit on open
/// fds is not what is measured.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only `lim`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads only `lim`.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Child `i`'s work: a pipe in its table, then, all at once, [`GETPIDS`] `getpid` requests
/// and [`MESSAGES`] writes into the pipe; then the messages are read back. Every `getpid`
/// must give the child's pid and the pipe must hold each message once, whole.
async fn work(child: &Thread, i: usize) {
    let task = child.task();
    let pid = task.pid();
    let pipe = child
        .pipe()
        .await
        .unwrap_or_else(|e| panic!("child {i}: pipe: {e}"));
    let messages: Vec<[u8; MESSAGE_LEN]> = (0..MESSAGES).map(|k| message(i, k)).collect();
    let mut futs: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
    for n in 0..GETPIDS {
        futs.push(Box::pin(async move {
            let got = task
                .getpid()
                .await
                .unwrap_or_else(|e| panic!("child {i}: getpid {n}: {e}"));
            assert_eq!(got, pid, "child {i}: getpid {n}");
        }));
        // A write after every few getpids, so the two kinds of request interleave.
        if n % (GETPIDS / MESSAGES) == 0 && n / (GETPIDS / MESSAGES) < MESSAGES {
            let (m, w) = (&messages[n / (GETPIDS / MESSAGES)], &pipe.write);
            futs.push(Box::pin(async move {
                let written = task
                    .write_bytes(w, m)
                    .await
                    .unwrap_or_else(|e| panic!("child {i}: write: {e}"));
                assert_eq!(written, MESSAGE_LEN, "child {i}: a short write to a pipe");
            }));
        }
    }
    join_all(futs).await;
    let total = MESSAGES * MESSAGE_LEN;
    let mut got = Vec::new();
    while got.len() < total {
        let chunk = task
            .read_bytes(&pipe.read, total - got.len())
            .await
            .unwrap_or_else(|e| panic!("child {i}: read: {e}"));
        assert!(!chunk.is_empty(), "child {i}: EOF on a pipe we hold open");
        got.extend_from_slice(&chunk);
    }
    // The writes were sent together: their order in the pipe is theirs to choose, but each
    // message is there once and whole.
    let mut read: Vec<&[u8]> = got.chunks(MESSAGE_LEN).collect();
    read.sort();
    let mut sent: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
    sent.sort();
    assert!(read == sent, "child {i}: the pipe gave back {got:?}");
}

/// Checks that `children` are [`CHILDREN`] distinct processes, all alive now.
fn all_alive(children: &[ChildThread]) {
    let pids: std::collections::HashSet<i32> = children
        .iter()
        .map(|c| c.pid().expect("not exec'd or exited").as_raw())
        .collect();
    assert_eq!(pids.len(), CHILDREN, "distinct children");
    let alive: std::collections::HashSet<i32> = rsyscall_tests::procs::children()
        .iter()
        .filter(|c| !c.zombie)
        .map(|c| c.pid)
        .collect();
    assert!(pids.is_subset(&alive), "all children alive at once");
}

/// Fails if children of ours are left once the service thread had time to reap them.
async fn no_children_left(what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_children().0 > 0 && Instant::now() < deadline {
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    assert_eq!(count_children(), (0, 0), "{what}: children left behind");
}

#[test]
fn two_hundred_children_pipelining_under_async_io() {
    let _g = serial();
    raise_fd_limit();
    run(async {
        let start = Instant::now();
        let local = local_thread();
        let clones = (0..CHILDREN).map(|i| {
            let local = &local;
            async move {
                local
                    .clone(CLONE::empty())
                    .await
                    .unwrap_or_else(|e| panic!("clone {i}: {e}"))
            }
        });
        let children: Vec<ChildThread> = join_all(clones.collect()).await;
        let cloned = start.elapsed();
        all_alive(&children);
        join_all(
            children
                .iter()
                .enumerate()
                .map(|(i, c)| work(c, i))
                .collect(),
        )
        .await;
        let worked = start.elapsed();
        join_all(
            children
                .into_iter()
                .enumerate()
                .map(|(i, c)| async move { exit_cleanly(c, &format!("child {i}")).await })
                .collect(),
        )
        .await;
        no_children_left("async-io").await;
        eprintln!(
            "async-io: {CHILDREN} clones in {cloned:?}, their work done at {worked:?}, all \
             exited and reaped at {:?}",
            start.elapsed()
        );
    })
}

#[test]
fn two_hundred_children_pipelining_under_tokio() {
    let _g = serial();
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    let body = async {
        let start = Instant::now();
        // A task per clone, then a task per child's work, then a task per exit: between
        // the first phase and the last, all the children are alive.
        let clones: Vec<_> = (0..CHILDREN)
            .map(|i| {
                tokio::spawn(async move {
                    local_thread()
                        .clone(CLONE::empty())
                        .await
                        .unwrap_or_else(|e| panic!("clone {i}: {e}"))
                })
            })
            .collect();
        let mut children = Vec::new();
        for c in clones {
            children.push(c.await.expect("clone task"));
        }
        let cloned = start.elapsed();
        all_alive(&children);
        let works: Vec<_> = children
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                tokio::spawn(async move {
                    work(&c, i).await;
                    c
                })
            })
            .collect();
        let mut children = Vec::new();
        for w in works {
            children.push(w.await.expect("work task"));
        }
        let worked = start.elapsed();
        let exits: Vec<_> = children
            .into_iter()
            .enumerate()
            .map(|(i, c)| tokio::spawn(async move { exit_cleanly(c, &format!("child {i}")).await }))
            .collect();
        for e in exits {
            e.await.expect("exit task");
        }
        no_children_left("tokio").await;
        eprintln!(
            "tokio: {CHILDREN} clones in {cloned:?}, their work done at {worked:?}, all \
             exited and reaped at {:?}",
            start.elapsed()
        );
    };
    let outcome = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), tokio::spawn(body)).await
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the test task failed: {e}"),
        Err(_) => panic!("hung for 120 s"),
    }
}
