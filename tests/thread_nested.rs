//! Threads cloned from threads cloned from threads: every descendant stays usable and
//! waitable after the thread it was cloned from execs or exits, in and across pid
//! namespaces and with shared fd tables. And `clone(NEWUSER)` with and without its
//! automatic id mappings.
//!
//! These run as root (as CI does). Every process a test starts is waited for by the test,
//! and the tests check that none of them is left as a child of ours.

use rsyscall::near::Pid;
use rsyscall::{
    CLONE, ChildState, ChildThread, CloneOptions, Errno, Signal, Thread, local_thread,
    write_user_mappings,
};
use rsyscall_tests::errors::{assert_errno, assert_invalid};
use rsyscall_tests::procs::children;
use rsyscall_tests::programs::{sh, sleeper};
use rsyscall_tests::tasks::{exit_cleanly, run};

fn our_pid() -> Pid {
    Pid::new(std::process::id() as i32)
}

/// The parent of `pid` (a pid of our namespace) as /proc says, if the process exists.
fn ppid_of(pid: Pid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .map(Pid::new)
}

/// The pid of a live child thread, as its waiter names it.
fn pid(t: &ChildThread) -> Pid {
    t.pid().expect("a live child")
}

/// Asserts that none of `pids` (pids of our namespace) is a child of ours any more, alive
/// or zombie: each was waited for.
fn assert_reaped(pids: &[Pid], what: &str) {
    let left: Vec<_> = children()
        .into_iter()
        .filter(|c| pids.contains(&Pid::new(c.pid)))
        .collect();
    assert!(left.is_empty(), "{what}: not reaped: {left:?}");
}

/// Checks that `t` still runs its server and can use its fd table: a pipe round trip.
async fn works(t: &Thread, what: &str) {
    let task = t.task();
    task.getpid()
        .await
        .unwrap_or_else(|e| panic!("{what}: getpid: {e}"));
    let pipe = t
        .pipe()
        .await
        .unwrap_or_else(|e| panic!("{what}: pipe: {e}"));
    task.write_all_bytes(&pipe.write, b"ok")
        .await
        .unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let got = task
        .read_bytes(&pipe.read, 2)
        .await
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    assert_eq!(got, b"ok", "{what}");
}

/// How the first thread of a chain ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// It execs `sleep`, and is killed at the end of the test.
    Exec,
    /// It exits with status 0.
    Exit,
}

/// local -> A -> B -> C, each cloned with its flags; A ends as `end` says, then B and C
/// must still work, be children of ours, and be waited for with their exit statuses.
async fn three_deep(flags: [CLONE; 3], end: End) {
    let what = format!("{flags:?} then A {end:?}");
    let local = local_thread();
    let a = local.clone(flags[0]).await.expect("clone A");
    let b = a.clone(flags[1]).await.expect("clone B");
    let c = b.clone(flags[2]).await.expect("clone C");
    let pids = [pid(&a), pid(&b), pid(&c)];
    let a = match end {
        End::Exec => Some(a.exec(sleeper().await).await.expect("exec A")),
        End::Exit => {
            let a = a.exit(0).await.expect("exit A");
            assert_eq!(a.wait().await.expect("wait A"), ChildState::Exited(0));
            None
        }
    };
    for (t, name) in [(&b, "B"), (&c, "C")] {
        works(t, &format!("{what}: {name}")).await;
        assert_eq!(
            t.task().getppid().await.expect("getppid"),
            our_pid(),
            "{what}: {name} is a child of the local process"
        );
    }
    let c = c.exec(sh("exit 7").await).await.expect("exec C");
    assert_eq!(
        c.wait().await.expect("wait C"),
        ChildState::Exited(7),
        "{what}: C"
    );
    let b = b.exit(3).await.expect("exit B");
    assert_eq!(
        b.wait().await.expect("wait B"),
        ChildState::Exited(3),
        "{what}: B"
    );
    if let Some(a) = a {
        a.kill(Signal::SIGKILL).await.expect("kill A");
        assert_eq!(
            a.wait().await.expect("wait A"),
            ChildState::Killed(Signal::SIGKILL),
            "{what}: A"
        );
    }
    assert_reaped(&pids, &what);
}

/// Every combination of sharing or not sharing the fd table down a chain of three.
fn flag_chains() -> Vec<[CLONE; 3]> {
    let one = [CLONE::empty(), CLONE::FILES];
    let mut out = Vec::new();
    for a in one {
        for b in one {
            for c in one {
                out.push([a, b, c]);
            }
        }
    }
    out
}

#[test]
fn grandchildren_outlive_an_exec_of_their_parent() {
    run(async {
        for flags in flag_chains() {
            three_deep(flags, End::Exec).await;
        }
    })
}

#[test]
fn grandchildren_outlive_the_exit_of_their_parent() {
    run(async {
        for flags in flag_chains() {
            three_deep(flags, End::Exit).await;
        }
    })
}

#[test]
fn a_child_outlives_the_exec_of_the_thread_it_was_cloned_from() {
    run(async {
        for flags in [CLONE::empty(), CLONE::FILES] {
            let a = local_thread().clone(flags).await.expect("clone A");
            let b = a.clone(flags).await.expect("clone B");
            let c = b.clone(flags).await.expect("clone C");
            let pids = [pid(&a), pid(&b), pid(&c)];
            // B runs a program that exits at once; C must not go with it.
            let b = b.exec(sh("exit 9").await).await.expect("exec B");
            assert_eq!(b.wait().await.expect("wait B"), ChildState::Exited(9));
            works(&c, "C").await;
            let c = c.exec(sh("exit 8").await).await.expect("exec C");
            let err = c.check().await.expect_err("C exits with 8");
            assert!(
                matches!(
                    err,
                    rsyscall::Error::UncleanExit {
                        state: ChildState::Exited(8),
                        ..
                    }
                ),
                "{err}"
            );
            exit_cleanly(a, "A").await;
            assert_reaped(&pids, "B exec'd");
        }
    })
}

#[test]
fn clone_parent_from_a_clone_parent_child_waits_from_the_real_parent() {
    run(async {
        let a = local_thread().clone(CLONE::empty()).await.expect("clone A");
        let s1 = a.clone(CLONE::PARENT).await.expect("clone(PARENT) from A");
        let s2 = s1
            .clone(CLONE::PARENT)
            .await
            .expect("clone(PARENT) from S1");
        let s3 = s2
            .clone(CLONE::PARENT)
            .await
            .expect("clone(PARENT) from S2");
        let pids = [pid(&a), pid(&s1), pid(&s2), pid(&s3)];
        for (t, name) in [(&s1, "S1"), (&s2, "S2"), (&s3, "S3")] {
            assert_eq!(
                t.task().getppid().await.expect("getppid"),
                our_pid(),
                "{name} is a child of the local process"
            );
        }
        exit_cleanly(a, "A").await;
        let s3 = s3.exec(sh("exit 6").await).await.expect("exec S3");
        assert_eq!(s3.wait().await.expect("wait S3"), ChildState::Exited(6));
        let s2 = s2.exit(5).await.expect("exit S2");
        assert_eq!(s2.wait().await.expect("wait S2"), ChildState::Exited(5));
        exit_cleanly(s1, "S1").await;
        assert_reaped(&pids, "CLONE_PARENT chain");
    })
}

#[test]
fn descendants_of_a_pid_namespace_init_are_its_children() {
    run(async {
        let n = local_thread()
            .clone(CLONE::NEWPID)
            .await
            .expect("clone(NEWPID) (needs CAP_SYS_ADMIN: run the suite as root)");
        let n_pid = pid(&n);
        // The kernel refuses CLONE_PARENT from the init of a pid namespace; we say why.
        assert_invalid(n.clone(CLONE::PARENT).await, "CLONE_PARENT from init");
        let m = n.clone(CLONE::empty()).await.expect("clone M");
        let x = m.clone(CLONE::empty()).await.expect("clone X");
        let y = m.clone(CLONE::PARENT).await.expect("clone(PARENT) Y");
        for (t, name) in [(&m, "M"), (&x, "X"), (&y, "Y")] {
            assert_eq!(
                t.task().getppid().await.expect("getppid"),
                Pid::new(1),
                "{name} is a child of init"
            );
        }
        let m = m.exit(4).await.expect("exit M");
        assert_eq!(m.wait().await.expect("wait M"), ChildState::Exited(4));
        works(&x, "X").await;
        let x = x.exec(sh("exit 3").await).await.expect("exec X");
        assert_eq!(x.wait().await.expect("wait X"), ChildState::Exited(3));
        let y = y.exit(2).await.expect("exit Y");
        assert_eq!(y.wait().await.expect("wait Y"), ChildState::Exited(2));
        exit_cleanly(n, "init").await;
        assert_reaped(&[n_pid], "init");
    })
}

#[test]
fn a_pid_namespace_made_from_a_child_outlives_that_child() {
    run(async {
        let a = local_thread().clone(CLONE::empty()).await.expect("clone A");
        let n = a
            .clone(CLONE::NEWPID | CLONE::FILES)
            .await
            .expect("clone(NEWPID) from A");
        let pids = [pid(&a), pid(&n)];
        assert_eq!(
            ppid_of(pid(&n)),
            Some(our_pid()),
            "init of the new namespace is a child of the local process"
        );
        exit_cleanly(a, "A").await;
        assert_eq!(n.task().getpid().await.expect("getpid"), Pid::new(1));
        let m = n.clone(CLONE::empty()).await.expect("clone M");
        let x = m.clone(CLONE::FILES).await.expect("clone X");
        assert_eq!(x.task().getppid().await.expect("getppid"), Pid::new(1));
        let m = m.exec(sh("exit 12").await).await.expect("exec M");
        assert_eq!(m.wait().await.expect("wait M"), ChildState::Exited(12));
        works(&x, "X").await;
        let x = x.exit(13).await.expect("exit X");
        assert_eq!(x.wait().await.expect("wait X"), ChildState::Exited(13));
        let n = n.exec(sh("exit 14").await).await.expect("exec init");
        assert_eq!(n.wait().await.expect("wait init"), ChildState::Exited(14));
        assert_reaped(&pids, "NEWPID from a child");
    })
}

#[test]
fn a_thread_in_another_pid_namespace_than_its_parent_keeps_its_children() {
    run(async {
        // A unshares a pid namespace: its children go there, as children of the local
        // process; the second of them is not init, yet its own children stay its own, as
        // the local process could not name them by the pids they are given.
        let a = local_thread()
            .clone(CLONE::NEWUSER)
            .await
            .expect("clone(NEWUSER)");
        a.task()
            .unshare(CLONE::NEWPID)
            .await
            .expect("unshare(NEWPID)");
        let init = a.clone(CLONE::empty()).await.expect("clone init");
        let second = a.clone(CLONE::empty()).await.expect("clone pid 2");
        let pids = [pid(&a), pid(&init), pid(&second)];
        for (t, name) in [(&init, "init"), (&second, "pid 2")] {
            assert_eq!(ppid_of(pid(t)), Some(our_pid()), "{name}'s parent is us");
        }
        assert_eq!(second.task().getpid().await.expect("getpid"), Pid::new(2));
        assert_invalid(
            second.clone(CLONE::PARENT).await,
            "CLONE_PARENT from a thread its parent cannot name the children of",
        );
        let q = second.clone(CLONE::empty()).await.expect("clone Q");
        assert_eq!(
            q.task().getppid().await.expect("getppid"),
            Pid::new(2),
            "Q is a child of pid 2"
        );
        exit_cleanly(a, "A").await;
        works(&q, "Q").await;
        let q = q.exec(sh("exit 21").await).await.expect("exec Q");
        assert_eq!(q.wait().await.expect("wait Q"), ChildState::Exited(21));
        exit_cleanly(second, "pid 2").await;
        exit_cleanly(init, "init").await;
        assert_reaped(&pids, "unshare(NEWPID)");
    })
}

#[test]
fn after_a_pid_namespace_init_execs_its_descendants_keep_their_children() {
    run(async {
        let n = local_thread()
            .clone(CLONE::NEWPID)
            .await
            .expect("clone(NEWPID)");
        let m = n.clone(CLONE::empty()).await.expect("clone M");
        // Init runs a program now: it can no longer wait for anything of ours.
        let n = n.exec(sleeper().await).await.expect("exec init");
        assert_invalid(
            m.clone(CLONE::PARENT).await,
            "CLONE_PARENT to an exec'd init",
        );
        let x = m.clone(CLONE::empty()).await.expect("clone X from M");
        assert_eq!(
            x.task().getppid().await.expect("getppid"),
            m.task().getpid().await.expect("getpid"),
            "X is M's own child"
        );
        let x = x.exit(5).await.expect("exit X");
        assert_eq!(x.wait().await.expect("wait X"), ChildState::Exited(5));
        // Killing init ends its namespace: M dies and is reaped with it.
        n.kill(Signal::SIGKILL).await.expect("kill init");
        assert_eq!(
            n.wait().await.expect("wait init"),
            ChildState::Killed(Signal::SIGKILL)
        );
        let err = m
            .task()
            .getpid()
            .await
            .expect_err("M died with its namespace");
        assert!(err.is_hangup(), "{err}");
        assert_reaped(&[n.pid()], "init");
    })
}

/// The lines of `/proc/PID/{which}` (a pid of our namespace), each as its three numbers.
fn id_map(pid: Pid, which: &str) -> Vec<[u64; 3]> {
    let text = std::fs::read_to_string(format!("/proc/{}/{which}", pid.as_raw()))
        .unwrap_or_else(|e| panic!("reading {which} of {pid:?}: {e}"));
    text.lines()
        .map(|l| {
            let n: Vec<u64> = l
                .split_whitespace()
                .map(|w| w.parse().expect("a number"))
                .collect();
            [n[0], n[1], n[2]]
        })
        .collect()
}

/// The id the kernel reports for an unmapped uid.
fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .expect("/proc/sys/kernel/overflowuid")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn clone_newuser_maps_our_ids_by_default() {
    run(async {
        let local = local_thread();
        let (uid, gid) = (
            local.task().geteuid().await.expect("geteuid"),
            local.task().getegid().await.expect("getegid"),
        );
        for cloner in ["local", "child"] {
            let a = local.clone(CLONE::empty()).await.expect("clone A");
            let from: &Thread = if cloner == "local" { &local } else { &a };
            let u = from.clone(CLONE::NEWUSER).await.expect("clone(NEWUSER)");
            let p = pid(&u);
            assert_eq!(
                id_map(p, "uid_map"),
                [[uid.into(), uid.into(), 1]],
                "{cloner}"
            );
            assert_eq!(
                id_map(p, "gid_map"),
                [[gid.into(), gid.into(), 1]],
                "{cloner}"
            );
            assert_eq!(u.task().getuid().await.expect("getuid"), uid, "{cloner}");
            assert_eq!(u.task().getgid().await.expect("getgid"), gid, "{cloner}");
            exit_cleanly(u, "U").await;
            exit_cleanly(a, "A").await;
        }
    })
}

#[test]
fn clone_newuser_can_leave_the_mappings_to_us() {
    run(async {
        let local = local_thread();
        let (uid, gid) = (
            local.task().geteuid().await.expect("geteuid"),
            local.task().getegid().await.expect("getegid"),
        );
        let skip = CloneOptions::new().automatically_write_user_mappings(false);
        // From the local thread: mapped afterwards with write_user_mappings.
        let u = local
            .clone_with(CLONE::NEWUSER, skip)
            .await
            .expect("clone(NEWUSER) without mappings");
        let p = pid(&u);
        assert!(id_map(p, "uid_map").is_empty(), "no uid mapping yet");
        assert!(id_map(p, "gid_map").is_empty(), "no gid mapping yet");
        assert_eq!(
            u.task().getuid().await.expect("getuid"),
            overflow_uid(),
            "unmapped"
        );
        write_user_mappings(local.task(), p, uid, gid, 0, 0)
            .await
            .expect("write_user_mappings");
        assert_eq!(id_map(p, "uid_map"), [[0, uid.into(), 1]]);
        assert_eq!(u.task().getuid().await.expect("getuid"), 0);
        assert_eq!(u.task().getgid().await.expect("getgid"), 0);
        assert_errno(
            write_user_mappings(local.task(), p, uid, gid, 1, 1).await,
            Errno::EPERM,
            "the maps are written once",
        );
        exit_cleanly(u, "U").await;

        // From a child thread: a range, written by hand through /proc (we are root in our
        // user namespace, which may map a range of its own ids).
        let a = local.clone(CLONE::empty()).await.expect("clone A");
        let v = a
            .clone_with(CLONE::NEWUSER, skip)
            .await
            .expect("clone(NEWUSER) without mappings from a child");
        let p = pid(&v);
        assert!(id_map(p, "uid_map").is_empty(), "no uid mapping yet");
        let line = format!("0 {uid} 1\n1 {} 9\n", uid + 1);
        std::fs::write(format!("/proc/{}/uid_map", p.as_raw()), line)
            .expect("write a uid range (needs root)");
        assert_eq!(
            id_map(p, "uid_map"),
            [[0, uid.into(), 1], [1, u64::from(uid) + 1, 9]]
        );
        assert_eq!(v.task().getuid().await.expect("getuid"), 0);
        // Options only matter with NEWUSER.
        let w = a
            .clone_with(CLONE::empty(), skip)
            .await
            .expect("clone without NEWUSER");
        exit_cleanly(w, "W").await;
        exit_cleanly(v, "V").await;
        exit_cleanly(a, "A").await;
    })
}
