//! Process, identity and namespace syscalls, on the local task and a clone child.
//!
//! Every test runs its body through `on_local_and_child`. Whatever changes process state
//! (names, limits, masks, dispositions, credentials, namespaces, roots) is only done in a
//! clone child (the `"child"` run, or a grandchild cloned for the purpose), never in this
//! test process.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rsyscall::near::{self, Capability, EXECVEAT, MNT, MS, Pid, PrioWho, RLIMIT, SigprocmaskHow};
use rsyscall::{CLONE, ChildState, Errno, Error, O, Signal, Task, Thread, W, local_thread};
use rsyscall_handle::structs::{
    CAPABILITY_VERSION_3, Capabilities, CpuSet, RobustListHead, SIG_DFL, SIG_IGN, Sigaction,
    Sigset, WaitId,
};
use rsyscall_handle::{ChildProcess, FileDescriptor, FutexWord, Process, ThreadProcess};
use rsyscall_tests::errors::{errno, is_invalid};
use rsyscall_tests::programs::sleeper;
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child};
use rsyscall_tests::tmp::TempDir;

/// A field of `/proc/<pid>/status`, as text.
fn proc_status(pid: Pid, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw()))
        .expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", pid.as_raw()))
        .trim()
        .to_string()
}

fn proc_hex(pid: Pid, field: &str) -> u64 {
    u64::from_str_radix(&proc_status(pid, field), 16).expect("hex field")
}

async fn which(thread: &Thread, name: &str) -> OsString {
    thread
        .environ()
        .which(name)
        .await
        .expect("which")
        .path()
        .to_os_string()
}

#[test]
fn prctl_name_round_trip() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let (pid, tid) = (
            task.getpid().await.expect("getpid"),
            task.gettid().await.expect("gettid"),
        );
        let comm =
            std::fs::read_to_string(format!("/proc/{}/task/{}/comm", pid.as_raw(), tid.as_raw()))
                .expect("comm");
        let name = task.get_name().await.expect("get_name");
        assert_eq!(name, comm.trim_end().as_bytes(), "{label}");
        // Bad names are refused before anything is sent (so they are safe to try here).
        assert!(
            is_invalid(&task.set_name(b"sixteen-bytes-xx").await),
            "{label}"
        );
        assert!(is_invalid(&task.set_name(b"nul\0name").await), "{label}");
        assert_eq!(task.get_name().await.expect("get_name"), name, "{label}");
        if label == "child" {
            task.set_name(b"fifteen-bytes-x").await.expect("set_name");
            assert_eq!(task.get_name().await.expect("get_name"), b"fifteen-bytes-x");
            task.set_name(b"rs-child").await.expect("set_name");
            assert_eq!(task.get_name().await.expect("get_name"), b"rs-child");
        }
    });
}

#[test]
fn prctl_flags_in_a_child() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        if label == "local" {
            // Reading is harmless: compare with libc.
            let mut sig = 0i32;
            // SAFETY: PR_GET_PDEATHSIG writes one int at the address given.
            unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &raw mut sig) };
            assert_eq!(
                task.get_pdeathsig()
                    .await
                    .expect("get_pdeathsig")
                    .map_or(0, Signal::as_raw),
                sig
            );
            return;
        }
        let old = task.get_pdeathsig().await.expect("get_pdeathsig");
        task.set_pdeathsig(Some(Signal::SIGUSR1))
            .await
            .expect("set");
        assert_eq!(
            task.get_pdeathsig().await.expect("get"),
            Some(Signal::SIGUSR1)
        );
        task.set_pdeathsig(None).await.expect("set");
        assert_eq!(task.get_pdeathsig().await.expect("get"), None);
        task.set_pdeathsig(old).await.expect("restore");

        assert!(!task.get_child_subreaper().await.expect("get"));
        task.set_child_subreaper(true).await.expect("set");
        assert!(task.get_child_subreaper().await.expect("get"));
        task.set_child_subreaper(false).await.expect("set");
        assert!(!task.get_child_subreaper().await.expect("get"));

        // no_new_privs cannot be undone: use a grandchild.
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        assert!(!gc.task().get_no_new_privs().await.expect("get"));
        gc.task().set_no_new_privs().await.expect("set");
        assert!(gc.task().get_no_new_privs().await.expect("get"));
        assert_eq!(
            proc_status(gc.task().getpid().await.expect("pid"), "NoNewPrivs"),
            "1"
        );
    });
}

#[test]
fn rlimit_set_get() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let got = task.getrlimit(RLIMIT::NOFILE).await.expect("getrlimit");
        if label == "local" {
            let mut theirs = libc::rlimit64 {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit64 writes one rlimit64.
            let r = unsafe { libc::getrlimit64(libc::RLIMIT_NOFILE, &mut theirs) };
            assert_eq!(r, 0);
            assert_eq!((got.cur, got.max), (theirs.rlim_cur, theirs.rlim_max));
            return;
        }
        assert!(got.cur > 10, "child soft limit {}", got.cur);
        let lower = rsyscall_handle::structs::Rlimit {
            cur: got.cur - 1,
            max: got.max,
        };
        task.setrlimit(RLIMIT::NOFILE, lower)
            .await
            .expect("setrlimit");
        assert_eq!(task.getrlimit(RLIMIT::NOFILE).await.expect("get"), lower);
        // The parent sees the child's new limit through prlimit64 on its pid.
        let pid = task.getpid().await.expect("getpid");
        let seen = local_thread()
            .task()
            .prlimit(pid, RLIMIT::NOFILE, None)
            .await
            .expect("prlimit");
        assert_eq!(seen, lower);
        // Bad limits are refused before sending.
        let inverted = rsyscall_handle::structs::Rlimit { cur: 10, max: 5 };
        assert!(is_invalid(&task.setrlimit(RLIMIT::NOFILE, inverted).await));
        assert!(is_invalid(&rsyscall_handle::structs::Rlimit::from_signed(
            Some(-1),
            Some(5)
        )));
        assert!(is_invalid(&rsyscall_handle::structs::Rlimit::from_signed(
            Some(1),
            Some(-2)
        )));
        assert_eq!(task.getrlimit(RLIMIT::NOFILE).await.expect("get"), lower);
        // Lowering the hard limit, then raising it back without CAP_SYS_RESOURCE, fails
        // unless we have the capability.
        task.setrlimit(RLIMIT::NOFILE, got).await.expect("restore");
        assert_eq!(task.getrlimit(RLIMIT::NOFILE).await.expect("get"), got);
    });
}

#[test]
fn sched_affinity() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let set = task
            .sched_getaffinity(Pid::new(0))
            .await
            .expect("getaffinity");
        assert!(set.count() >= 1, "{label}: {set:?}");
        if label == "local" {
            // SAFETY: cpu_set_t is plain data; sched_getaffinity writes it.
            let theirs = unsafe {
                let mut s: libc::cpu_set_t = std::mem::zeroed();
                assert_eq!(
                    libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut s),
                    0
                );
                s
            };
            for cpu in 0..CpuSet::CAPACITY {
                // SAFETY: CPU_ISSET reads the set.
                assert_eq!(set.contains(cpu), unsafe { libc::CPU_ISSET(cpu, &theirs) });
            }
            return;
        }
        let r = task.sched_setaffinity(Pid::new(0), &CpuSet::empty()).await;
        assert_eq!(errno(r), Some(Errno::EINVAL));
        let first = set.cpus().next().expect("a cpu");
        let one = CpuSet::single(first).expect("single");
        task.sched_setaffinity(Pid::new(0), &one)
            .await
            .expect("set one");
        assert_eq!(task.sched_getaffinity(Pid::new(0)).await.expect("get"), one);
        task.sched_setaffinity(Pid::new(0), &set)
            .await
            .expect("restore");
        assert_eq!(task.sched_getaffinity(Pid::new(0)).await.expect("get"), set);
        // A CPU past what the set (and the kernel's cpu_set_t) can name is refused.
        assert!(is_invalid(&CpuSet::single(CpuSet::CAPACITY)));
        let mut s = CpuSet::empty();
        assert!(is_invalid(&s.insert(usize::MAX)));
    });
}

#[test]
fn sigaction_round_trip() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let current = task
            .rt_sigaction(Signal::SIGUSR2, None)
            .await
            .expect("read");
        if label == "local" {
            // Reading only; compare with libc.
            // SAFETY: sigaction with a null new action only writes `old`.
            let old = unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                assert_eq!(
                    libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut old),
                    0
                );
                old
            };
            assert_eq!(current.handler, old.sa_sigaction as u64);
            return;
        }
        let before = task
            .rt_sigaction(Signal::SIGUSR2, Some(&Sigaction::ignore()))
            .await
            .expect("install SIG_IGN");
        assert_eq!(before, current);
        let now = task
            .rt_sigaction(Signal::SIGUSR2, None)
            .await
            .expect("read");
        assert_eq!(now.handler, SIG_IGN);
        let dfl = Sigaction::default_action().with_flags(near::SA::RESTART);
        let prev = task
            .rt_sigaction(Signal::SIGUSR2, Some(&dfl))
            .await
            .expect("dfl");
        assert_eq!(prev.handler, SIG_IGN);
        let now = task
            .rt_sigaction(Signal::SIGUSR2, None)
            .await
            .expect("read");
        assert_eq!((now.handler, now.flags()), (SIG_DFL, near::SA::RESTART));
        task.rt_sigaction(Signal::SIGUSR2, Some(&before))
            .await
            .expect("restore");
        // SIGKILL's disposition cannot change; a handler address is refused before sending.
        let r = task
            .rt_sigaction(Signal::SIGKILL, Some(&Sigaction::ignore()))
            .await;
        assert_eq!(errno(r), Some(Errno::EINVAL));
        let handler = Sigaction {
            handler: 0x1000,
            ..Sigaction::default()
        };
        assert!(is_invalid(
            &task.rt_sigaction(Signal::SIGUSR2, Some(&handler)).await
        ));
    });
}

#[test]
fn sigprocmask_round_trip() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let mask = task
            .rt_sigprocmask(SigprocmaskHow::Block, None)
            .await
            .expect("read");
        if label == "local" {
            // SAFETY: reads the calling thread's mask (the one the local task runs on).
            let theirs = unsafe {
                let mut s: libc::sigset_t = std::mem::zeroed();
                assert_eq!(
                    libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut s),
                    0
                );
                s
            };
            for n in 1..=64 {
                let sig = Signal::new(n).expect("signal");
                // SAFETY: sigismember reads the set.
                let member = unsafe { libc::sigismember(&theirs, n) } == 1;
                assert_eq!(mask.contains(sig), member, "{sig}");
            }
            return;
        }
        let usr1 = Sigset::from([Signal::SIGUSR1]);
        let old = task
            .rt_sigprocmask(SigprocmaskHow::Unblock, Some(usr1))
            .await
            .expect("unblock");
        assert_eq!(old, mask);
        let now = task
            .rt_sigprocmask(SigprocmaskHow::Block, None)
            .await
            .expect("read");
        assert!(!now.contains(Signal::SIGUSR1));
        task.rt_sigprocmask(SigprocmaskHow::Block, Some(usr1))
            .await
            .expect("block");
        let now = task
            .rt_sigprocmask(SigprocmaskHow::Block, None)
            .await
            .expect("read");
        assert!(now.contains(Signal::SIGUSR1));
        task.rt_sigprocmask(SigprocmaskHow::SetMask, Some(Sigset::empty()))
            .await
            .expect("empty");
        assert_eq!(
            task.rt_sigprocmask(SigprocmaskHow::Block, None)
                .await
                .expect("read"),
            Sigset::empty()
        );
        task.rt_sigprocmask(SigprocmaskHow::SetMask, Some(mask))
            .await
            .expect("restore");
        assert_eq!(
            task.rt_sigprocmask(SigprocmaskHow::Block, None)
                .await
                .expect("read"),
            mask
        );
    });
}

#[test]
fn ids_match_libc() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        // SAFETY: the id getters have no preconditions.
        let theirs = unsafe {
            (
                libc::getuid(),
                libc::geteuid(),
                libc::getgid(),
                libc::getegid(),
            )
        };
        let ours = (
            task.getuid().await.expect("getuid"),
            task.geteuid().await.expect("geteuid"),
            task.getgid().await.expect("getgid"),
            task.getegid().await.expect("getegid"),
        );
        assert_eq!(ours, theirs, "{label}");
        if label == "child" {
            // Setting the ids we already have succeeds and changes nothing.
            task.setuid(ours.0).await.expect("setuid");
            task.setgid(ours.2).await.expect("setgid");
            task.setresuid(None, Some(ours.1), None)
                .await
                .expect("setresuid");
            task.setresgid(Some(ours.2), None, None)
                .await
                .expect("setresgid");
            assert_eq!(task.geteuid().await.expect("geteuid"), ours.1);
            assert!(is_invalid(
                &task.setresuid(Some(u32::MAX), None, None).await
            ));
            assert!(is_invalid(
                &task.setresgid(None, None, Some(u32::MAX)).await
            ));
        }
    });
}

#[test]
fn getgroups_and_setgroups() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let pid = task.getpid().await.expect("getpid");
        let groups = task.getgroups().await.expect("getgroups");
        let proc: Vec<u32> = proc_status(pid, "Groups")
            .split_whitespace()
            .map(|g| g.parse().expect("gid"))
            .collect();
        let mut sorted = groups.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, proc, "{label}");
        if label == "child" {
            task.setgroups(&[0, 5, 7]).await.expect("setgroups");
            let mut now = task.getgroups().await.expect("getgroups");
            now.sort_unstable();
            assert_eq!(now, vec![0, 5, 7]);
            assert_eq!(proc_status(pid, "Groups"), "0 5 7");
            task.setgroups(&[]).await.expect("empty");
            assert_eq!(
                task.getgroups().await.expect("getgroups"),
                Vec::<u32>::new()
            );
            task.setgroups(&groups).await.expect("restore");
            let too_many = vec![0u32; near::NGROUPS_MAX + 1];
            assert!(is_invalid(&task.setgroups(&too_many).await));
        }
    });
}

#[test]
fn capget_returns_version_3_data() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let pid = task.getpid().await.expect("getpid");
        let caps = task.capget(None).await.expect("capget");
        assert_eq!(caps.effective, proc_hex(pid, "CapEff"), "{label}");
        assert_eq!(caps.permitted, proc_hex(pid, "CapPrm"), "{label}");
        assert_eq!(caps.inheritable, proc_hex(pid, "CapInh"), "{label}");
        assert_eq!(CAPABILITY_VERSION_3, 0x2008_0522);
        if label == "local" {
            return;
        }
        // The parent reads the child's sets by tid.
        let tid = task.gettid().await.expect("gettid");
        let seen = local_thread()
            .task()
            .capget(Some(tid))
            .await
            .expect("capget tid");
        assert_eq!(seen, caps);
        // Drop one effective capability (it stays permitted), then restore it.
        let cap = Capability::SYS_CHROOT;
        if caps.has_effective(cap) {
            let fewer = Capabilities {
                effective: caps.effective & !cap.bit(),
                ..caps
            };
            task.capset(&fewer).await.expect("capset");
            assert_eq!(task.capget(None).await.expect("capget"), fewer);
            assert_eq!(proc_hex(pid, "CapEff"), fewer.effective);
            task.capset(&caps).await.expect("restore");
            assert_eq!(task.capget(None).await.expect("capget"), caps);
        }
        // Ambient capabilities need the capability permitted and inheritable.
        let cap = Capability::NET_BIND_SERVICE;
        if caps.has_permitted(cap) {
            assert!(!task.cap_ambient_is_set(cap).await.expect("is_set"));
            let r = task.cap_ambient_raise(cap).await;
            if caps.inheritable & cap.bit() == 0 {
                assert_eq!(errno(r), Some(Errno::EPERM));
                let inh = Capabilities {
                    inheritable: caps.inheritable | cap.bit(),
                    ..caps
                };
                task.capset(&inh).await.expect("capset inheritable");
                task.cap_ambient_raise(cap).await.expect("raise");
            } else {
                r.expect("raise");
            }
            assert!(task.cap_ambient_is_set(cap).await.expect("is_set"));
            assert_ne!(proc_hex(pid, "CapAmb") & cap.bit(), 0);
            task.cap_ambient_lower(cap).await.expect("lower");
            assert!(!task.cap_ambient_is_set(cap).await.expect("is_set"));
            task.cap_ambient_raise(cap).await.expect("raise");
            task.cap_ambient_clear_all().await.expect("clear");
            assert!(!task.cap_ambient_is_set(cap).await.expect("is_set"));
            task.capset(&caps).await.expect("restore");
        }
    });
}

#[test]
fn process_groups_and_sessions() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let pgid = task.getpgid(Pid::new(0)).await.expect("getpgid");
        if label == "local" {
            // SAFETY: getpgid has no preconditions.
            assert_eq!(pgid.as_raw(), unsafe { libc::getpgid(0) });
        } else {
            // A child becomes a group leader with setpgid(0, 0).
            let pid = task.getpid().await.expect("getpid");
            task.setpgid(Pid::new(0), Pid::new(0))
                .await
                .expect("setpgid");
            assert_eq!(task.getpgid(Pid::new(0)).await.expect("getpgid"), pid);
            let seen = Process::new(local_thread().task(), pid);
            assert_eq!(seen.getpgid().await.expect("getpgid"), pid);
            // A group leader cannot start a session.
            assert_eq!(errno(task.setsid().await), Some(Errno::EPERM));
        }
        // A fresh grandchild starts a session, then its group is signalled by id.
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let gpid = gc.task().getpid().await.expect("getpid");
        assert_eq!(gc.task().setsid().await.expect("setsid"), gpid, "{label}");
        assert_eq!(gc.task().getpgid(Pid::new(0)).await.expect("getpgid"), gpid);
        let seen = Process::new(task, gc.pid().expect("pid"));
        assert_eq!(
            seen.getpgid().await.expect("getpgid"),
            gc.pid().expect("pid")
        );
        seen.killpg(Signal::SIGKILL).await.expect("killpg");
        let state = gc
            .process()
            .expect("process")
            .waitid(W::EXITED)
            .await
            .expect("waitid");
        assert_eq!(state, Some(ChildState::Killed(Signal::SIGKILL)), "{label}");
        assert!(is_invalid(
            &Process::new(task, Pid::new(0))
                .killpg(Signal::SIGKILL)
                .await
        ));
    });
}

#[test]
fn priority_of_a_child() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let nice = task
            .getpriority(PrioWho::Process(Pid::new(0)))
            .await
            .expect("get");
        if label == "local" {
            // libc's getpriority converts the kernel's 20 - nice back to nice.
            // SAFETY: getpriority has no preconditions.
            let theirs = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(nice, theirs);
        }
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let proc = Process::new(task, gc.pid().expect("pid"));
        let before = proc.getpriority().await.expect("getpriority");
        assert!(before < 19, "{label}: nice {before}");
        proc.setpriority(before + 1).await.expect("setpriority");
        let mine = gc
            .task()
            .getpriority(PrioWho::Process(Pid::new(0)))
            .await
            .expect("get");
        assert_eq!(mine, before + 1, "{label}");
        assert_eq!(proc.getpriority().await.expect("getpriority"), before + 1);
        assert!(is_invalid(&proc.setpriority(20).await));
        assert!(is_invalid(&proc.setpriority(-21).await));
        // Signalling by pid (racy in general; here the grandchild is unreaped).
        proc.kill(Signal::SIGKILL).await.expect("kill");
        let state = gc
            .process()
            .expect("process")
            .waitid(W::EXITED)
            .await
            .expect("wait");
        assert_eq!(state, Some(ChildState::Killed(Signal::SIGKILL)), "{label}");
    });
}

#[test]
fn gettid_and_tgkill() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let pid = task.getpid().await.expect("getpid");
        let tid = task.gettid().await.expect("gettid");
        if label == "child" {
            assert_eq!(tid, pid, "a clone child is single-threaded");
        }
        assert!(Path::new(&format!("/proc/{}/task/{}", pid.as_raw(), tid.as_raw())).exists());
        task.tgkill(pid, tid, None).await.expect("tgkill 0");
        // A thread id that is not in the thread group.
        let r = task.tgkill(pid, Pid::new(i32::MAX), None).await;
        assert_eq!(errno(r), Some(Errno::ESRCH), "{label}");
    });
}

#[test]
fn waitid_by_pidfd_after_exec() {
    on_local_and_child(|thread, label| async move {
        let child = thread.clone(CLONE::empty()).await.expect("clone");
        let cmd = thread.environ().which("true").await.expect("which true");
        let process = child.exec(cmd).await.expect("exec");
        // The child's parent: the local process in both runs (Thread::clone from a child
        // thread uses CLONE_PARENT).
        let task = process.process().parent();
        // Wait by pid first: the pidfd's open file description is non-blocking (it is
        // shared with the reactor's copy), so waitid on it reports EAGAIN until the child
        // has exited.
        let by_pid = task
            .waitid(WaitId::Pid(process.pid()), W::EXITED | W::NOWAIT)
            .await
            .expect("waitid by pid")
            .expect("an event");
        let info = task
            .waitid(
                WaitId::PidFd(process.process().pidfd()),
                W::EXITED | W::NOWAIT,
            )
            .await
            .expect("waitid")
            .expect("an event");
        assert_eq!(info, by_pid);
        assert_eq!(info.signo, libc::SIGCHLD, "{label}");
        assert_eq!(info.code, libc::CLD_EXITED);
        assert_eq!(info.status, 0);
        assert_eq!(info.pid, process.pid().as_raw());
        // SAFETY: getuid has no preconditions.
        assert_eq!(info.uid, unsafe { libc::getuid() });
        assert_eq!(info.child_state(), Some(ChildState::Exited(0)));
        // NOWAIT left it to be reaped by its owner.
        assert_eq!(process.wait().await.expect("wait"), ChildState::Exited(0));
        // A pidfd of another table is refused before sending.
        if label == "child" {
            let r = thread
                .task()
                .waitid(WaitId::PidFd(&local_thread().stdin()), W::EXITED)
                .await;
            assert!(matches!(r, Err(Error::Mismatch(_))), "{r:?}");
        }
        // Nothing left to wait for, by pid.
        let r = task
            .waitid(WaitId::Pid(process.pid()), W::EXITED | W::NOHANG)
            .await;
        assert_eq!(errno(r), Some(Errno::ECHILD));
    });
}

#[test]
fn realtime_signal_kills_a_sleeping_child() {
    on_local_and_child(|thread, label| async move {
        let child = thread.clone(CLONE::empty()).await.expect("clone");
        let process = child.exec(sleeper().await).await.expect("exec");
        // Waited for by its parent (the local process in both runs: CLONE_PARENT).
        let none = process
            .process()
            .parent()
            .waitid(
                WaitId::PidFd(process.process().pidfd()),
                W::EXITED | W::NOHANG,
            )
            .await
            .expect("waitid");
        assert_eq!(none, None, "{label}: sleep is still running");
        let rt = Signal::new(libc::SIGRTMIN() + 2).expect("SIGRTMIN+2");
        process.kill(rt).await.expect("kill");
        let state = process.wait().await.expect("wait");
        assert_eq!(state, ChildState::Killed(rt), "{label}");
        assert_eq!(state.to_string(), "killed by SIGRTMIN+2");
    });
}

#[test]
fn execve_and_execveat() {
    on_local_and_child(|thread, label| async move {
        let true_path = which(&thread, "true").await;
        let sh_path = which(&thread, "sh").await;
        let no_env: &[&str] = &[];

        // execve: the child becomes `true`.
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let t = gc.task();
        // A failed exec leaves the child running its server.
        let image = t
            .argv_envp("/nonexistent/rsyscall", &["x"], no_env)
            .await
            .expect("image");
        assert_eq!(errno(t.execve(image).await), Some(Errno::ENOENT), "{label}");
        t.getpid().await.expect("still alive");
        assert!(is_invalid(
            &t.argv_envp(&true_path, &["a\0b"], no_env).await
        ));
        assert!(is_invalid(
            &t.argv_envp(&true_path, &["true"], &["X=\0"]).await
        ));
        let image = t
            .argv_envp(&true_path, &["true"], &["A=1"])
            .await
            .expect("image");
        t.execve(image).await.expect("execve");
        let state = gc
            .process()
            .expect("process")
            .waitid(W::EXITED)
            .await
            .expect("wait");
        assert_eq!(state, Some(ChildState::Exited(0)), "{label}");

        // execveat on an fd of the binary, with an empty path.
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let t = gc.task();
        let fd = t
            .open(sh_path.as_bytes(), O::RDONLY, 0)
            .await
            .expect("open sh");
        let image = t
            .argv_envp("", &["sh", "-c", "exit $X"], &["X=7"])
            .await
            .expect("image");
        t.execveat(Some(&fd), image, EXECVEAT::EMPTY_PATH)
            .await
            .expect("execveat");
        let state = gc
            .process()
            .expect("process")
            .waitid(W::EXITED)
            .await
            .expect("wait");
        assert_eq!(state, Some(ChildState::Exited(7)), "{label}");
        drop(fd);
    });
}

#[test]
fn set_robust_list_with_a_valid_head() {
    on_local_and_child(|thread, label| async move {
        // Only in a grandchild: the test threads' lists belong to libc.
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let t = gc.task();
        let ptr = t.malloc::<RobustListHead>().await.expect("malloc");
        let head = RobustListHead::empty_at(ptr.near(), 0);
        let head = ptr.write(&head).await.expect("write");
        // SAFETY: `head` is an empty list kept alive until the grandchild has exited.
        unsafe { t.set_robust_list(&head) }
            .await
            .expect("set_robust_list");
        exit_cleanly(gc, "gc").await;
        drop(head);
        let _ = label;
    });
}

#[test]
fn unshare_uts_and_setns_back() {
    on_local_and_child(|thread, label| async move {
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let t = gc.task();
        let our_pid = thread.task().getpid().await.expect("getpid");
        let gpid = gc.pid().expect("pid");
        let link = |pid: Pid| {
            std::fs::read_link(format!("/proc/{}/ns/uts", pid.as_raw())).expect("readlink")
        };
        let ours = t
            .open(
                format!("/proc/{}/ns/uts", our_pid.as_raw()).as_bytes(),
                O::RDONLY,
                0,
            )
            .await
            .expect("open ns");
        assert!(is_invalid(&t.unshare(CLONE::FILES).await));
        assert!(is_invalid(&t.setns(&ours, CLONE::VM).await));
        match t.unshare(CLONE::NEWUTS).await {
            Ok(()) => {
                assert_ne!(link(gpid), link(our_pid), "{label}");
                // The wrong kind is refused by the kernel.
                assert_eq!(
                    errno(t.setns(&ours, CLONE::NEWNET).await),
                    Some(Errno::EINVAL)
                );
                t.setns(&ours, CLONE::NEWUTS).await.expect("setns");
                assert_eq!(link(gpid), link(our_pid), "{label}");
            }
            Err(e) => {
                assert_eq!(e.errno(), Some(Errno::EPERM), "{e}");
                assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
            }
        }
    });
}

#[test]
fn mount_tmpfs_in_a_new_mount_namespace() {
    on_local_and_child(|thread, label| async move {
        let dir = TempDir::new("proc-mnt");
        let d = dir.path().as_os_str().as_bytes();
        let file = dir.join("inside");
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let t = gc.task();
        assert!(is_invalid(
            &t.mount(
                None,
                b"/tmp/a\0b",
                Some(b"tmpfs".as_slice()),
                MS::empty(),
                None
            )
            .await
        ));
        match t.unshare(CLONE::NEWNS).await {
            Ok(()) => {
                // Keep our mounts from propagating back to the test's namespace.
                t.mount(None, b"/", None, MS::REC | MS::PRIVATE, None)
                    .await
                    .expect("make private");
                let tmpfs = Some(b"tmpfs".as_slice());
                t.mount(tmpfs, d, tmpfs, MS::NOSUID, Some(b"size=1m".as_slice()))
                    .await
                    .expect("mount tmpfs");
                let f = t
                    .open(file.as_os_str().as_bytes(), O::CREAT | O::WRONLY, 0o600)
                    .await
                    .expect("create in tmpfs");
                drop(f);
                t.flush_closes().await.expect("close");
                assert!(
                    !file.exists(),
                    "{label}: the tmpfs is only in the child's namespace"
                );
                t.umount2(d, MNT::empty()).await.expect("umount2");
                let r = t.open(file.as_os_str().as_bytes(), O::RDONLY, 0).await;
                assert_eq!(errno(r), Some(Errno::ENOENT), "{label}");
                assert_eq!(errno(t.umount2(d, MNT::empty()).await), Some(Errno::EINVAL));
            }
            Err(e) => {
                assert_eq!(e.errno(), Some(Errno::EPERM), "{e}");
                assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
            }
        }
        drop(gc);
        dir.remove().expect("cleanup");
    });
}

#[test]
fn chroot_in_a_child() {
    on_local_and_child(|thread, label| async move {
        let dir = TempDir::new("proc-root");
        std::fs::write(dir.join("marker"), b"x").expect("marker");
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let t = gc.task();
        assert!(is_invalid(&t.chroot(b"/tm\0p").await));
        match t.chroot(dir.path()).await {
            Ok(()) => {
                t.open(b"/marker", O::RDONLY, 0)
                    .await
                    .expect("marker at the new root");
                let outside = dir.join("marker");
                let r = t.open(outside.as_os_str().as_bytes(), O::RDONLY, 0).await;
                assert_eq!(errno(r), Some(Errno::ENOENT), "{label}");
                // Our own root is unchanged.
                assert!(!Path::new("/marker").exists());
            }
            Err(e) => {
                assert_eq!(e.errno(), Some(Errno::EPERM), "{e}");
                assert!(e.to_string().contains("CAP_SYS_CHROOT"), "{e}");
            }
        }
        drop(gc);
        dir.remove().expect("cleanup");
    });
}

/// Clones, from `task`, a process sharing our address space that waits forever on a futex
/// word, with its stack, wait word and child-clear-tid word in one allocation.
async fn futex_waiter(task: &Task) -> ThreadProcess {
    const STACK: usize = 16 * 1024;
    let mem = task.alloc(STACK + 16, 16).await.expect("alloc");
    let wait_word = mem.addr_at(STACK).expect("addr");
    let image = rsyscall_server::proto::StackImage::new(
        rsyscall_server::futex_helper_nostop as *const () as u64,
        [wait_word.as_u64(), 1, 0, 0, 0, 0],
    );
    let mut bytes = image.to_bytes().to_vec();
    bytes.extend_from_slice(&1u32.to_ne_bytes()); // wait word
    bytes.extend_from_slice(&1u32.to_ne_bytes()); // child-clear-tid word
    bytes.extend_from_slice(&(-1i32).to_ne_bytes()); // pidfd slot
    mem.write(STACK - 64, &bytes).await.expect("write");
    // SAFETY: the child runs the futex helper on the stack image in `mem`, which the
    // ThreadProcess keeps until the child is seen gone; the tid words are in `mem`.
    let pid = unsafe {
        near::clone(
            task.sysif(),
            CLONE::VM | CLONE::CHILD_CLEARTID | CLONE::PIDFD,
            Some(Signal::SIGCHLD),
            mem.addr_at(STACK - 64).expect("addr"),
            mem.addr_at(STACK + 8).expect("addr"),
            mem.addr_at(STACK + 4).expect("addr"),
            0,
        )
    }
    .await
    .expect("clone");
    let b = mem.read(STACK + 8, 4).await.expect("read pidfd");
    let n = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    // SAFETY: clone(CLONE_PIDFD) just created this fd in the task's table for us.
    let pidfd = unsafe { FileDescriptor::from_raw(task, near::FileDescriptor::new(n)) };
    let futex = FutexWord {
        allocation: 0,
        offset: STACK + 4,
    };
    ThreadProcess::new(ChildProcess::new(task, pid, pidfd), vec![mem], Some(futex))
        .expect("thread process")
}

#[test]
fn thread_process_frees_memory_when_the_child_is_gone() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        // Seen through the child-clear-tid word.
        let tp = futex_waiter(task).await;
        assert!(!tp.poll_released().await.expect("poll"), "{label}");
        assert!(tp.holds_memory());
        tp.kill(Signal::SIGKILL).await.expect("kill");
        let info = task
            .waitid(WaitId::PidFd(tp.process().pidfd()), W::EXITED | W::NOWAIT)
            .await
            .expect("waitid")
            .expect("event");
        assert_eq!(
            info.child_state(),
            Some(ChildState::Killed(Signal::SIGKILL))
        );
        assert!(
            tp.poll_released().await.expect("poll"),
            "{label}: word cleared"
        );
        assert!(!tp.holds_memory());
        assert_eq!(
            tp.waitid(W::EXITED).await.expect("waitid"),
            Some(ChildState::Killed(Signal::SIGKILL))
        );

        // Seen through a wait.
        let tp = futex_waiter(task).await;
        tp.kill(Signal::SIGKILL).await.expect("kill");
        assert_eq!(
            tp.waitid(W::EXITED).await.expect("waitid"),
            Some(ChildState::Killed(Signal::SIGKILL))
        );
        assert!(!tp.holds_memory(), "{label}");
        assert!(tp.poll_released().await.expect("poll"));
    });
}

#[test]
fn thread_process_refuses_a_futex_word_outside_its_memory() {
    on_local_and_child(|thread, _label| async move {
        let task = thread.task();
        let mem = task.alloc(16, 8).await.expect("alloc");
        let pid = task.getpid().await.expect("getpid");
        let pidfd = task
            .pidfd_open(pid, rsyscall::near::PIDFD::empty())
            .await
            .expect("pidfd_open");
        let bad = FutexWord {
            allocation: 0,
            offset: 14,
        };
        let r = ThreadProcess::new(ChildProcess::new(task, pid, pidfd), vec![mem], Some(bad));
        assert!(is_invalid(&r));
    });
}

#[test]
fn pivot_root_in_a_new_mount_namespace() {
    on_local_and_child(|thread, label| async move {
        let dir = TempDir::new("proc-pivot");
        std::fs::write(dir.join("marker"), b"x").expect("marker");
        std::fs::create_dir(dir.join("old")).expect("old");
        let d = dir.path().as_os_str().as_bytes();
        let old = dir.join("old");
        let gc = thread.clone(CLONE::empty()).await.expect("clone");
        let t = gc.task();
        assert!(is_invalid(&t.pivot_root(b"/a\0", b"/b").await));
        t.unshare(CLONE::NEWNS).await.expect("unshare");
        t.mount(None, b"/", None, MS::REC | MS::PRIVATE, None)
            .await
            .expect("make private");
        // new_root must be a mount point: bind-mount the directory onto itself.
        t.mount(Some(d), d, None, MS::BIND, None)
            .await
            .expect("bind");
        // Paths take any path type: bytes and a PathBuf here.
        t.pivot_root(d, &old).await.expect("pivot_root");
        t.open(b"/marker", O::RDONLY, 0)
            .await
            .expect("marker at the new root");
        // The old root is under /old; detach it, and it is gone.
        let again = format!("/old{}", dir.join("marker").display());
        t.open(again.as_bytes(), O::RDONLY, 0)
            .await
            .expect("old root under /old");
        t.flush_closes().await.expect("close");
        t.umount2(Path::new("/old"), MNT::DETACH)
            .await
            .expect("umount2");
        let r = t.open(again.as_bytes(), O::RDONLY, 0).await;
        assert_eq!(errno(r), Some(Errno::ENOENT), "{label}");
        assert!(!Path::new("/marker").exists());
        drop(gc);
        dir.remove().expect("cleanup");
    });
}

#[test]
fn unshare_and_setns_update_the_recorded_namespaces() {
    rsyscall_tests::tasks::run(async {
        let child = rsyscall::local_thread()
            .clone(rsyscall::CLONE::empty())
            .await
            .expect("clone");
        let task = child.task();
        let before = task.namespaces();
        task.unshare(rsyscall::CLONE::NEWNS)
            .await
            .expect("unshare(NEWNS) as root");
        let after = task.namespaces();
        assert_ne!(
            after.mountns, before.mountns,
            "a new mount namespace is recorded"
        );
        assert_eq!(
            after.netns, before.netns,
            "the network namespace is unchanged"
        );
        assert_eq!(after.fd_table, before.fd_table);
        // Going back into our mount namespace records another identity again.
        let ours = task
            .open(
                format!("/proc/{}/ns/mnt", std::process::id()).as_bytes(),
                rsyscall::O::RDONLY,
                0,
            )
            .await
            .expect("open our mount namespace");
        task.setns(&ours, rsyscall::CLONE::NEWNS)
            .await
            .expect("setns");
        assert_ne!(task.namespaces().mountns, after.mountns);
        exit_cleanly(child, "child").await;
    })
}
