//! Fd syscalls: read/write variants, dup, fcntl, ioctl, memfd, on the local task and a clone child.
//!
//! Every test takes the `serial()` lock, so that the leak test can measure the shared
//! allocator and fd table while nothing else in this binary runs.

use std::os::unix::ffi::OsStrExt;

use rsyscall::handle::structs::{Flock, IOV_MAX};
use rsyscall::near::{FALLOC, FD, LockCmd, LockType, MFD, RWF, SEEK};
use rsyscall::{CLONE, Errno, Error, FileDescriptor, O, Task, Thread, local_thread};
use rsyscall_handle::{Pointer, WrittenPointer};
use rsyscall_tests::errors::{assert_errno, assert_invalid, serial};
use rsyscall_tests::procs::{open_fds_of, settled};
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child};

async fn bytes(task: &Task, data: &[u8]) -> WrittenPointer<[u8]> {
    task.ptr(data).await.expect("ptr")
}

async fn buffers(task: &Task, sizes: &[usize]) -> Vec<Pointer<[u8]>> {
    let mut v = Vec::new();
    for &n in sizes {
        v.push(task.malloc_bytes(n).await.expect("malloc"));
    }
    v
}

async fn memfd(task: &Task) -> FileDescriptor {
    task.memfd_create(b"handle_fd", MFD::empty())
        .await
        .expect("memfd_create")
}

async fn size(fd: &FileDescriptor) -> u64 {
    let pos = fd.lseek(0, SEEK::CUR).await.expect("lseek CUR");
    let end = fd.lseek(0, SEEK::END).await.expect("lseek END");
    fd.lseek(pos as i64, SEEK::SET).await.expect("lseek SET");
    end
}

/// Reopens `fd`'s file through `/proc/<pid>/fd/<n>`: a new open file description.
async fn reopen(task: &Task, fd: &FileDescriptor) -> FileDescriptor {
    let path = fd.as_proc_path();
    task.open(path.as_os_str().as_bytes(), O::RDWR, 0)
        .await
        .expect("open /proc/<pid>/fd/<n>")
}

#[test]
fn pipe_read_write_and_vectored() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let pipe = thread.pipe().await.expect("pipe");
        task.write_all_bytes(&pipe.write, b"hello")
            .await
            .expect("write");
        assert_eq!(
            task.read_bytes(&pipe.read, 64).await.expect("read"),
            b"hello"
        );

        // writev: everything written, in order.
        let bufs = vec![
            bytes(task, b"ab").await,
            bytes(task, b"cde").await,
            bytes(task, b"f").await,
        ];
        let (written, rest) = pipe.write.writev(bufs).await.expect("writev");
        assert_eq!(written.len(), 3, "{label}");
        assert!(rest.is_empty(), "{label}");

        // readv over [2, 4, 10]: two whole buffers, the third untouched.
        let (filled, rest) = pipe
            .read
            .readv(buffers(task, &[2, 4, 10]).await)
            .await
            .expect("readv");
        assert_eq!(filled.len(), 2, "{label}");
        assert_eq!(filled[0].read().await.expect("read"), b"ab");
        assert_eq!(filled[1].read().await.expect("read"), b"cdef");
        assert_eq!(rest.iter().map(Pointer::size).collect::<Vec<_>>(), [10]);

        // A partly filled buffer is split into its filled part and the rest.
        task.write_all_bytes(&pipe.write, b"xyz")
            .await
            .expect("write");
        let (filled, rest) = pipe
            .read
            .readv(buffers(task, &[2, 5, 3]).await)
            .await
            .expect("readv");
        assert_eq!(filled.len(), 2, "{label}");
        assert_eq!(filled[0].read().await.expect("read"), b"xy");
        assert_eq!(filled[1].read().await.expect("read"), b"z");
        assert_eq!(rest.iter().map(Pointer::size).collect::<Vec<_>>(), [4, 3]);

        // preadv2/pwritev2 at the current offset work on pipes; an explicit offset does not.
        let (w, _) = pipe
            .write
            .pwritev2(vec![bytes(task, b"123").await], None, RWF::empty())
            .await
            .expect("pwritev2");
        assert_eq!(w.len(), 1);
        let (r, _) = pipe
            .read
            .preadv2(buffers(task, &[8]).await, None, RWF::empty())
            .await
            .expect("preadv2");
        assert_eq!(r[0].read().await.expect("read"), b"123");
        assert_errno(
            pipe.read
                .preadv2(buffers(task, &[8]).await, Some(0), RWF::empty())
                .await,
            Errno::ESPIPE,
            "preadv2 at an offset on a pipe",
        );
        assert_errno(
            pipe.write
                .pwritev2(vec![bytes(task, b"1").await], Some(0), RWF::empty())
                .await,
            Errno::ESPIPE,
            "pwritev2 at an offset on a pipe",
        );

        // A partial writev: a nonblocking pipe takes only what fits.
        pipe.write.set_nonblock(true).await.expect("nonblock");
        let bufs = vec![
            bytes(task, &[1u8; 60000]).await,
            bytes(task, &[2u8; 10000]).await,
        ];
        let (written, rest) = pipe.write.writev(bufs).await.expect("partial writev");
        let total = |v: &[WrittenPointer<[u8]>]| v.iter().map(WrittenPointer::size).sum::<usize>();
        let n = total(&written);
        assert!((60000..70000).contains(&n), "{label}: wrote {n}");
        assert_eq!(n + total(&rest), 70000, "{label}");
        assert_eq!((written.len(), rest.len()), (2, 1), "{label}");
        assert_eq!(rest[0].read().await.expect("read"), vec![2u8; 70000 - n]);
        assert_eq!(pipe.read.fionread().await.expect("fionread"), n);
        let got = task.read_bytes(&pipe.read, 70000).await.expect("drain");
        assert_eq!(got.len(), n);
        assert!(got[..60000].iter().all(|&b| b == 1) && got[60000..].iter().all(|&b| b == 2));

        // EOF: an empty filled prefix.
        drop(pipe.write);
        task.flush_closes().await.expect("flush");
        let (filled, rest) = pipe
            .read
            .readv(buffers(task, &[4]).await)
            .await
            .expect("readv at EOF");
        assert!(filled.is_empty(), "{label}");
        assert_eq!(rest.len(), 1);
    });
}

#[test]
fn pread_pwrite_on_memfd() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = memfd(task).await;
        assert_eq!(
            task.pwrite_bytes(&fd, b"hello", 10).await.expect("pwrite"),
            5
        );
        assert_eq!(size(&fd).await, 15, "{label}");
        // The hole before the data reads as zeros; positional I/O leaves the offset alone.
        let mut expect = vec![0u8; 10];
        expect.extend_from_slice(b"hello");
        assert_eq!(task.pread_bytes(&fd, 64, 0).await.expect("pread"), expect);
        assert_eq!(task.pread_bytes(&fd, 3, 11).await.expect("pread"), b"ell");
        assert!(
            task.pread_bytes(&fd, 8, 15)
                .await
                .expect("pread at end")
                .is_empty()
        );
        assert!(
            task.pread_bytes(&fd, 8, 1000)
                .await
                .expect("pread past end")
                .is_empty()
        );
        assert_eq!(fd.lseek(0, SEEK::CUR).await.expect("lseek"), 0, "{label}");

        // Typed pointers: the filled part and the rest.
        let (data, rest) = fd
            .pread(task.malloc_bytes(8).await.expect("malloc"), 12)
            .await
            .expect("pread");
        assert_eq!(data.read().await.expect("read"), b"llo");
        assert_eq!(rest.size(), 5);

        // ftruncate extends with zeros and cuts.
        fd.ftruncate(4096).await.expect("ftruncate");
        assert_eq!(size(&fd).await, 4096);
        assert_eq!(
            task.pread_bytes(&fd, 4096, 15).await.expect("pread"),
            vec![0u8; 4081]
        );
        fd.ftruncate(3).await.expect("ftruncate");
        assert_eq!(size(&fd).await, 3);
        assert_eq!(
            task.pread_bytes(&fd, 64, 0).await.expect("pread"),
            [0, 0, 0]
        );

        // Vectored positional I/O.
        let (w, rest) = fd
            .pwritev2(
                vec![bytes(task, b"abc").await, bytes(task, b"de").await],
                Some(100),
                RWF::empty(),
            )
            .await
            .expect("pwritev2");
        assert_eq!((w.len(), rest.len()), (2, 0));
        let (r, rest) = fd
            .preadv2(buffers(task, &[1, 3, 4]).await, Some(100), RWF::empty())
            .await
            .expect("preadv2");
        assert_eq!(r.len(), 3, "{label}");
        assert_eq!(r[0].read().await.expect("read"), b"a");
        assert_eq!(r[1].read().await.expect("read"), b"bcd");
        assert_eq!(r[2].read().await.expect("read"), b"e");
        assert_eq!(rest.iter().map(Pointer::size).collect::<Vec<_>>(), [3]);
        assert_eq!(fd.lseek(0, SEEK::CUR).await.expect("lseek"), 0);
        // None: at the current offset, which moves.
        fd.lseek(101, SEEK::SET).await.expect("lseek");
        let (r, _) = fd
            .preadv2(buffers(task, &[2]).await, None, RWF::empty())
            .await
            .expect("preadv2");
        assert_eq!(r[0].read().await.expect("read"), b"bc");
        assert_eq!(fd.lseek(0, SEEK::CUR).await.expect("lseek"), 103);
        assert_eq!(fd.lseek(-3, SEEK::CUR).await.expect("lseek"), 100);
        assert_errno(
            fd.lseek(-1, SEEK::SET).await,
            Errno::EINVAL,
            "negative seek",
        );
        // Flags reach the kernel: an unknown one is refused by it.
        assert_errno(
            fd.preadv2(
                buffers(task, &[4]).await,
                Some(0),
                RWF::from_bits_retain(1 << 30),
            )
            .await,
            Errno::EOPNOTSUPP,
            "preadv2 with an unknown flag",
        );
        let (r, _) = fd
            .preadv2(buffers(task, &[3]).await, Some(100), RWF::HIPRI)
            .await
            .expect("preadv2 HIPRI");
        assert_eq!(r[0].read().await.expect("read"), b"abc");

        // fsync: fine on a memfd, EINVAL on a pipe.
        fd.fsync().await.expect("fsync");
        let pipe = thread.pipe().await.expect("pipe");
        assert_errno(pipe.read.fsync().await, Errno::EINVAL, "fsync on a pipe");
        assert_errno(
            pipe.read.lseek(0, SEEK::CUR).await,
            Errno::ESPIPE,
            "lseek pipe",
        );
        assert_errno(
            task.pread_bytes(&pipe.read, 4, 0).await,
            Errno::ESPIPE,
            "pread pipe",
        );
        assert_errno(
            pipe.read.ftruncate(0).await,
            Errno::EINVAL,
            "ftruncate pipe",
        );
    });
}

#[test]
fn memfd_create_names_and_owns_the_fd() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = task
            .memfd_create(b"some name", MFD::ALLOW_SEALING)
            .await
            .expect("memfd_create");
        assert_eq!(fd.fcntl_getfd().await.expect("getfd"), FD::CLOEXEC);
        assert!(fd.fcntl_getfl().await.expect("getfl").contains(O::RDWR));
        // The path names the task's fd (the test process sees the child's pid namespace).
        let path = fd.as_proc_path();
        assert_eq!(
            path.to_string_lossy(),
            format!("/proc/{}/fd/{}", task.pid().as_raw(), fd.near().as_raw())
        );
        let target = std::fs::read_link(&path).expect("readlink");
        assert!(
            target.to_string_lossy().starts_with("/memfd:some name"),
            "{label}: {target:?}"
        );
        let longest = vec![b'x'; 249];
        task.memfd_create(&longest, MFD::empty())
            .await
            .expect("249-byte name");
        // Closing is explicit and happens once.
        let n = fd.near().as_raw();
        fd.close().await.expect("close");
        assert!(
            std::fs::read_link(format!("/proc/{}/fd/{n}", task.pid().as_raw())).is_err(),
            "{label}: fd {n} is still open after close"
        );
    });
}

#[test]
fn ficlonerange_on_memfd_is_not_supported() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let src = memfd(task).await;
        let dest = memfd(task).await;
        task.pwrite_bytes(&src, &[7u8; 8192], 0)
            .await
            .expect("pwrite");
        // tmpfs has no shared extents: the kernel refuses before looking at the range.
        assert_errno(
            dest.clone_range_from(&src, 0, 4096, 0).await,
            Errno::EOPNOTSUPP,
            label,
        );
        assert_errno(
            dest.clone_range_from(&src, 0, 0, 0).await,
            Errno::EOPNOTSUPP,
            label,
        );
    });
}

#[test]
fn fcntl_flags_round_trip() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let pipe = thread.pipe().await.expect("pipe");
        let fl = pipe.read.fcntl_getfl().await.expect("getfl");
        assert!(!fl.contains(O::NONBLOCK), "{label}: {fl:?}");

        pipe.read.set_nonblock(true).await.expect("nonblock on");
        assert!(
            pipe.read
                .fcntl_getfl()
                .await
                .expect("getfl")
                .contains(O::NONBLOCK)
        );
        assert_errno(
            task.read_bytes(&pipe.read, 4).await,
            Errno::EAGAIN,
            "read from an empty nonblocking pipe",
        );
        pipe.read
            .set_nonblock(true)
            .await
            .expect("nonblock on again");
        pipe.read.set_nonblock(false).await.expect("nonblock off");
        assert!(
            !pipe
                .read
                .fcntl_getfl()
                .await
                .expect("getfl")
                .contains(O::NONBLOCK)
        );

        // Pipes are created close-on-exec.
        assert_eq!(pipe.read.fcntl_getfd().await.expect("getfd"), FD::CLOEXEC);
        pipe.read.disable_cloexec().await.expect("disable");
        assert_eq!(pipe.read.fcntl_getfd().await.expect("getfd"), FD::empty());
        pipe.read.enable_cloexec().await.expect("enable");
        assert_eq!(pipe.read.fcntl_getfd().await.expect("getfd"), FD::CLOEXEC);
        // F_SETFD is per fd, F_SETFL per open file description.
        let dup = pipe.read.dup().await.expect("dup");
        assert_eq!(dup.fcntl_getfd().await.expect("getfd"), FD::CLOEXEC);
        dup.disable_cloexec().await.expect("disable");
        assert_eq!(pipe.read.fcntl_getfd().await.expect("getfd"), FD::CLOEXEC);
        dup.set_nonblock(true).await.expect("nonblock");
        assert!(
            pipe.read
                .fcntl_getfl()
                .await
                .expect("getfl")
                .contains(O::NONBLOCK)
        );

        // Status flags of a file: the access mode is reported, APPEND can be set.
        let fd = memfd(task).await;
        fd.fcntl_setfl(O::APPEND).await.expect("setfl");
        let fl = fd.fcntl_getfl().await.expect("getfl");
        assert!(fl.contains(O::RDWR | O::APPEND), "{label}: {fl:?}");
        task.write_all_bytes(&fd, b"ab").await.expect("write");
        fd.lseek(0, SEEK::SET).await.expect("lseek");
        task.write_all_bytes(&fd, b"cd").await.expect("append");
        assert_eq!(task.pread_bytes(&fd, 8, 0).await.expect("pread"), b"abcd");
    });
}

#[test]
fn ofd_locks_conflict_between_open_file_descriptions() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = memfd(task).await;
        task.pwrite_bytes(&fd, b"0123456789", 0)
            .await
            .expect("pwrite");
        let a = reopen(task, &fd).await;
        let b = reopen(task, &fd).await;
        let whole = Flock::whole_file(LockType::Write);
        a.lock(LockCmd::OfdSetLk, &whole).await.expect("lock a");
        // Another open file description of the same file conflicts, even in one process.
        assert_errno(
            b.lock(LockCmd::OfdSetLk, &whole).await,
            Errno::EAGAIN,
            label,
        );
        let seen = b.lock(LockCmd::OfdGetLk, &whole).await.expect("getlk");
        assert_eq!(seen.lock_type(), Some(LockType::Write), "{label}");
        assert_eq!(seen.l_pid, -1, "{label}: OFD locks have no pid");
        // A dup of `a` shares its open file description, hence the lock.
        let a2 = a.dup().await.expect("dup");
        a2.lock(LockCmd::OfdSetLk, &whole)
            .await
            .expect("same description");
        // Non-overlapping ranges do not conflict.
        a.lock(
            LockCmd::OfdSetLk,
            &Flock::new(LockType::Unlock, SEEK::SET, 5, 0),
        )
        .await
        .expect("unlock the tail");
        b.lock(
            LockCmd::OfdSetLk,
            &Flock::new(LockType::Read, SEEK::SET, 5, 5),
        )
        .await
        .expect("lock the tail");
        let free = b
            .lock(
                LockCmd::OfdGetLk,
                &Flock::new(LockType::Write, SEEK::SET, 5, 5),
            )
            .await
            .expect("getlk");
        assert_eq!(free.lock_type(), Some(LockType::Unlock), "{label}");
        // OFD commands require l_pid 0.
        let mut bad = Flock::whole_file(LockType::Read);
        bad.l_pid = 1;
        assert_errno(
            b.lock(LockCmd::OfdSetLk, &bad).await,
            Errno::EINVAL,
            "OFD lock with a pid",
        );
    });
}

#[test]
fn process_locks_conflict_between_processes() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = memfd(task).await;
        let range = Flock::new(LockType::Write, SEEK::SET, 0, 10);
        assert_eq!(fd.lock(LockCmd::SetLk, &range).await.expect("setlk"), range);
        // Our own process sees no conflict with its own lock.
        let own = fd.lock(LockCmd::GetLk, &range).await.expect("getlk");
        assert_eq!(own.lock_type(), Some(LockType::Unlock), "{label}");

        let other = thread.clone(CLONE::empty()).await.expect("clone");
        let theirs = other.inherit_fd(&fd).expect("inherit");
        let seen = theirs.lock(LockCmd::GetLk, &range).await.expect("getlk");
        assert_eq!(seen.lock_type(), Some(LockType::Write), "{label}");
        assert_eq!(seen.l_pid, task.pid().as_raw(), "{label}: the holder");
        assert_eq!((seen.l_start, seen.l_len), (0, 10));
        assert_errno(
            theirs.lock(LockCmd::SetLk, &range).await,
            Errno::EAGAIN,
            label,
        );
        theirs
            .lock(
                LockCmd::SetLk,
                &Flock::new(LockType::Write, SEEK::SET, 20, 10),
            )
            .await
            .expect("a disjoint range");
        fd.lock(LockCmd::SetLk, &Flock::whole_file(LockType::Unlock))
            .await
            .expect("unlock");
        theirs
            .lock(LockCmd::SetLkW, &range)
            .await
            .expect("free now");
        drop(theirs);
        exit_cleanly(other, "other").await;
    });
}

#[test]
fn fallocate_grows_and_punches_a_memfd() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = memfd(task).await;
        fd.fallocate(FALLOC::empty(), 0, 8192)
            .await
            .expect("fallocate");
        assert_eq!(size(&fd).await, 8192, "{label}");
        fd.fallocate(FALLOC::KEEP_SIZE, 8192, 4096)
            .await
            .expect("fallocate keep size");
        assert_eq!(size(&fd).await, 8192, "{label}");
        fd.fallocate(FALLOC::empty(), 100, 10000)
            .await
            .expect("fallocate past the end");
        assert_eq!(size(&fd).await, 10100, "{label}");

        task.pwrite_bytes(&fd, &[9u8; 8192], 0)
            .await
            .expect("pwrite");
        fd.fallocate(FALLOC::PUNCH_HOLE | FALLOC::KEEP_SIZE, 0, 4096)
            .await
            .expect("punch");
        assert_eq!(
            task.pread_bytes(&fd, 4096, 0).await.expect("pread"),
            [0u8; 4096]
        );
        assert_eq!(
            task.pread_bytes(&fd, 4, 4096).await.expect("pread"),
            [9u8; 4]
        );
        assert_eq!(size(&fd).await, 10100);
        assert_errno(
            fd.fallocate(FALLOC::PUNCH_HOLE, 0, 4096).await,
            Errno::EOPNOTSUPP,
            "PUNCH_HOLE without KEEP_SIZE",
        );
        assert_errno(
            fd.fallocate(FALLOC::empty(), 0, 0).await,
            Errno::EINVAL,
            "zero length",
        );
    });
}

#[test]
fn fionread_counts_pending_bytes() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let pipe = thread.pipe().await.expect("pipe");
        assert_eq!(pipe.read.fionread().await.expect("fionread"), 0, "{label}");
        task.write_all_bytes(&pipe.write, b"12345")
            .await
            .expect("write");
        assert_eq!(pipe.read.fionread().await.expect("fionread"), 5, "{label}");
        assert_eq!(task.read_bytes(&pipe.read, 2).await.expect("read"), b"12");
        assert_eq!(pipe.read.fionread().await.expect("fionread"), 3, "{label}");
        // On a regular file: the bytes between the offset and the end.
        let fd = memfd(task).await;
        task.write_all_bytes(&fd, b"0123456789")
            .await
            .expect("write");
        fd.lseek(4, SEEK::SET).await.expect("lseek");
        assert_eq!(fd.fionread().await.expect("fionread"), 6, "{label}");
    });
}

#[test]
fn lseek_finds_data_and_holes() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = memfd(task).await;
        const FAR: u64 = 4 << 20;
        task.pwrite_bytes(&fd, &[1u8; 4096], 0)
            .await
            .expect("pwrite");
        task.pwrite_bytes(&fd, &[2u8; 4096], FAR)
            .await
            .expect("pwrite");
        assert_eq!(size(&fd).await, FAR + 4096);
        let hole = fd.lseek(0, SEEK::HOLE).await.expect("SEEK_HOLE");
        // The hole starts after the first page (or huge page) of data.
        assert!(
            (4096..=(2 << 20)).contains(&hole),
            "{label}: hole at {hole}"
        );
        let data = fd.lseek(hole as i64, SEEK::DATA).await.expect("SEEK_DATA");
        assert_eq!(data, FAR, "{label}");
        assert_eq!(fd.lseek(0, SEEK::CUR).await.expect("CUR"), FAR);
        assert_eq!(
            fd.lseek(FAR as i64, SEEK::HOLE).await.expect("SEEK_HOLE"),
            FAR + 4096,
            "the end counts as a hole"
        );
        assert_eq!(fd.lseek(0, SEEK::DATA).await.expect("SEEK_DATA"), 0);
        assert_errno(
            fd.lseek((FAR + 4096) as i64, SEEK::DATA).await,
            Errno::ENXIO,
            "SEEK_DATA at the end",
        );
        assert_eq!(
            task.pread_bytes(&fd, 16, hole)
                .await
                .expect("pread the hole"),
            [0u8; 16]
        );
    });
}

#[test]
fn dup3_with_cloexec() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let pipe = thread.pipe().await.expect("pipe");
        let target = memfd(task).await;
        task.dup3(&pipe.read, &target, O::CLOEXEC)
            .await
            .expect("dup3");
        assert_eq!(target.fcntl_getfd().await.expect("getfd"), FD::CLOEXEC);
        // `target` now reads from the pipe.
        task.write_all_bytes(&pipe.write, b"via dup3")
            .await
            .expect("write");
        assert_eq!(
            task.read_bytes(&target, 64).await.expect("read"),
            b"via dup3"
        );
        task.dup3(&pipe.read, &target, O::empty())
            .await
            .expect("dup3 without flags");
        assert_eq!(
            target.fcntl_getfd().await.expect("getfd"),
            FD::empty(),
            "{label}"
        );
        assert_errno(
            task.dup3(&pipe.read, &pipe.read, O::CLOEXEC).await,
            Errno::EINVAL,
            "dup3 onto itself",
        );
        assert_invalid(
            task.dup3(&pipe.read, &target, O::NONBLOCK).await,
            "dup3 with NONBLOCK",
        );
        task.dup2(&pipe.write, &target).await.expect("dup2");
        task.write_all_bytes(&target, b"!")
            .await
            .expect("write via dup2");
        assert_eq!(task.read_bytes(&pipe.read, 8).await.expect("read"), b"!");
    });
}

#[test]
fn bad_input_is_refused_before_sending() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let fd = memfd(task).await;
        let pipe = thread.pipe().await.expect("pipe");

        assert_invalid(pipe.read.readv(Vec::new()).await, "readv of no buffers");
        assert_invalid(pipe.write.writev(Vec::new()).await, "writev of no buffers");
        let many = buffers(task, &[1; IOV_MAX + 1]).await;
        assert_invalid(pipe.read.readv(many).await, "readv of IOV_MAX + 1 buffers");
        let mut many = Vec::new();
        for _ in 0..=IOV_MAX {
            many.push(bytes(task, b"x").await);
        }
        assert_invalid(pipe.write.writev(many).await, "writev of IOV_MAX + 1");
        // IOV_MAX itself is fine.
        let (filled, _) = fd
            .preadv2(buffers(task, &[1; IOV_MAX]).await, Some(0), RWF::empty())
            .await
            .expect("IOV_MAX buffers");
        assert!(filled.is_empty(), "{label}: empty file");

        // Offsets the kernel would read as negative, or that overflow with the length.
        let buf = || async { task.malloc_bytes(16).await.expect("malloc") };
        assert_invalid(fd.pread(buf().await, u64::MAX).await, "pread at -1");
        assert_invalid(
            fd.pread(buf().await, i64::MAX as u64 + 1).await,
            "pread past i64::MAX",
        );
        assert_invalid(
            fd.pread(buf().await, i64::MAX as u64 - 8).await,
            "pread whose end overflows",
        );
        assert_invalid(task.pwrite_bytes(&fd, b"x", u64::MAX).await, "pwrite at -1");
        assert_invalid(
            fd.preadv2(vec![buf().await], Some(u64::MAX), RWF::empty())
                .await,
            "preadv2 at -1 (which would mean the current offset)",
        );
        assert_invalid(
            fd.pwritev2(vec![bytes(task, b"x").await], Some(u64::MAX), RWF::empty())
                .await,
            "pwritev2 at -1",
        );
        assert_invalid(fd.ftruncate(u64::MAX).await, "ftruncate to -1");
        assert_invalid(
            fd.fallocate(FALLOC::empty(), i64::MAX as u64, 1).await,
            "fallocate overflowing",
        );
        assert_invalid(
            fd.fallocate(FALLOC::empty(), 0, u64::MAX).await,
            "fallocate of -1 bytes",
        );
        assert_invalid(
            fd.clone_range_from(&fd, u64::MAX, 1, 0).await,
            "FICLONERANGE at -1",
        );
        assert_invalid(
            task.memfd_create(b"a\0b", MFD::empty()).await,
            "memfd name with NUL",
        );
        assert_invalid(
            task.memfd_create(&[b'x'; 250], MFD::empty()).await,
            "memfd name too long",
        );
        // A valid call at the largest offsets still reaches the kernel.
        assert!(
            task.pread_bytes(&fd, 1, i64::MAX as u64 - 1)
                .await
                .expect("pread near the end")
                .is_empty()
        );

        // An fd of another table is refused before sending.
        if label == "child" {
            let local = local_thread();
            match local.task().pread_bytes(&fd, 4, 0).await {
                Err(Error::Mismatch(_)) => {}
                other => panic!("expected Mismatch, got {other:?}"),
            }
            let local_fd = memfd(local.task()).await;
            match fd.clone_range_from(&local_fd, 0, 0, 0).await {
                Err(Error::Mismatch(_)) => {}
                other => panic!("expected Mismatch, got {other:?}"),
            }
        }
    });
}

#[test]
fn failing_calls_leak_no_fd_and_no_memory() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let pipe = thread.pipe().await.expect("pipe");
        let fail = |task: Task, fd: FileDescriptor| async move {
            assert_errno(task.pread_bytes(&fd, 64, 0).await, Errno::ESPIPE, "pread");
            assert_errno(fd.lseek(0, SEEK::SET).await, Errno::ESPIPE, "lseek");
            let bufs = buffers(&task, &[8, 8]).await;
            assert_errno(
                fd.preadv2(bufs, Some(0), RWF::empty()).await,
                Errno::ESPIPE,
                "preadv2",
            );
        };
        // Warm up: arenas and lazily created state exist before we measure.
        fail(task.clone(), pipe.read.clone()).await;
        task.flush_closes().await.expect("flush");
        let memory = task.memory().clone();
        // Earlier tests' children are cleaned up in the background: let that finish, and
        // check below only that nothing grew.
        let pid = task.pid().as_raw();
        let (fds, in_use) = settled(|| (open_fds_of(pid), memory.bytes_in_use())).await;
        for _ in 0..10_000 {
            fail(task.clone(), pipe.read.clone()).await;
        }
        task.flush_closes().await.expect("flush");
        let (fds_after, in_use_after) = (open_fds_of(pid), memory.bytes_in_use());
        assert!(
            in_use_after <= in_use,
            "{label}: allocations leaked: {in_use} bytes in use before, {in_use_after} after"
        );
        assert!(
            fds_after <= fds,
            "{label}: fds leaked: {fds} open before, {fds_after} after"
        );
    });
}
