//! Running out of fds in a burst of clones gives typed errors, never a panic, and leaves
//! nothing behind. One test only: it lowers this test process's fd limit.

use std::time::Duration;

use rsyscall::{CLONE, Command, Error, local_thread};
use rsyscall_tests::procs::{descendants, open_fds, settled};
use rsyscall_tests::tasks::join_all;

/// One spawn of `/bin/true` through a clone child, waited for.
async fn spawn_true() -> Result<(), Error> {
    let child = local_thread().clone(CLONE::empty()).await?;
    let process = child.exec(Command::new("/bin/true", "true")).await?;
    process.check().await
}

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to the valid pointer given.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(r, 0, "getrlimit");
    limit
}

fn set_nofile(limit: libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit from the valid pointer given.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(r, 0, "setrlimit");
}

/// Runs 40 spawns at once with the fd limit 24 above the fds open now; every spawn
/// either works or fails with a typed `EMFILE` error. Returns how many failed.
fn burst() -> usize {
    let saved = nofile();
    set_nofile(libc::rlimit {
        rlim_cur: (open_fds() + 24) as libc::rlim_t,
        rlim_max: saved.rlim_max,
    });
    let results = async_io::block_on(join_all((0..40).map(|_| spawn_true()).collect()));
    set_nofile(saved);
    let mut emfile = 0;
    for result in results {
        if let Err(e) = result {
            let io = std::io::Error::from(e);
            assert_eq!(io.raw_os_error(), Some(libc::EMFILE), "not EMFILE: {io}");
            emfile += 1;
        }
    }
    assert!(emfile > 0, "the burst never reached the fd limit");
    emfile
}

/// After a burst: a spawn works, no process is left (killed children are reaped), and
/// the fds this process has open once background work settled.
fn after_burst() -> usize {
    async_io::block_on(async {
        spawn_true().await.expect("a spawn after the burst");
        let left = settled(|| descendants().len()).await;
        assert_eq!(left, 0, "processes left: {:?}", descendants());
        settled(open_fds).await
    })
}

#[test]
fn a_burst_of_clones_past_the_fd_limit_gives_typed_errors_and_leaks_nothing() {
    // Bounded without async-io's timers, whose first use would make its reactor before
    // the first burst (a reactor made during a burst used to panic).
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("the test hung for 60 seconds");
        std::process::exit(1);
    });
    drop(local_thread());
    burst();
    // The first spawns made what the library makes once (its service thread's fds, say):
    // the second burst must leave exactly as many fds open as the first.
    let first = after_burst();
    burst();
    let second = after_burst();
    assert_eq!(
        second, first,
        "fds open after the first burst and after the second"
    );
}
