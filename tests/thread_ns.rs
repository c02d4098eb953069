//! Thread conveniences, unshare and namespaces: pid, user, mount, network namespaces, chroot, process groups.
//!
//! These run as root (as CI does); a missing kernel feature fails the test with a message
//! saying what is missing. The tests are serialized: several compare fd tables and
//! process-wide state.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;

use rsyscall::near::Pid;
use rsyscall::structs::{AnySockaddr, SockaddrIn, Timespec};
use rsyscall::{
    AF, AT, CLONE, Capability, ChildState, Command, Environment, Errno, Error, FD, FileDescriptor,
    IFF, MS, O, SOCK, SockType, TUN, Task, Thread, local_thread,
};
use rsyscall_tests::errors::{assert_errno, assert_invalid, serial};
use rsyscall_tests::programs::{sh, sleeper};
use rsyscall_tests::tasks::{child_with_stdout_pipe, exit_cleanly, on_local_and_child, run};

/// Runs `command` in a fresh child of `parent` with its stdout on a pipe; returns what it
/// wrote and how it ended.
async fn output(parent: &Thread, command: Command) -> (Vec<u8>, ChildState) {
    let (child, stdout) = child_with_stdout_pipe(parent).await;
    let process = child.exec(command).await.expect("exec");
    let out = parent.read_to_eof(&stdout).await.expect("read");
    let state = process.wait().await.expect("wait");
    (out, state)
}

/// Every capability this kernel knows, as a mask.
fn all_caps() -> u64 {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("/proc/sys/kernel/cap_last_cap")
        .trim()
        .parse()
        .expect("cap_last_cap is a number");
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// Fails with a message if user namespaces cannot be made here.
fn require_user_namespaces() {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        assert_ne!(
            s.trim(),
            "0",
            "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
        );
    }
}

#[test]
fn mkdtemp_in_a_child_is_private_and_removed_on_cleanup_and_drop() {
    let _g = serial();
    run(async {
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let dir = child.mkdtemp("rsyscall-ns-").await.expect("mkdtemp");
        let path = dir.path().to_owned();
        let name = path.file_name().expect("a name").to_string_lossy();
        assert!(name.starts_with("rsyscall-ns-"), "{path:?}");
        assert!(
            name.len() > "rsyscall-ns-".len(),
            "a random suffix: {path:?}"
        );
        assert_eq!(
            path.parent(),
            Some(child.environ().vars().tmpdir().as_path()),
            "made under the thread's tmpdir"
        );
        let meta = std::fs::metadata(&path).expect("the directory exists");
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700, "{path:?}");
        // Fill it, with a nested directory, a symlink out of it and a file.
        child
            .spit(path.join("file"), b"data", 0o644)
            .await
            .expect("spit");
        let sub = child.mkdir(path.join("sub"), 0o755).await.expect("mkdir");
        child
            .spit(sub.join("deep"), b"more", 0o600)
            .await
            .expect("spit deep");
        child
            .task()
            .symlinkat(b"/etc", None, path.join("link"))
            .await
            .expect("symlink");
        dir.cleanup().await.expect("cleanup");
        assert!(!path.exists(), "removed by cleanup: {path:?}");
        assert!(
            std::path::Path::new("/etc").exists(),
            "the symlink's target is untouched"
        );

        let other = child.mkdtemp("rsyscall-ns-").await.expect("mkdtemp");
        let other_path = other.path().to_owned();
        assert_ne!(other_path, path, "fresh names");
        child
            .spit(other_path.join("file"), b"data", 0o644)
            .await
            .expect("spit");
        drop(other);
        assert!(
            !other_path.exists(),
            "removed on drop (same mount namespace): {other_path:?}"
        );

        assert_invalid(child.mkdtemp("a/b").await, "prefix with a slash");
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn spit_writes_a_file_that_reads_back() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let dir = local_thread()
            .mkdtemp("rsyscall-spit-")
            .await
            .expect("mkdtemp");
        let path = dir.path().join("f");
        let got = thread
            .spit(path.clone(), b"first contents, longer", 0o640)
            .await
            .expect("spit");
        assert_eq!(got, path, "{label}: spit returns its path");
        // Truncated when written again.
        thread
            .spit(&path, b"second", 0o640)
            .await
            .expect("spit again");
        let fd = thread.task().open(&path, O::RDONLY, 0).await.expect("open");
        assert_eq!(
            thread.read_to_eof(&fd).await.expect("read"),
            b"second",
            "{label}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"second", "{label}");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o777 & !0o640,
            0,
            "{label}: no bits beyond 0o640: {mode:o}"
        );
        assert_eq!(mode & 0o600, 0o600, "{label}: {mode:o}");

        // spit_fd writes to an fd that stays open.
        let fd = thread
            .task()
            .open(&path, O::WRONLY | O::APPEND, 0)
            .await
            .expect("open");
        thread.spit_fd(&fd, b" appended").await.expect("spit_fd");
        thread.spit_fd(&fd, b"!").await.expect("fd still open");
        drop(fd);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"second appended!",
            "{label}"
        );

        assert_invalid(thread.spit(&path, b"x", 0o10000).await, "bad mode");
        assert_errno(
            thread
                .spit(dir.path().join("no/such/dir"), b"x", 0o644)
                .await,
            Errno::ENOENT,
            "spit into a missing directory",
        );
        // Memory conveniences.
        let p = thread.ptr(&7u64).await.expect("ptr");
        assert_eq!(p.read().await.expect("read"), 7, "{label}");
        let b = thread.malloc_bytes(16).await.expect("malloc_bytes");
        assert_eq!(b.size(), 16);
        let m = thread.malloc::<u32>().await.expect("malloc");
        assert_eq!(m.size(), 4);
    });
}

#[test]
fn sockets_and_bind_getsockname() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let sock = thread
            .socket(AF::INET, SockType::STREAM, SOCK::empty())
            .await
            .expect("socket");
        let addr = thread
            .bind_getsockname(&sock, &SockaddrIn::new(Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind_getsockname");
        match addr {
            AnySockaddr::In(a) => {
                assert_eq!(a.ip(), Ipv4Addr::LOCALHOST, "{label}");
                assert_ne!(a.port(), 0, "{label}: the kernel chose a port");
            }
            other => panic!("{label}: {other:?}"),
        }
        let (a, b) = thread
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::NONBLOCK)
            .await
            .expect("socketpair");
        assert!(
            b.fcntl_getfl().await.expect("getfl").contains(O::NONBLOCK),
            "{label}"
        );
        assert!(
            a.fcntl_getfd().await.expect("getfd").contains(FD::CLOEXEC),
            "{label}"
        );
        thread.spit_fd(&a, b"ping").await.expect("write");
        assert_eq!(
            thread.task().read_bytes(&b, 4).await.expect("read"),
            b"ping"
        );
        assert_errno(
            thread
                .socketpair(AF::INET, SockType::STREAM, SOCK::empty())
                .await,
            Errno::EOPNOTSUPP,
            "no socketpairs for AF_INET",
        );
    });
}

#[test]
fn run_returns_the_clean_state_and_fails_on_unclean_exit() {
    let _g = serial();
    run(async {
        let thread = local_thread();
        let sh = thread.environ().which("sh").await.expect("which sh");
        assert_eq!(
            thread
                .run(sh.clone().args(["-c", "true"]))
                .await
                .expect("sh -c true"),
            ChildState::Exited(0)
        );
        match thread.run(sh.clone().args(["-c", "exit 3"])).await {
            Err(Error::UncleanExit { state, command }) => {
                assert_eq!(state, ChildState::Exited(3));
                assert!(command.contains("exit 3"), "{command}");
            }
            other => panic!("expected UncleanExit, got {other:?}"),
        }
        match thread.run(sh.args(["-c", "false"])).await {
            Err(Error::UncleanExit { state, .. }) => assert_eq!(state, ChildState::Exited(1)),
            other => panic!("expected UncleanExit, got {other:?}"),
        }
        assert_errno(
            thread
                .run(Command::new("/nonexistent/program", "program"))
                .await,
            Errno::ENOENT,
            "running a missing program",
        );
        // From a child thread too.
        let child = thread.clone(CLONE::empty()).await.expect("clone");
        let sh = child.environ().which("sh").await.expect("which sh");
        assert_eq!(
            child.run(sh.args(["-c", "true"])).await.expect("run"),
            ChildState::Exited(0)
        );
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn in_shell_form_round_trips_through_sh() {
    let _g = serial();
    run(async {
        let thread = local_thread();
        let sh = thread.environ().which("sh").await.expect("which sh");
        let printf = thread
            .environ()
            .which("printf")
            .await
            .expect("which printf");
        let weird = OsString::from_vec(vec![0xff, b'x', b'\'', 0xfe]);
        let cmd = printf
            .args([
                "%s|",
                "a b",
                "it's",
                "$HOME",
                "*",
                "",
                "back\\slash",
                "new\nline",
            ])
            .arg(&weird)
            .env("RSYS_X", "1");
        let line = cmd.in_shell_form();
        let (out, state) = output(&thread, sh.clone().arg("-c").arg(&line)).await;
        assert_eq!(state, ChildState::Exited(0), "{line}");
        let mut expected = b"a b|it's|$HOME|*||back\\slash|new\nline|".to_vec();
        expected.extend_from_slice(&[0xff, b'x', b'\'', 0xfe, b'|']);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected),
            "{line}"
        );
        assert_eq!(out, expected, "{line}");

        // Environment changes: plain assignments, and through env when one removes.
        let script = r#"printf '%s,%s' "$RSYS_FOO" "${RSYS_BAR-unset}""#;
        let set_only = sh
            .clone()
            .args(["-c", script])
            .env("RSYS_FOO", "a'b $c")
            .env("RSYS_BAR", "bar");
        let line = set_only.in_shell_form();
        assert!(line.starts_with("RSYS_BAR="), "{line}");
        let (out, _) = output(
            &thread,
            sh.clone().arg("-c").arg(&line).env("RSYS_BAR", "outer"),
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&out), "a'b $c,bar", "{line}");

        let removing = sh
            .clone()
            .args(["-c", script])
            .env("RSYS_FOO", "x y")
            .env_remove("RSYS_BAR");
        let line = removing.in_shell_form();
        assert!(line.starts_with("env -u "), "{line}");
        let (out, _) = output(
            &thread,
            sh.clone().arg("-c").arg(&line).env("RSYS_BAR", "outer"),
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&out), "x y,unset", "{line}");

        // A path with '=' after env is not taken for an assignment.
        let dir = thread.mkdtemp("rsyscall-shell-").await.expect("mkdtemp");
        let tool = dir.path().join("a=b");
        thread
            .spit(&tool, b"#!/bin/sh\nprintf 'tool:%s' \"$RSYS_BAR\"\n", 0o755)
            .await
            .expect("spit");
        let cmd = Command::new(tool.as_os_str(), "a=b")
            .env("RSYS_BAR", "set")
            .env_remove("RSYS_FOO");
        let line = cmd.in_shell_form();
        let (out, state) = output(&thread, sh.clone().arg("-c").arg(&line)).await;
        assert_eq!(state, ChildState::Exited(0), "{line}");
        assert_eq!(String::from_utf8_lossy(&out), "tool:set", "{line}");
        let cmd = Command::new(tool.as_os_str(), "a=b").env("RSYS_BAR", "plain");
        let line = cmd.in_shell_form();
        let (out, _) = output(&thread, sh.arg("-c").arg(&line)).await;
        assert_eq!(String::from_utf8_lossy(&out), "tool:plain", "{line}");
    })
}

#[test]
fn which_cached_notices_new_executables() {
    let _g = serial();
    run(async {
        let thread = local_thread();
        let task = thread.task();
        let dir = thread.mkdtemp("rsyscall-which-").await.expect("mkdtemp");
        let mut path = b"PATH=/nonexistent-dir:".to_vec();
        path.extend_from_slice(dir.path().as_os_str().as_encoded_bytes());
        let env = Environment::from_strings([path]);
        // Things that are not executables of that name.
        thread
            .spit(dir.path().join("rsys-plain"), b"", 0o644)
            .await
            .expect("spit");
        thread
            .mkdir(dir.path().join("rsys-tool"), 0o755)
            .await
            .expect("mkdir");
        // Make the listing old enough to be cached.
        let old = Timespec {
            sec: 1_000_000_000,
            nsec: 0,
        };
        task.utimensat(None, dir.path(), [old, old], AT::empty())
            .await
            .expect("utimensat");
        for name in ["rsys-plain", "rsys-tool", "rsys-missing"] {
            match env.which_cached(task, name).await {
                Err(Error::NotFound { name: n, searched }) => {
                    assert_eq!(n, name);
                    assert_eq!(searched.last().map(|d| d.as_path()), Some(dir.path()));
                }
                other => panic!("{name}: expected NotFound, got {other:?}"),
            }
        }
        // Cached now; a new executable changes the directory and is found.
        let shared = env.clone();
        task.unlinkat(None, dir.path().join("rsys-tool"), AT::REMOVEDIR)
            .await
            .expect("rmdir");
        thread
            .spit(dir.path().join("rsys-tool"), b"#!/bin/sh\nexit 0\n", 0o755)
            .await
            .expect("spit");
        let cmd = shared
            .which_cached(task, "rsys-tool")
            .await
            .expect("found after it appeared");
        assert_eq!(cmd.path(), dir.path().join("rsys-tool").as_os_str());
        assert_eq!(cmd.argv(), [OsString::from("rsys-tool")]);
        assert_eq!(
            thread.run(cmd).await.expect("run the tool"),
            ChildState::Exited(0)
        );
        // A name with a slash is checked where it is; bad names are refused.
        let tool = dir.path().join("rsys-tool");
        let tool = tool.to_str().expect("utf-8");
        assert_eq!(
            env.which_cached(task, tool).await.expect("slash").path(),
            tool
        );
        assert!(matches!(
            env.which_cached(task, "./rsys-no-such-tool").await,
            Err(Error::NotFound { .. })
        ));
        assert_invalid(env.which_cached(task, "").await, "empty name");
        assert_invalid(env.which_cached(task, "a\0b").await, "NUL");

        // sh and tmpdir.
        let local = local_thread();
        let sh = local
            .environ()
            .vars()
            .sh(local.task())
            .await
            .expect("sh in PATH");
        assert_eq!(sh.argv(), [OsString::from("sh")]);
        assert!(
            std::path::Path::new(sh.path()).is_absolute(),
            "{:?}",
            sh.path()
        );
        let mut tmp = Environment::default();
        assert_eq!(tmp.tmpdir(), std::path::Path::new("/tmp"));
        tmp.set("TMPDIR", "/var/tmp");
        assert_eq!(tmp.tmpdir(), std::path::Path::new("/var/tmp"));
        tmp.set("TMPDIR", "relative");
        assert_eq!(tmp.tmpdir(), std::path::Path::new("/tmp"));
    })
}

#[test]
fn unshare_user_maps_ids_and_gives_every_capability() {
    let _g = serial();
    require_user_namespaces();
    run(async {
        let local = local_thread();
        let outer_uid = local.task().geteuid().await.expect("geteuid");
        // Default mapping: the same ids inside.
        let child = local.clone(CLONE::empty()).await.expect("clone");
        child
            .unshare(CLONE::NEWUSER)
            .await
            .expect("unshare(CLONE_NEWUSER)");
        assert_eq!(child.task().getuid().await.expect("getuid"), outer_uid);
        let map = child
            .task()
            .open(b"/proc/self/uid_map", O::RDONLY, 0)
            .await
            .expect("open uid_map");
        let map = child.read_to_eof(&map).await.expect("read uid_map");
        let fields: Vec<String> = String::from_utf8_lossy(&map)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            fields,
            [outer_uid.to_string(), outer_uid.to_string(), "1".into()]
        );
        exit_cleanly(child, "child").await;

        // Chosen ids.
        let child = local.clone(CLONE::empty()).await.expect("clone");
        child
            .unshare_user(Some(1000), Some(2000))
            .await
            .expect("unshare_user");
        assert_eq!(child.task().getuid().await.expect("getuid"), 1000);
        assert_eq!(child.task().geteuid().await.expect("geteuid"), 1000);
        assert_eq!(child.task().getgid().await.expect("getgid"), 2000);
        let caps = child.task().capget(None).await.expect("capget");
        assert_eq!(
            caps.effective,
            all_caps(),
            "every capability inside: {caps:?}"
        );
        assert_eq!(caps.permitted, all_caps(), "{caps:?}");
        // setgroups was denied, as unprivileged mappings need.
        let setgroups = child
            .task()
            .open(b"/proc/self/setgroups", O::RDONLY, 0)
            .await
            .expect("open setgroups");
        assert_eq!(
            child.read_to_eof(&setgroups).await.expect("read"),
            b"deny\n"
        );
        drop(setgroups);
        // Bad input.
        assert_invalid(
            child.unshare(CLONE::NEWPID).await,
            "NEWPID is not for Thread::unshare",
        );
        assert_invalid(
            child.unshare_user(Some(u32::MAX), None).await,
            "unmappable uid",
        );
        exit_cleanly(child, "child").await;

        // The local thread refuses: unshare would change one OS thread of this program.
        assert_invalid(local.unshare(CLONE::NEWUTS).await, "local unshare");
        assert_invalid(local.unshare_files(true).await, "local unshare_files");
    })
}

#[test]
fn write_user_mappings_from_the_parent() {
    let _g = serial();
    require_user_namespaces();
    run(async {
        let local = local_thread();
        let (uid, gid) = (
            local.task().geteuid().await.expect("geteuid"),
            local.task().getegid().await.expect("getegid"),
        );
        let child = local.clone(CLONE::empty()).await.expect("clone");
        // A user namespace without mappings, made at the handle level.
        child
            .task()
            .unshare(CLONE::NEWUSER)
            .await
            .expect("unshare(CLONE_NEWUSER)");
        let pid = child.pid().expect("a live child");
        rsyscall::thread::write_user_mappings(local.task(), pid, uid, gid, 123, 456)
            .await
            .expect("write_user_mappings");
        assert_eq!(child.task().getuid().await.expect("getuid"), 123);
        assert_eq!(child.task().getgid().await.expect("getgid"), 456);
        // The maps can be written once.
        assert_errno(
            rsyscall::thread::write_user_mappings(local.task(), pid, uid, gid, 1, 1).await,
            Errno::EPERM,
            "second write of the maps",
        );
        assert_invalid(
            rsyscall::thread::write_user_mappings(local.task(), Pid::new(0), uid, gid, 1, 1).await,
            "pid 0",
        );
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn ambient_capabilities_survive_exec_in_a_user_namespace() {
    let _g = serial();
    require_user_namespaces();
    run(async {
        let local = local_thread();
        let (child, stdout) = child_with_stdout_pipe(&local).await;
        // A non-root uid inside, so that exec keeps only ambient capabilities.
        child
            .unshare_user(Some(1000), Some(1000))
            .await
            .expect("unshare_user");
        let mut caps = child.task().capget(None).await.expect("capget");
        assert!(caps.has_permitted(Capability::NET_RAW), "{caps:?}");
        caps.inheritable |= Capability::NET_RAW.bit();
        child.task().capset(&caps).await.expect("capset");
        child
            .task()
            .cap_ambient_raise(Capability::NET_RAW)
            .await
            .expect("PR_CAP_AMBIENT_RAISE");
        assert!(
            child
                .task()
                .cap_ambient_is_set(Capability::NET_RAW)
                .await
                .expect("PR_CAP_AMBIENT_IS_SET")
        );
        let grep = sh("grep -E '^Cap(Amb|Eff)' /proc/self/status").await;
        let process = child.exec(grep).await.expect("exec");
        let out = local.read_to_eof(&stdout).await.expect("read");
        process.check().await.expect("grep exits cleanly");
        let out = String::from_utf8_lossy(&out);
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no {name} in {out:?}"))
        };
        let amb = field("CapAmb:");
        assert_ne!(amb, 0, "{out}");
        assert_eq!(amb, Capability::NET_RAW.bit(), "{out}");
        assert_eq!(
            field("CapEff:"),
            Capability::NET_RAW.bit(),
            "exec as uid 1000 keeps only the ambient capability: {out}"
        );
    })
}

#[test]
fn chroot_with_proc_bind_mounted_in_user_and_mount_namespaces() {
    let _g = serial();
    require_user_namespaces();
    run(async {
        let local = local_thread();
        let root = local.mkdtemp("rsyscall-chroot-").await.expect("mkdtemp");
        local
            .mkdir(root.path().join("proc"), 0o755)
            .await
            .expect("mkdir proc");
        let child = local.clone(CLONE::empty()).await.expect("clone");
        child
            .unshare(CLONE::NEWUSER | CLONE::NEWNS)
            .await
            .expect("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
        // Nothing done here propagates back to our mount namespace.
        child
            .mount("", "/", "", MS::REC | MS::PRIVATE, "")
            .await
            .expect("make / private");
        child
            .mount(
                "/proc",
                root.path().join("proc"),
                "",
                MS::BIND | MS::REC,
                "",
            )
            .await
            .expect("bind-mount /proc");
        child.chroot(root.path()).await.expect("chroot");
        child.task().chdir(b"/").await.expect("chdir /");
        let status = child
            .task()
            .open(b"/proc/self/status", O::RDONLY, 0)
            .await
            .expect("/proc/self/status inside the chroot");
        let status = child.read_to_eof(&status).await.expect("read");
        let status = String::from_utf8_lossy(&status);
        let pid = child.pid().expect("live").as_raw();
        assert!(
            status.lines().any(|l| l == format!("Pid:\t{pid}")),
            "the chrooted child reads its own status: {status}"
        );
        assert_errno(
            child.task().stat(b"/etc").await,
            Errno::ENOENT,
            "the old root is out of sight",
        );
        assert!(
            std::fs::read_dir(root.path().join("proc"))
                .expect("read our view")
                .next()
                .is_none(),
            "the bind mount is only in the child's mount namespace"
        );
        exit_cleanly(child, "child").await;
        drop(root);
    })
}

#[test]
fn killing_pid_namespace_init_kills_a_backgrounded_grandchild() {
    let _g = serial();
    require_user_namespaces();
    run(async {
        let local = local_thread();
        let pipe = local.pipe().await.expect("pipe");
        let init = local
            .clone(CLONE::NEWUSER | CLONE::NEWPID)
            .await
            .expect("clone(CLONE_NEWUSER|CLONE_NEWPID)");
        assert_eq!(
            init.task().getpid().await.expect("getpid"),
            Pid::new(1),
            "the child is init of its pid namespace"
        );
        let w_init = init.inherit_fd(&pipe.write).expect("inherit");
        let grandchild = init.clone(CLONE::empty()).await.expect("clone in init");
        let w = grandchild.inherit_fd(&w_init).expect("inherit");
        grandchild
            .task()
            .dup2(&w, &grandchild.stdout())
            .await
            .expect("dup2");
        drop(w);
        drop(w_init);
        let sleeper = grandchild.exec(sleeper().await).await.expect("exec sleep");
        drop(pipe.write);
        // The sleeper holds the write end: no EOF yet.
        pipe.read.set_nonblock(true).await.expect("nonblock");
        assert_errno(
            local.task().read_bytes(&pipe.read, 1).await,
            Errno::EAGAIN,
            "the grandchild is alive and holds the pipe",
        );
        init.process()
            .expect("init is running")
            .kill(rsyscall::Signal::SIGKILL)
            .await
            .expect("kill init");
        pipe.read.set_nonblock(false).await.expect("blocking");
        let got = local.read_to_eof(&pipe.read).await.expect("read");
        assert!(got.is_empty(), "EOF: the grandchild died with init");
        drop(sleeper);
        drop(init);
    })
}

#[test]
fn children_after_unshare_newpid_are_tracked_in_the_new_namespace() {
    let _g = serial();
    require_user_namespaces();
    run(async {
        // A parent in its own user namespace, so that it may unshare a pid namespace.
        let parent = local_thread()
            .clone(CLONE::NEWUSER)
            .await
            .expect("clone(CLONE_NEWUSER)");
        let own = parent.task().namespaces().pidns;
        assert!(parent.task().pidns_for_children().is_none());
        parent
            .task()
            .unshare(CLONE::NEWPID)
            .await
            .expect("unshare(CLONE_NEWPID)");
        // The parent stays where it was; its children do not.
        assert_eq!(
            parent.task().namespaces().pidns,
            own,
            "the parent did not move"
        );
        let theirs = parent
            .task()
            .pidns_for_children()
            .expect("children go to a new pid namespace");
        assert_ne!(theirs, own);
        let init = parent.clone(CLONE::empty()).await.expect("first child");
        let second = parent.clone(CLONE::empty()).await.expect("second child");
        for (child, want) in [(&init, 1), (&second, 2)] {
            assert_eq!(child.task().pid(), Pid::new(want), "recorded own pid");
            assert_eq!(
                child.task().getpid().await.expect("getpid"),
                Pid::new(want),
                "the kernel agrees"
            );
            assert_eq!(
                child.task().namespaces().pidns,
                theirs,
                "recorded pid namespace"
            );
            assert_ne!(
                child.pid(),
                Some(Pid::new(want)),
                "the parent's view differs"
            );
        }
        // A pid of the parent's namespace used with a task of the new one is refused
        // before sending.
        let far_pid = rsyscall::far::Process {
            pidns: own,
            near: parent.task().pid(),
        };
        assert!(
            second
                .task()
                .namespaces()
                .near_pid(second.task().pid(), &far_pid)
                .is_err(),
            "mismatched pid namespaces are caught"
        );
        exit_cleanly(second, "pid 2").await;
        exit_cleanly(init, "pid 1").await;
        exit_cleanly(parent, "the parent").await;
    })
}

/// A child of `parent` in new user and network namespaces, with `lo` up.
async fn netns_child(parent: &Thread) -> rsyscall::ChildThread {
    let child = parent.clone(CLONE::empty()).await.expect("clone");
    child
        .unshare(CLONE::NEWUSER | CLONE::NEWNET)
        .await
        .expect("unshare(CLONE_NEWUSER|CLONE_NEWNET)");
    let sock = child
        .socket(AF::INET, SockType::DGRAM, SOCK::empty())
        .await
        .expect("socket");
    let flags = sock.siocgifflags(b"lo").await.expect("SIOCGIFFLAGS");
    assert!(!flags.contains(IFF::UP), "lo starts down");
    sock.siocsifflags(b"lo", flags | IFF::UP)
        .await
        .expect("SIOCSIFFLAGS lo up");
    child
}

#[test]
fn two_network_namespaces_have_distinct_loopback_port_spaces() {
    let _g = serial();
    require_user_namespaces();
    run(async {
        const PORT: u16 = 47_321;
        let local = local_thread();
        let a = netns_child(&local).await;
        let b = netns_child(&local).await;
        assert_ne!(a.task().namespaces().netns, b.task().namespaces().netns);
        let addr = SockaddrIn::new(Ipv4Addr::LOCALHOST, PORT);
        let mut listeners = Vec::new();
        for (label, child) in [("a", &a), ("b", &b)] {
            let sock = child
                .socket(AF::INET, SockType::STREAM, SOCK::empty())
                .await
                .expect("socket");
            match child.bind_getsockname(&sock, &addr).await {
                Ok(AnySockaddr::In(got)) => assert_eq!(got.port(), PORT, "{label}"),
                other => panic!("{label}: binding 127.0.0.1:{PORT}: {other:?}"),
            }
            sock.listen(1).await.expect("listen");
            listeners.push(sock);
        }
        // Within one namespace the port is taken.
        let again = a
            .socket(AF::INET, SockType::STREAM, SOCK::empty())
            .await
            .expect("socket");
        assert_errno(again.bind(&addr).await, Errno::EADDRINUSE, "same namespace");
        drop((again, listeners));
        for child in [a, b] {
            exit_cleanly(child, "child").await;
        }
    })
}

#[test]
fn tun_device_configured_by_ioctl() {
    let _g = serial();
    require_user_namespaces();
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: this test needs the tun driver's device node \
         (modprobe tun, or mknod /dev/net/tun c 10 200)"
    );
    run(async {
        let child = netns_child(&local_thread()).await;
        let tun = child
            .task()
            .open(b"/dev/net/tun", O::RDWR, 0)
            .await
            .expect("open /dev/net/tun");
        let name = tun
            .tunsetiff(b"rsysns%d", TUN::TUN | TUN::NO_PI)
            .await
            .expect("TUNSETIFF");
        assert!(name.starts_with(b"rsysns"), "{name:?}");
        let sock = child
            .socket(AF::INET, SockType::DGRAM, SOCK::empty())
            .await
            .expect("socket");
        let addr = SockaddrIn::new(Ipv4Addr::new(10, 77, 0, 1), 0);
        sock.siocsifaddr(&name, &addr).await.expect("SIOCSIFADDR");
        let flags = sock.siocgifflags(&name).await.expect("SIOCGIFFLAGS");
        sock.siocsifflags(&name, flags | IFF::UP)
            .await
            .expect("SIOCSIFFLAGS up");
        assert_eq!(
            sock.siocgifaddr(&name).await.expect("SIOCGIFADDR").ip(),
            Ipv4Addr::new(10, 77, 0, 1)
        );
        assert!(
            sock.siocgifflags(&name)
                .await
                .expect("flags")
                .contains(IFF::UP)
        );
        // The address is usable: a socket binds to it.
        let udp = child
            .socket(AF::INET, SockType::DGRAM, SOCK::empty())
            .await
            .expect("socket");
        udp.bind(&addr).await.expect("bind to the tun address");
        drop((udp, sock, tun));
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn setpgid_to_a_siblings_process_group() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let a = local.clone(CLONE::empty()).await.expect("clone a");
        let b = local.clone(CLONE::empty()).await.expect("clone b");
        let a_pid = a.pid().expect("a");
        let b_pid = b.pid().expect("b");
        a.task()
            .setpgid(Pid::new(0), Pid::new(0))
            .await
            .expect("a leads a new group");
        assert_eq!(a.task().getpgid(Pid::new(0)).await.expect("getpgid"), a_pid);
        b.task()
            .setpgid(Pid::new(0), a_pid)
            .await
            .expect("b joins a's group");
        assert_eq!(b.task().getpgid(Pid::new(0)).await.expect("getpgid"), a_pid);
        assert_eq!(
            local.task().getpgid(b_pid).await.expect("getpgid of b"),
            a_pid,
            "seen from the parent too"
        );
        assert_errno(
            b.task().setpgid(Pid::new(0), Pid::new(i32::MAX)).await,
            Errno::EPERM,
            "joining a group that does not exist",
        );
        for child in [a, b] {
            exit_cleanly(child, "child").await;
        }
    })
}

/// The fd numbers of `task`'s table, from `/proc/self/fd` (without the listing's own fd).
async fn fd_numbers(task: &Task) -> Vec<i32> {
    let dir = task
        .open(b"/proc/self/fd", O::RDONLY | O::DIRECTORY, 0)
        .await
        .expect("open /proc/self/fd");
    let mut out: Vec<i32> = dir
        .getdents_all()
        .await
        .expect("getdents")
        .into_iter()
        .filter_map(|e| std::str::from_utf8(&e.name).ok()?.parse().ok())
        .filter(|&n| n != dir.near().as_raw())
        .collect();
    out.sort_unstable();
    out
}

async fn cloexec(fd: &FileDescriptor) -> bool {
    fd.fcntl_getfd()
        .await
        .expect("F_GETFD")
        .contains(FD::CLOEXEC)
}

#[test]
fn unshare_files_hides_later_fds_and_mark_cloexec_except_marks_only_unkept_fds() {
    let _g = serial();
    run(async {
        let local = local_thread();
        let child = local.clone(CLONE::FILES).await.expect("clone(CLONE_FILES)");
        // Two fds open across exec, made before the unshare: both are copied.
        let before = local.pipe().await.expect("pipe");
        before.read.disable_cloexec().await.expect("clear cloexec");
        before.write.disable_cloexec().await.expect("clear cloexec");
        child
            .unshare(CLONE::FILES)
            .await
            .expect("unshare(CLONE_FILES)");
        assert_ne!(
            child.task().fd_table().id(),
            local.task().fd_table().id(),
            "the child has its own table now"
        );
        // An fd the parent makes now, numbered above everything the child's copy has, is
        // not in the child's table.
        let highest = *fd_numbers(child.task()).await.last().expect("some fds");
        let mut made = Vec::new();
        let late = loop {
            let fd = before.read.dup().await.expect("dup");
            if fd.near().as_raw() > highest {
                break fd;
            }
            made.push(fd);
            assert!(made.len() < 4096, "no free fd number above {highest}");
        };
        cloexec(&late).await; // valid here
        // SAFETY: only inspected with F_GETFD (the number is not open in the child).
        let ghost = unsafe { FileDescriptor::borrowed(child.task(), late.near()) };
        assert_errno(
            ghost.fcntl_getfd().await,
            Errno::EBADF,
            "a later fd of the parent",
        );
        drop((late, made));

        let r = before.read.inherit(child.task()).expect("inherit read");
        let w = before.write.inherit(child.task()).expect("inherit write");
        assert!(
            !cloexec(&r).await && !cloexec(&w).await,
            "copied as they were"
        );
        child
            .mark_cloexec_except(&[&w])
            .await
            .expect("mark_cloexec_except");
        assert!(cloexec(&r).await, "not kept: marked close-on-exec");
        assert!(!cloexec(&w).await, "kept");
        let reserved: Vec<i32> = child.reserved_fds().iter().map(|f| f.as_raw()).collect();
        for n in fd_numbers(child.task()).await {
            // SAFETY: only inspected with F_GETFD.
            let fd = unsafe {
                FileDescriptor::borrowed(child.task(), rsyscall::near::FileDescriptor::new(n))
            };
            if n == w.near().as_raw() || reserved.contains(&n) {
                continue;
            }
            assert!(cloexec(&fd).await, "fd {n} is close-on-exec");
        }
        // Standard streams are left as they were.
        for n in 0..3 {
            // SAFETY: stdio, only inspected with F_GETFD.
            let (ours, theirs) = unsafe {
                (
                    FileDescriptor::borrowed(local.task(), rsyscall::near::FileDescriptor::new(n)),
                    FileDescriptor::borrowed(child.task(), rsyscall::near::FileDescriptor::new(n)),
                )
            };
            if let Ok(flags) = ours.fcntl_getfd().await {
                assert_eq!(
                    theirs.fcntl_getfd().await.expect("F_GETFD"),
                    flags,
                    "fd {n}"
                );
            }
        }
        // A kept fd of another table is refused before anything changes.
        assert!(matches!(
            child.mark_cloexec_except(&[&before.write]).await,
            Err(Error::Mismatch(_))
        ));
        drop((r, w));
        exit_cleanly(child, "child").await;

        // unshare_files(false) closes only close-on-exec fds no handle names: fds we have
        // handles for stay as they were, and inheritable.
        let child = local.clone(CLONE::FILES).await.expect("clone(CLONE_FILES)");
        child
            .unshare_files(false)
            .await
            .expect("unshare_files(false)");
        let r = before.read.inherit(child.task()).expect("inherit");
        assert!(!cloexec(&r).await, "left as it was");
        assert!(!cloexec(&before.read).await, "ours is untouched");
        drop(r);
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn a_files_child_that_unshares_keeps_exchanging_fds_and_cloning() {
    let _guard = serial();
    rsyscall_tests::tasks::run(async {
        let parent = rsyscall::local_thread();
        let child = parent.clone(rsyscall::CLONE::FILES).await.expect("clone");
        assert!(
            child.connection().is_none(),
            "a CLONE_FILES child uses our table directly"
        );
        child.unshare_files(true).await.expect("unshare_files");
        assert!(
            child.connection().is_some(),
            "it now has a connection of its own"
        );
        // Several moves over the connection: each must leave it usable.
        for round in 0..3u8 {
            let pipe = parent.pipe().await.expect("pipe");
            let theirs = child.pass_fd(&pipe.write).await.expect("pass_fd");
            child
                .task()
                .write_bytes(&theirs, &[round])
                .await
                .expect("write in the child");
            assert_eq!(
                parent.task().read_bytes(&pipe.read, 4).await.expect("read"),
                [round]
            );
        }
        // Cloning from it moves the new child's pidfd back to us through the connection.
        let grandchild = child
            .clone(rsyscall::CLONE::empty())
            .await
            .expect("clone from it");
        // Thread::clone gives the grandchild to the local process (CLONE_PARENT).
        assert_eq!(
            grandchild.task().getppid().await.expect("getppid").as_raw() as u32,
            std::process::id()
        );
        grandchild
            .exit(3)
            .await
            .expect("exit")
            .wait()
            .await
            .expect("wait");
        exit_cleanly(child, "child").await;

        // A child with a table (and connection) of its own that unshares again: the
        // connection's end is now the copy in the newer table.
        let child = parent.clone(rsyscall::CLONE::empty()).await.expect("clone");
        child.unshare_files(true).await.expect("unshare_files");
        for round in 0..3u8 {
            let pipe = parent.pipe().await.expect("pipe");
            let theirs = child.pass_fd(&pipe.write).await.expect("pass_fd");
            child
                .task()
                .write_bytes(&theirs, &[round])
                .await
                .expect("write in the child");
            assert_eq!(
                parent.task().read_bytes(&pipe.read, 4).await.expect("read"),
                [round]
            );
        }
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn stdio_handles_follow_the_table_after_unshare_files() {
    let _guard = serial();
    rsyscall_tests::tasks::run(async {
        let ours = || std::fs::read_link("/proc/self/fd/1").expect("our stdout");
        let before = ours();
        let parent = rsyscall::local_thread();
        let pipe = parent.pipe().await.expect("pipe");
        let child = parent.clone(rsyscall::CLONE::FILES).await.expect("clone");
        child.unshare_files(true).await.expect("unshare_files");
        let w = pipe
            .write
            .inherit(child.task())
            .expect("copied by the unshare");
        // stdout() names fd 1 of the child's own table now: dup2 there leaves ours alone.
        child
            .task()
            .dup2(&w, &child.stdout())
            .await
            .expect("dup2 onto the child's stdout");
        assert_eq!(ours(), before, "our stdout is untouched");
        child
            .task()
            .write_all_bytes(&child.stdout(), b"through stdout")
            .await
            .expect("write");
        w.close().await.expect("close");
        drop(pipe.write);
        exit_cleanly(child, "child").await;
        let out = parent.read_to_eof(&pipe.read).await.expect("read");
        assert_eq!(out, b"through stdout");
    })
}
