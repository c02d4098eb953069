//! Failing syscalls leave nothing behind: no fd, no allocation. A test binary of its own, so
//! that no concurrent test changes the local allocator's use or our fd table.

use rsyscall::{CLONE, O, local_thread};
use rsyscall_tests::procs::{open_fds, settled};
use rsyscall_tests::tasks::{exit_cleanly, run};

#[test]
fn failing_syscalls_leak_no_fd_and_no_memory() {
    run(async {
        let parent = local_thread();
        let child = parent.clone(CLONE::empty()).await.expect("clone");
        // Warm up: arenas and lazily created state exist before we measure.
        let _ = child.task().open(b"/nonexistent", O::RDONLY, 0).await;
        let _ = parent.task().open(b"/nonexistent", O::RDONLY, 0).await;
        let memory = parent.task().memory().clone();
        let (fds, bytes) = settled(|| (open_fds(), memory.bytes_in_use())).await;
        let pipe = parent.pipe().await.expect("pipe");
        for _ in 0..1000 {
            for task in [parent.task(), child.task()] {
                let err = task
                    .open(b"/nonexistent/file", O::RDONLY, 0)
                    .await
                    .expect_err("ENOENT");
                assert_eq!(err.errno(), Some(rsyscall::Errno::ENOENT));
            }
            // A read into a lent buffer that fails: the write end is not readable.
            let err = parent
                .task()
                .read_bytes(&pipe.write, 16)
                .await
                .expect_err("EBADF");
            assert_eq!(err.errno(), Some(rsyscall::Errno::EBADF));
        }
        drop(pipe);
        parent.task().flush_closes().await.expect("flush");
        // Background cleanup only ever lowers these: a rise is a leak.
        let (fds_after, bytes_after) = (open_fds(), memory.bytes_in_use());
        assert!(
            bytes_after <= bytes,
            "allocations leaked: {bytes} bytes in use before, {bytes_after} after"
        );
        assert!(
            fds_after <= fds,
            "fds leaked: {fds} open before, {fds_after} after"
        );
        exit_cleanly(child, "child").await;
    })
}
