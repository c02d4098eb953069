//! Pointers, allocation and FileDescriptor handles, on the local task and a clone child.

use rsyscall::handle::{Error, Memory, Pointer};
use rsyscall::{CLONE, O, local_thread};
use rsyscall_tests::errors::serial;
use rsyscall_tests::procs::{open_fds, settled};
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child, run};

#[test]
fn write_read_split_merge() {
    let _serial = serial();
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let ptr = task.ptr(&b"hello world"[..]).await.expect("ptr");
        assert_eq!(ptr.read().await.expect("read"), b"hello world", "{label}");
        let (hello, rest) = ptr.split(5).expect("split");
        assert_eq!(hello.read().await.expect("read"), b"hello", "{label}");
        assert_eq!(rest.read().await.expect("read"), b" world", "{label}");
        let whole = hello
            .into_pointer()
            .merge(rest.into_pointer())
            .map_err(|u| u.error)
            .expect("adjacent");
        assert_eq!(whole.size(), 11);
        // Writing a shorter value cuts the pointer to the value.
        let written = whole.write(&b"abc"[..]).await.expect("write");
        assert_eq!(written.size(), 3);
        assert_eq!(written.read().await.expect("read"), b"abc");
        // Too large a value is refused.
        let small = task.malloc_bytes(2).await.expect("malloc");
        let err = small.write(&b"abc"[..]).await.expect_err("too large");
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{label}: {err}"
        );
        // Typed values round trip.
        let v = task.ptr(&0x1122_3344_5566_7788u64).await.expect("ptr");
        assert_eq!(v.read().await.expect("read"), 0x1122_3344_5566_7788);
        let arr = task.ptr(&[1i32, 2, 3][..]).await.expect("ptr");
        assert_eq!(arr.read().await.expect("read"), vec![1, 2, 3]);
    })
}

#[test]
fn write_to_end_prepares_an_aligned_stack() {
    let _serial = serial();
    on_local_and_child(|thread, label| async move {
        let stack = thread.task().malloc_bytes(4096).await.expect("malloc");
        let top = stack.near().as_u64() + 4096;
        let (rest, frame) = stack
            .write_to_end(&[7u64, 8, 9][..], 16)
            .await
            .expect("write_to_end");
        assert_eq!(frame.near().as_u64() % 16, 0, "{label}");
        assert!(frame.near().as_u64() + 24 <= top);
        assert_eq!(
            rest.near().as_u64() + rest.size() as u64,
            frame.near().as_u64()
        );
        assert_eq!(frame.read().await.expect("read"), vec![7, 8, 9]);
        assert!(
            rest.split_from_end::<[u8]>(1 << 20, 16).is_err(),
            "{label}: too big"
        );
    })
}

#[test]
fn use_after_free_of_a_pointer_is_a_typed_error() {
    let _serial = serial();
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let ptr = task.ptr(&b"secret"[..]).await.expect("ptr");
        let far = ptr.far();
        assert_eq!(
            task.read_memory(far, 6).await.expect("live"),
            b"secret",
            "{label}"
        );
        assert!(matches!(
            task.read_memory(far, 7).await,
            Err(Error::UseAfterFree { .. })
        ));
        drop(ptr);
        let err = task.read_memory(far, 6).await.expect_err("freed");
        assert!(matches!(err, Error::UseAfterFree { .. }), "{label}: {err}");
    })
}

#[test]
fn pointer_of_another_address_space_is_refused_before_sending() {
    let _serial = serial();
    run(async {
        let task = local_thread().task().clone();
        // An allocator for some other address space (never mapped: nothing is sent).
        // SAFETY: it maps and copies locally, so its memory is fresh local memory; only its
        // identity is another space's, which makes every task refuse its pointers (what
        // this test checks) and so never lets them reach a syscall.
        let other = unsafe {
            Memory::new(
                rsyscall::far::AddressSpace::new(rsyscall::near::Pid::new(1)),
                std::sync::Arc::new(rsyscall::handle::LocalTransport),
                std::sync::Arc::new(rsyscall::near::LocalSyscall),
            )
        };
        let foreign = other.malloc(16, 8).await.expect("malloc");
        let ptr: Pointer<[u8]> = Pointer::from_allocation(foreign);
        let pipe = task.pipe().await.expect("pipe");
        let err = pipe.read.read(ptr).await.expect_err("foreign memory");
        assert!(
            matches!(
                err,
                Error::Mismatch(rsyscall::far::MismatchError::AddressSpace { .. })
            ),
            "{err}"
        );
    })
}

#[test]
fn fixed_arena_out_of_space_and_reuse() {
    let _serial = serial();
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        // SAFETY: the space, transport and interface of one task, which serve its
        // address space.
        let mem = unsafe {
            Memory::fixed(
                task.memory().space(),
                task.memory().transport().clone(),
                task.sysif_arc().clone(),
                2 * 4096,
            )
        }
        .await
        .expect("fixed arena");
        let a = mem.malloc(4096, 8).await.expect("a");
        let b = mem.malloc(4096, 8).await.expect("b");
        let err = mem.malloc(16, 8).await.expect_err("full");
        assert!(matches!(err, Error::OutOfMemory { .. }), "{label}: {err}");
        let freed = a.addr();
        drop(a);
        let c = mem.malloc(4096, 8).await.expect("reuse");
        assert_eq!(c.addr(), freed, "{label}: the freed range is reused");
        drop((b, c));
        assert_eq!(mem.bytes_in_use(), 0);
    })
}

#[test]
fn fd_table_gc_reuses_the_lowest_number() {
    let _serial = serial();
    run(async {
        let parent = local_thread();
        let task = parent.task();
        // Warm up what is created once per process and kept (the service thread's eventfd,
        // the async-io reactor's fds), so the count below sees only this test's fds.
        let warm = parent.clone(CLONE::FILES).await.expect("clone");
        exit_cleanly(warm, "warm").await;
        task.flush_closes().await.expect("flush");
        let first = task.open(b"/dev/null", O::RDONLY, 0).await.expect("open");
        let number = first.near();
        first.close().await.expect("close");
        let before = settled(open_fds).await;
        // Five children sharing our table each open and drop 50 fds.
        for _ in 0..5 {
            let child = parent.clone(CLONE::FILES).await.expect("clone");
            let mut fds = Vec::new();
            for _ in 0..50 {
                fds.push(
                    child
                        .task()
                        .open(b"/dev/null", O::RDONLY, 0)
                        .await
                        .expect("open"),
                );
            }
            drop(fds);
            exit_cleanly(child, "child").await;
        }
        // Dropped handles queue their closes on the shared table; each later syscall on it
        // (the children's own opens included) performs them, and flush_closes does the rest.
        task.flush_closes().await.expect("gc");
        assert_eq!(task.fd_table().pending_closes(), 0);
        assert_eq!(
            settled(open_fds).await,
            before,
            "no fd of the 250 remains open"
        );
        let again = task.open(b"/dev/null", O::RDONLY, 0).await.expect("open");
        assert_eq!(
            again.near(),
            number,
            "after GC the next open gets the same number"
        );
    })
}

#[test]
fn fd_handles_move_between_tasks_sharing_a_table() {
    let _serial = serial();
    run(async {
        let parent = local_thread();
        let child = parent.clone(CLONE::FILES).await.expect("clone");
        let pipe = parent.pipe().await.expect("pipe");
        let w = pipe.write.move_to(child.task()).expect("shared table");
        assert!(w.is_last_handle());
        child
            .task()
            .write_bytes(&w, b"moved")
            .await
            .expect("write through the child");
        assert_eq!(
            parent
                .task()
                .read_bytes(&pipe.read, 10)
                .await
                .expect("read"),
            b"moved"
        );
        let other = parent.clone(CLONE::empty()).await.expect("clone");
        let err = w.move_to(other.task()).expect_err("another table");
        assert!(matches!(err, Error::Mismatch(_)), "{err}");
    })
}

#[test]
fn owned_fd_conversions_for_the_local_task() {
    let _serial = serial();
    run(async {
        let task = local_thread().task().clone();
        let pipe = task.pipe().await.expect("pipe");
        let owned = pipe
            .write
            .into_owned_fd()
            .expect("the only handle of a local fd");
        let mut file = std::fs::File::from(owned);
        std::io::Write::write_all(&mut file, b"std").expect("write through std");
        drop(file);
        assert_eq!(task.read_bytes(&pipe.read, 10).await.expect("read"), b"std");
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let fd = rsyscall::FileDescriptor::from_owned_fd(&task, a.into()).expect("local");
        assert!(fd.near().as_raw() > 2);
        // A child's task has another table: the conversion is refused.
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let (c, _d) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(rsyscall::FileDescriptor::from_owned_fd(child.task(), c.into()).is_err());
        // Local handles lend a BorrowedFd; a child's do not.
        assert_eq!(
            fd.as_local_fd()
                .map(|b| std::os::fd::AsRawFd::as_raw_fd(&b)),
            Some(fd.near().as_raw())
        );
        let in_child = child.task().pipe().await.expect("pipe");
        assert!(in_child.read.as_local_fd().is_none());
    })
}

#[test]
fn unshare_files_gives_the_task_a_copy_of_its_table() {
    let _serial = serial();
    run(async {
        let parent = local_thread();
        let before = parent.pipe().await.expect("pipe");
        let child = parent.clone(CLONE::FILES).await.expect("clone");
        let task = child.task();
        assert_eq!(
            task.namespaces().fd_table,
            parent.task().namespaces().fd_table
        );
        task.unshare_files().await.expect("unshare(CLONE_FILES)");
        assert_ne!(
            task.namespaces().fd_table,
            parent.task().namespaces().fd_table
        );
        // Our fd now belongs to another table: refused before sending.
        let err = task
            .write_bytes(&before.write, b"x")
            .await
            .expect_err("old table");
        assert!(matches!(err, Error::Mismatch(_)), "{err}");
        // The copy made by the unshare is usable through inherit.
        let copy = before.write.inherit(task).expect("copied by unshare");
        task.write_bytes(&copy, b"copy")
            .await
            .expect("write through the copy");
        assert_eq!(
            parent
                .task()
                .read_bytes(&before.read, 10)
                .await
                .expect("read"),
            b"copy"
        );
        // Fds made afterwards in our table are not in the child's.
        let after = parent.pipe().await.expect("pipe");
        assert!(after.write.inherit(task).is_err());
        copy.close().await.expect("close in the child's table");
        exit_cleanly(child, "child").await;
    })
}
