//! Failing syscalls leave nothing behind: no fd, no allocation. A test binary of its own, so
//! that no concurrent test changes the local allocator's use or our fd table.

use std::time::Duration;

use futures_lite::future;
use rsyscall::{CLONE, O, local_thread};
use rsyscall_tests::procs::open_fds;

#[test]
fn failing_syscalls_leak_no_fd_and_no_memory() {
    async_io::block_on(future::or(
        async {
            let parent = local_thread();
            let child = parent.clone(CLONE::empty()).await.expect("clone");
            // Warm up: arenas and lazily created state exist before we measure.
            let _ = child.task().open(b"/nonexistent", O::RDONLY, 0).await;
            let _ = parent.task().open(b"/nonexistent", O::RDONLY, 0).await;
            let memory = parent.task().memory().clone();
            let (fds, bytes) = (open_fds(), memory.bytes_in_use());
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
                    .read(&pipe.write, 16)
                    .await
                    .expect_err("EBADF");
                assert_eq!(err.errno(), Some(rsyscall::Errno::EBADF));
            }
            drop(pipe);
            parent.task().flush_closes().await.expect("flush");
            assert_eq!(memory.bytes_in_use(), bytes, "allocations leaked");
            assert_eq!(open_fds(), fds, "fds leaked");
            child
                .exit(0)
                .await
                .expect("exit")
                .check()
                .await
                .expect("clean");
        },
        async {
            async_io::Timer::after(Duration::from_secs(60)).await;
            panic!("hung for 60 seconds");
        },
    ))
}
