//! Soak: thousands of clone+exec+wait cycles leave no fd, mapping or child behind.
//!
//! A test binary of its own with a single test, so that nothing else changes the local fd
//! table, address space, allocator or children while it counts them.

use std::time::{Duration, Instant};

use rsyscall::handle::Memory;
use rsyscall::{CLONE, Command, Thread, local_thread};
use rsyscall_tests::procs::{count_children, open_fds as count_fds};
use rsyscall_tests::tasks::run;

/// Cycles in all.
const CYCLES: usize = 2_000;
/// Cycles after which the mappings are counted for the first time: growth proportional to
/// the cycles would show between this count and the final one.
const EARLY: usize = 200;
/// Cycles run before anything is counted: the service thread, the reactor and the
/// allocator's arenas exist afterwards.
const WARMUP: usize = 20;
/// Mappings that may appear between the early and the final count without any leak
/// (allocator arenas and thread stacks created lazily).
const MAPPING_SLACK: usize = 8;
/// Fds that may still wait in the close queue after the last cycle (that child's pidfd,
/// and a little room): a close queue that grows with the cycles would hold about one per
/// cycle.
const UNFLUSHED_SLACK: usize = 4;
/// How long the resources freed asynchronously (by the service thread, once a futex helper
/// or child has exited) may take to be given back.
const SETTLE: Duration = Duration::from_secs(10);

/// What the soak counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
    /// Entries of /proc/self/fd.
    fds: usize,
    /// Lines of /proc/self/maps.
    mappings: usize,
    /// Processes whose parent is this process, in any state.
    children: usize,
    /// Of those, zombies.
    zombies: usize,
    /// Bytes allocated by the local allocator.
    bytes: usize,
}

fn count_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("reading /proc/self/maps")
        .lines()
        .count()
}

/// Closes the fds whose handles were dropped, then counts.
async fn usage(thread: &Thread) -> Usage {
    thread.task().flush_closes().await.expect("flush_closes");
    let (children, zombies) = count_children();
    Usage {
        fds: count_fds(),
        mappings: count_mappings(),
        children,
        zombies,
        bytes: Memory::local().bytes_in_use(),
    }
}

/// Counts until `done` holds or [`SETTLE`] has passed (the service thread reaps children
/// and frees their memory asynchronously), and returns the last count.
async fn settled(thread: &Thread, mut done: impl FnMut(&Usage) -> bool) -> Usage {
    let deadline = Instant::now() + SETTLE;
    loop {
        let u = usage(thread).await;
        if done(&u) || Instant::now() >= deadline {
            return u;
        }
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
}

/// One clone of the local thread that execs `/bin/true` and is waited for.
async fn cycle(parent: &Thread, i: usize) {
    let child = parent
        .clone(CLONE::empty())
        .await
        .unwrap_or_else(|e| panic!("cycle {i}: clone: {e}"));
    let process = child
        .exec(Command::new("/bin/true", "true"))
        .await
        .unwrap_or_else(|e| panic!("cycle {i}: exec /bin/true: {e}"));
    process
        .check()
        .await
        .unwrap_or_else(|e| panic!("cycle {i}: /bin/true: {e}"));
}

#[test]
fn clone_exec_wait_cycles_leak_no_fd_mapping_child_or_memory() {
    run(async {
        let parent = local_thread();
        for i in 0..WARMUP {
            cycle(&parent, i).await;
        }
        // Once no child is left, two equal counts in a row: nothing is being freed.
        let mut previous = usage(&parent).await;
        let start = settled(&parent, |u| {
            let stable = u.children == 0 && *u == previous;
            previous = *u;
            stable
        })
        .await;
        assert_eq!(
            start.children, 0,
            "children left after the warm-up: {start:?}"
        );

        for i in WARMUP..EARLY {
            cycle(&parent, i).await;
        }
        let early = settled(&parent, |u| {
            u.children == 0 && u.fds == start.fds && u.bytes == start.bytes
        })
        .await;

        for i in EARLY..CYCLES {
            cycle(&parent, i).await;
        }
        // Before anything is flushed: what the loop itself keeps open. Each clone flushes
        // the closes queued by the cycle before it, so only the last cycle's may remain,
        // once the service thread has reaped the last futex helpers (under load it lags a
        // few cycles behind, holding their pidfds meanwhile).
        let deadline = Instant::now() + SETTLE;
        while count_children().0 > 0 && Instant::now() < deadline {
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        let unflushed = count_fds();
        let end = settled(&parent, |u| {
            u.children == 0 && u.fds == start.fds && u.bytes == start.bytes
        })
        .await;

        eprintln!("start {start:?}\nafter {EARLY} cycles {early:?}\nafter {CYCLES} cycles {end:?}");
        assert_eq!(end.zombies, 0, "zombies after {CYCLES} cycles: {end:?}");
        assert_eq!(
            end.children, 0,
            "children still alive after {CYCLES} cycles: {end:?}"
        );
        assert_eq!(
            (early.fds, end.fds),
            (start.fds, start.fds),
            "open fds grew (start {start:?}, after {EARLY} cycles {early:?}, after {CYCLES} \
             cycles {end:?})"
        );
        assert!(
            unflushed <= start.fds + UNFLUSHED_SLACK,
            "fds pile up while cycles run: {unflushed} open after {CYCLES} cycles, before \
             flushing queued closes, against {} at the start",
            start.fds
        );
        assert_eq!(
            (early.bytes, end.bytes),
            (start.bytes, start.bytes),
            "local allocator bytes in use grew (start {start:?}, after {EARLY} cycles \
             {early:?}, after {CYCLES} cycles {end:?})"
        );
        assert!(
            end.mappings <= early.mappings + MAPPING_SLACK,
            "mappings grew from {} after {EARLY} cycles to {} after {CYCLES} (start {})",
            early.mappings,
            end.mappings,
            start.mappings
        );
    })
}
