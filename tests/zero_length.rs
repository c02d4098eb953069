//! Zero-length buffers mean zero bytes: a read, write or receive of length 0 is passed to
//! the kernel as length 0 and does what the kernel does with it (a read of 0 from a pipe
//! returns 0 at once, even when the pipe is empty), on the local task and on a clone child.
//!
//! Every call that could block is raced against a timer, so a call that blocks fails the
//! test instead of hanging it. On the local task the pipes are non-blocking: a read of one
//! byte from an empty one fails with `EAGAIN` instead of blocking the test's own thread.

use std::future::Future;
use std::time::Duration;

use rsyscall::near::MFD;
use rsyscall::{AF, MSG, O, SOCK, SockType, Thread};
use rsyscall_tests::tasks::on_local_and_child;

/// How long a call that should return at once may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);

/// `f`, or a panic naming `what` if it has not finished after [`BOUND`].
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    futures_lite::future::or(f, async {
        async_io::Timer::after(BOUND).await;
        panic!("{what} blocked for {BOUND:?}");
    })
    .await
}

/// The pipe flags for `label`: non-blocking on the local task (see the module docs).
fn pipe_flags(label: &str) -> O {
    if label == "local" {
        O::NONBLOCK
    } else {
        O::empty()
    }
}

#[test]
fn reads_of_zero_bytes_return_at_once_from_an_empty_pipe() {
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let pipe = task.pipe2(pipe_flags(label)).await.expect("pipe");
        let got = bounded("read(fd, 0)", task.read_bytes(&pipe.read, 0)).await;
        assert_eq!(got.expect("read(fd, 0)"), b"", "{label}");

        let buf = task.malloc_bytes(0).await.expect("malloc_bytes(0)");
        assert_eq!(buf.size(), 0, "{label}: a 0-byte allocation has 0 bytes");
        let (filled, rest) = bounded("FileDescriptor::read", pipe.read.read(buf))
            .await
            .expect("FileDescriptor::read of 0 bytes");
        assert_eq!((filled.size(), rest.size()), (0, 0), "{label}");

        let bufs = vec![task.malloc_bytes(0).await.expect("malloc_bytes(0)")];
        let (filled, rest) = bounded("readv", pipe.read.readv(bufs))
            .await
            .expect("readv of one 0-byte buffer");
        let total: usize = filled.iter().map(|b| b.size()).sum();
        assert_eq!(total, 0, "{label}: readv filled nothing");
        assert_eq!(rest.iter().map(|b| b.size()).sum::<usize>(), 0, "{label}");

        // With data waiting, a read of 0 still takes nothing.
        task.write_all_bytes(&pipe.write, b"x")
            .await
            .expect("write");
        let got = bounded("read(fd, 0)", task.read_bytes(&pipe.read, 0)).await;
        assert_eq!(got.expect("read(fd, 0)"), b"", "{label}: took a byte");
        let got = bounded("read(fd, 1)", task.read_bytes(&pipe.read, 1)).await;
        assert_eq!(got.expect("read(fd, 1)"), b"x", "{label}");
    });
}

#[test]
fn zero_length_file_reads_and_writes_take_nothing() {
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = task
            .memfd_create(b"zero_length", MFD::empty())
            .await
            .expect("memfd_create");
        task.write_all_bytes(&fd, b"abc").await.expect("write");
        assert_eq!(
            task.pread_bytes(&fd, 0, 0).await.expect("pread"),
            b"",
            "{label}"
        );
        assert_eq!(
            task.pread_bytes(&fd, 0, 1).await.expect("pread"),
            b"",
            "{label}"
        );
        fd.lseek(0, rsyscall::near::SEEK::SET).await.expect("lseek");
        assert_eq!(task.read_bytes(&fd, 0).await.expect("read"), b"", "{label}");
        // Nothing was consumed: the offset is still at the start.
        assert_eq!(
            task.read_bytes(&fd, 3).await.expect("read"),
            b"abc",
            "{label}"
        );

        assert_eq!(
            task.write_bytes(&fd, b"").await.expect("write"),
            0,
            "{label}"
        );
        assert_eq!(
            task.pwrite_bytes(&fd, b"", 1).await.expect("pwrite"),
            0,
            "{label}"
        );
        task.write_all_bytes(&fd, b"").await.expect("write_all");
        assert_eq!(
            task.pread_bytes(&fd, 16, 0).await.expect("pread"),
            b"abc",
            "{label}: the file is unchanged"
        );
    });
}

#[test]
fn a_zero_length_receive_takes_no_byte_of_a_datagram() {
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::DGRAM, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        task.write_all_bytes(&a, b"hello").await.expect("send");
        let (data, _) = bounded("recvfrom(fd, 0)", task.recvfrom_bytes(&b, 0, MSG::DONTWAIT))
            .await
            .expect("recvfrom of 0 bytes");
        assert_eq!(data, b"", "{label}: a 0-byte receive got bytes");
    });
}

#[test]
fn async_reads_of_zero_bytes_return_at_once() {
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let pipe = task.pipe().await.expect("pipe");
        let afd = thread.make_afd(pipe.read, true).await.expect("make_afd");
        let got = bounded("read_some_bytes(0)", afd.read_some_bytes(0)).await;
        assert_eq!(got.expect("read_some_bytes(0)"), b"", "{label}");
        let buf = task.malloc_bytes(0).await.expect("malloc_bytes(0)");
        let (filled, _) = bounded("AsyncFileDescriptor::read", afd.read(buf))
            .await
            .expect("AsyncFileDescriptor::read of 0 bytes");
        assert_eq!(filled.size(), 0, "{label}");
        drop(pipe.write);
    });
}
