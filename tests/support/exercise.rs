//! What every kind of thread must do (issue 8 section 1), shared by the tests of each kind
//! (`tests/bootstrap.rs`, `tests/stub.rs`, `tests/persistent_thread.rs`): syscalls and its
//! memory, fd passing, channels and async I/O, clone and nested clone, and exec from its
//! children with their output captured.

use rsyscall::{CLONE, ChildState, FileDescriptor, Task, Thread};

use crate::programs::{sh, which};
use crate::tasks::child_with_stdout_pipe;

/// Everything of [`exercise_in_place`] and [`exercise_children`]. `label` names the kind
/// of thread in assertion messages.
pub async fn exercise(thread: &Thread, label: &str) {
    exercise_in_place(thread, label).await;
    exercise_children(thread, label).await;
}

/// What needs no child of `thread` (so also works on a thread that cannot clone, such as
/// a persistent thread attached to from another program): syscalls and in-band memory in
/// another process, a pipe made there, an fd passed to it, `open_async_channels` and
/// `open_channels` with async I/O (`make_afd`) on both ends.
pub async fn exercise_in_place(thread: &Thread, label: &str) {
    let task = thread.task();
    let pid = task.getpid().await.expect("getpid");
    assert_ne!(
        pid.as_raw() as u32,
        std::process::id(),
        "{label}: another process"
    );
    // Memory: a write and a read of its memory.
    let buf = task.ptr(&b"in its memory"[..]).await.expect("ptr");
    assert_eq!(buf.read().await.expect("read"), b"in its memory", "{label}");
    drop(buf);

    // A pipe made there, written and read there.
    let pipe = thread.pipe().await.expect("pipe");
    task.write_all_bytes(&pipe.write, b"through its pipe")
        .await
        .expect("write its pipe");
    assert_eq!(
        task.read_bytes(&pipe.read, 16)
            .await
            .expect("read its pipe"),
        b"through its pipe",
        "{label}"
    );
    drop(pipe);

    // fd passing: the write end of a local pipe, written there and read here.
    let (local_r, local_w) = std::io::pipe().expect("local pipe");
    let w_local =
        FileDescriptor::from_owned_fd(&Task::local(), std::os::fd::OwnedFd::from(local_w))
            .expect("wrap");
    let w_there = thread.pass_fd(&w_local).await.expect("pass_fd");
    task.write_all_bytes(&w_there, b"via a passed fd")
        .await
        .expect("write there");
    drop((w_there, w_local));
    let mut got = [0u8; 15];
    std::io::Read::read_exact(&mut { local_r }, &mut got).expect("read locally");
    assert_eq!(&got, b"via a passed fd", "{label}: fd passed to the thread");

    // open_async_channels, and async I/O on both ends.
    let mut chans = thread.open_async_channels(1).await.expect("async channels");
    let (ours, theirs) = chans.pop().expect("one channel");
    let theirs = thread.make_afd(theirs, true).await.expect("make_afd");
    ours.write_all_bytes(b"ping").await.expect("write ours");
    assert_eq!(
        theirs.read_some_bytes(16).await.expect("read"),
        b"ping",
        "{label}"
    );
    theirs.write_all_bytes(b"pong").await.expect("write theirs");
    assert_eq!(
        ours.read_some_bytes(16).await.expect("read"),
        b"pong",
        "{label}"
    );
    drop((ours, theirs));

    // open_channels: a plain local socket here, its end there read asynchronously while
    // we write after it started waiting.
    let mut chans = thread.open_channels(1).await.expect("channels");
    let (ours, theirs) = chans.pop().expect("one channel");
    let theirs = thread.make_afd(theirs, true).await.expect("make_afd");
    let reading = async { theirs.read_some_bytes(64).await.expect("read") };
    let writing = async {
        async_io::Timer::after(std::time::Duration::from_millis(20)).await;
        std::io::Write::write_all(&mut std::os::unix::net::UnixStream::from(ours), b"later")
            .expect("write ours");
    };
    let (got, ()) = futures_lite::future::zip(reading, writing).await;
    assert_eq!(got, b"later", "{label}: open_channels");
    // Our end was closed after the write: theirs reads the end of the stream.
    assert_eq!(
        theirs.read_some_bytes(64).await.expect("read"),
        b"",
        "{label}: end of stream"
    );
    drop(theirs);
}

/// Clone and nested clone from `thread`, with syscalls and memory in both, and exec from
/// each: a grandchild's output is read through its parent, and a child execs while a
/// sibling of that grandchild (holding a copy of its socket) lives, its output read
/// through `thread`.
pub async fn exercise_children(thread: &Thread, label: &str) {
    let pid = thread.task().getpid().await.expect("getpid");
    let (child, child_out) = child_with_stdout_pipe(thread).await;
    let child_pid = child.task().getpid().await.expect("child getpid");
    assert_ne!(child_pid, pid, "{label}: the child is another process");
    let (grandchild, grandchild_out) = child_with_stdout_pipe(&child).await;
    let g = grandchild.task();
    assert_ne!(
        g.getpid().await.expect("grandchild getpid"),
        child_pid,
        "{label}: the grandchild is another process"
    );
    let gbuf = g.ptr(&b"grandchild"[..]).await.expect("ptr");
    assert_eq!(gbuf.read().await.expect("read"), b"grandchild", "{label}");
    drop(gbuf);
    let p = grandchild
        .exec(sh("echo from the grandchild").await)
        .await
        .expect("exec the grandchild");
    assert_eq!(
        child
            .read_to_eof(&grandchild_out)
            .await
            .expect("read the grandchild's output"),
        b"from the grandchild\n",
        "{label}"
    );
    assert_eq!(
        p.wait().await.expect("wait"),
        ChildState::Exited(0),
        "{label}"
    );
    grandchild_out.close().await.expect("close");
    // The child execs while another of its children (with a copy of its socket) lives:
    // the futex helper in their address space must report it.
    let sibling = child.clone(CLONE::empty()).await.expect("nested clone");
    sibling.task().getpid().await.expect("getpid");
    let p = child
        .exec(sh("echo from the child; exit 5").await)
        .await
        .expect("exec the child");
    assert_eq!(
        p.wait().await.expect("wait"),
        ChildState::Exited(5),
        "{label}"
    );
    let p = sibling
        .exec(which("true").await)
        .await
        .expect("exec the grandchild");
    assert_eq!(
        p.wait().await.expect("wait"),
        ChildState::Exited(0),
        "{label}"
    );
    // Every writer (the child, the sibling's copy of its stdout) is gone.
    assert_eq!(
        thread
            .read_to_eof(&child_out)
            .await
            .expect("read the child's output"),
        b"from the child\n",
        "{label}"
    );
}
