//! The unix stub, stdin bootstrap and ssh bootstrap binaries as black boxes (PROTOCOL.md
//! sections 3 and 6): started with plain `std::process`, driven byte by byte over their
//! sockets. Their describe structs and strings, a syscall served afterwards, the stub's
//! connect through `/proc/self/fd` for a socket path too long for a `sockaddr_un`, the ssh
//! bootstrap's two modes handing a listening socket over `./pass`, and bad input: the wrong
//! number of fds, nothing at all, a missing variable, a bad mode, sockets already in place.
//! Every process is waited for.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rsyscall_server::proto::{BootstrapDescribe, StdinBootstrapDescribe, UnixStubDescribe};
use rsyscall_tests::server::{call, helper_binary, send_fds, wait_with_deadline};

/// A fresh directory under the system temp dir; removed by the caller.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rsyscall-helpers-{tag}-{}-{}",
        std::process::id(),
        rsyscall_tests::rng::seed()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Reads `count` protocol strings (u64 length, bytes) from `sock`.
fn read_strings(sock: &mut UnixStream, count: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let mut len = [0u8; 8];
            sock.read_exact(&mut len).expect("string length");
            let mut s = vec![0u8; u64::from_le_bytes(len) as usize];
            sock.read_exact(&mut s).expect("string");
            s
        })
        .collect()
}

/// The fds a helper gets: syscall, data, (futex memfd,) connecting; our ends kept.
struct Ends {
    syscall: UnixStream,
    data: UnixStream,
    theirs: Vec<UnixStream>,
}

fn ends(n: usize) -> Ends {
    let (syscall, s2) = UnixStream::pair().expect("pair");
    let (data, d2) = UnixStream::pair().expect("pair");
    let mut theirs = vec![s2, d2];
    while theirs.len() < n {
        theirs.push(UnixStream::pair().expect("pair").1);
    }
    Ends {
        syscall,
        data,
        theirs,
    }
}

/// Starts the stub as `argv0 a b` with its socket variable set to `path` and with
/// `SIGUSR1` blocked.
fn start_stub(path: &Path, argv0: &str) -> std::process::Child {
    let mut cmd = Command::new(helper_binary("rsyscall-unix-stub"));
    cmd.arg0(argv0)
        .args(["a", "b c"])
        .env("RSYSCALL_UNIX_STUB_SOCK_PATH", path)
        .stderr(Stdio::piped());
    // SAFETY: sigprocmask on a stack-local set is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd.spawn().expect("spawn the stub")
}

/// Runs the whole stub handshake through a listener at `path`.
fn stub_handshake(path: &Path) {
    let listener = UnixListener::bind(path).expect("bind");
    let mut child = start_stub(path, "mocked-program");
    let (conn, _) = listener.accept().expect("accept");
    let mut e = ends(4);
    let raw: Vec<i32> = e.theirs.iter().map(|s| s.as_raw_fd()).collect();
    send_fds(&conn, &raw).expect("send fds");
    drop(e.theirs);
    let mut buf = [0u8; UnixStubDescribe::SIZE];
    e.data.read_exact(&mut buf).expect("describe");
    let d = UnixStubDescribe::from_bytes(&buf);
    assert_eq!(d.pid as u32, child.id());
    assert_eq!(d.argc, 3);
    assert_eq!(
        d.sigmask,
        1 << (libc::SIGUSR1 - 1),
        "blocked signals at start"
    );
    assert_ne!(d.symbols.server, 0);
    let fds = [d.syscall_fd, d.data_fd, d.futex_memfd, d.connecting_fd];
    assert!(fds.iter().all(|&fd| fd > 2), "{fds:?}");
    let argv = read_strings(&mut e.data, d.argc);
    assert_eq!(argv, [&b"mocked-program"[..], b"a", b"b c"]);
    let env = read_strings(&mut e.data, d.envp_count);
    let want = format!("RSYSCALL_UNIX_STUB_SOCK_PATH={}", path.display());
    assert!(env.iter().any(|s| s == want.as_bytes()), "{env:?}");
    // Serves on the syscall fd: getpid.
    assert_eq!(call(&mut e.syscall, libc::SYS_getpid, [0; 6]), d.pid as i64);
    drop(e.syscall);
    let status = wait_with_deadline(&mut child);
    assert_eq!(status.code(), Some(0), "ends cleanly at EOF");
}

#[test]
fn unix_stub_describes_itself_and_serves() {
    let dir = temp_dir("stub");
    stub_handshake(&dir.join("sock"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unix_stub_reaches_a_path_too_long_for_sockaddr_un() {
    let dir = temp_dir("stub-long");
    let long = dir.join("d".repeat(100));
    std::fs::create_dir_all(&long).expect("mkdir");
    let path = long.join("sock");
    assert!(path.as_os_str().len() > 108);
    // bind() needs a short name too: bind through our own /proc/self/fd.
    let dirfd = std::fs::File::open(&long).expect("open dir");
    let short = PathBuf::from(format!("/proc/self/fd/{}/sock", dirfd.as_raw_fd()));
    let listener = UnixListener::bind(&short).expect("bind");
    let mut child = start_stub(&path, "x");
    let (conn, _) = listener.accept().expect("accept");
    let mut e = ends(4);
    let raw: Vec<i32> = e.theirs.iter().map(|s| s.as_raw_fd()).collect();
    send_fds(&conn, &raw).expect("send fds");
    drop(e.theirs);
    let mut buf = [0u8; UnixStubDescribe::SIZE];
    e.data.read_exact(&mut buf).expect("describe");
    assert_eq!(UnixStubDescribe::from_bytes(&buf).pid as u32, child.id());
    drop((e.syscall, e.data));
    wait_with_deadline(&mut child);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unix_stub_refuses_bad_input() {
    let dir = temp_dir("stub-bad");
    // The wrong number of fds.
    let path = dir.join("sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let mut child = start_stub(&path, "x");
    let (conn, _) = listener.accept().expect("accept");
    let e = ends(3);
    let raw: Vec<i32> = e.theirs.iter().map(|s| s.as_raw_fd()).collect();
    send_fds(&conn, &raw).expect("send fds");
    let status = wait_with_deadline(&mut child);
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    assert!(err.contains("expected one message with 4 fds"), "{err}");
    // Nothing at all: the client hangs up.
    let mut child = start_stub(&path, "x");
    let (conn, _) = listener.accept().expect("accept");
    drop(conn);
    assert_eq!(wait_with_deadline(&mut child).code(), Some(1));
    // No server there.
    let mut child = start_stub(&dir.join("nobody-listens"), "x");
    assert_eq!(wait_with_deadline(&mut child).code(), Some(1));
    // No variable.
    let mut child = Command::new(helper_binary("rsyscall-unix-stub"))
        .env_remove("RSYSCALL_UNIX_STUB_SOCK_PATH")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert_eq!(wait_with_deadline(&mut child).code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// Starts the stdin bootstrap with `stdin` as its fd 0.
fn start_stdin_bootstrap(stdin: UnixStream) -> std::process::Child {
    Command::new(helper_binary("rsyscall-stdin-bootstrap"))
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(stdin)))
        .env("MARKER", "stdin bootstrap")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn stdin_bootstrap_describes_itself_and_serves() {
    let (ours, theirs) = UnixStream::pair().expect("pair");
    let mut child = start_stdin_bootstrap(theirs);
    let mut e = ends(3);
    let raw: Vec<i32> = e.theirs.iter().map(|s| s.as_raw_fd()).collect();
    send_fds(&ours, &raw).expect("send fds");
    drop(e.theirs);
    let mut buf = [0u8; StdinBootstrapDescribe::SIZE];
    e.data.read_exact(&mut buf).expect("describe");
    let d = StdinBootstrapDescribe::from_bytes(&buf);
    assert_eq!(d.pid as u32, child.id());
    assert_eq!(d.futex_memfd, -1, "unused");
    let env = read_strings(&mut e.data, d.envp_count);
    assert!(
        env.iter().any(|s| s == b"MARKER=stdin bootstrap"),
        "{env:?}"
    );
    assert_eq!(call(&mut e.syscall, libc::SYS_getpid, [0; 6]), d.pid as i64);
    drop(e.syscall);
    assert_eq!(wait_with_deadline(&mut child).code(), Some(0));
}

#[test]
fn stdin_bootstrap_refuses_bad_input() {
    // The wrong number of fds.
    let (ours, theirs) = UnixStream::pair().expect("pair");
    let mut child = start_stdin_bootstrap(theirs);
    let e = ends(2);
    let raw: Vec<i32> = e.theirs.iter().map(|s| s.as_raw_fd()).collect();
    send_fds(&ours, &raw).expect("send fds");
    let status = wait_with_deadline(&mut child);
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert_eq!(status.signal(), None, "no crash");
    // Nothing at all: stdin closed.
    let (ours, theirs) = UnixStream::pair().expect("pair");
    let mut child = start_stdin_bootstrap(theirs);
    drop(ours);
    assert_eq!(wait_with_deadline(&mut child).code(), Some(1));
    // Bytes without fds.
    let (ours, theirs) = UnixStream::pair().expect("pair");
    let mut child = start_stdin_bootstrap(theirs);
    std::io::Write::write_all(&mut &ours, b"not fds").expect("write");
    assert_eq!(wait_with_deadline(&mut child).code(), Some(1));
}

/// A child process that is killed and reaped when dropped, should a test fail before it
/// waited for it.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Reaped {
    /// Waits (bounded) for the exit; returns the status and what it wrote on stderr.
    fn finish(&mut self) -> (std::process::ExitStatus, String) {
        let status = wait_with_deadline(&mut self.0);
        let mut err = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            stderr.read_to_string(&mut err).ok();
        }
        (status, err)
    }
}

/// `rsyscall-bootstrap [mode]` with `dir` as its working directory and stderr piped.
fn ssh_bootstrap(dir: &Path, mode: Option<&str>) -> Command {
    let mut cmd = Command::new(helper_binary("rsyscall-bootstrap"));
    cmd.args(mode)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Whether `path` names anything (a socket file included), without following symlinks.
fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Whether fd `fd` of process `pid` is close-on-exec (from `/proc/PID/fdinfo`).
fn cloexec(pid: u32, fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("a flags line");
    let flags = u32::from_str_radix(flags.trim(), 8).expect("octal flags");
    flags & libc::O_CLOEXEC as u32 != 0
}

#[test]
fn ssh_bootstrap_hands_its_socket_over_describes_itself_and_serves() {
    let dir = temp_dir("ssh");
    let mut socket_mode = Reaped(
        ssh_bootstrap(&dir, Some("socket"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn socket mode"),
    );
    let mut stdout = socket_mode.0.stdout.take().expect("stdout");
    let mut done = [0u8; 5];
    stdout
        .read_exact(&mut done)
        .expect("socket mode's first line");
    assert_eq!(&done, b"done\n");
    assert!(present(&dir.join("data")) && present(&dir.join("pass")));

    let mut rsyscall_mode = Reaped(
        ssh_bootstrap(&dir, Some("rsyscall"))
            .env_clear()
            .env("A", "1")
            .env("B", "two words")
            .spawn()
            .expect("spawn rsyscall mode"),
    );
    // The syscall connection first, then the data connection.
    let mut syscall = UnixStream::connect(dir.join("data")).expect("connect syscall");
    let mut data = UnixStream::connect(dir.join("data")).expect("connect data");
    for sock in [&syscall, &data] {
        sock.set_read_timeout(Some(rsyscall_tests::server::TIMEOUT))
            .expect("SO_RCVTIMEO");
    }
    let mut buf = [0u8; BootstrapDescribe::SIZE];
    data.read_exact(&mut buf).expect("describe");
    let d = BootstrapDescribe::from_bytes(&buf);
    let pid = rsyscall_mode.0.id();
    assert_eq!(d.pid as u32, pid);
    assert_ne!(d.symbols.server, 0);
    let fds = [d.listening_sock, d.syscall_sock, d.data_sock];
    assert!(fds.iter().all(|&fd| fd > 2), "{fds:?}");
    assert!(
        fds[0] != fds[1] && fds[1] != fds[2] && fds[0] != fds[2],
        "{fds:?}"
    );
    for fd in fds {
        assert!(
            cloexec(pid, fd),
            "fd {fd} of the rsyscall mode is not close-on-exec"
        );
    }
    assert_eq!(d.envp_count, 2);
    let env = read_strings(&mut data, d.envp_count);
    assert_eq!(env, [&b"A=1"[..], b"B=two words"]);
    assert_eq!(call(&mut syscall, libc::SYS_getpid, [0; 6]), pid as i64);

    // The socket mode is done: it removed ./pass and left ./data.
    let (status, err) = socket_mode.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("stdout after done");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(!present(&dir.join("pass")), "./pass left behind");
    assert!(present(&dir.join("data")));

    drop((syscall, data));
    let (status, err) = rsyscall_mode.finish();
    assert_eq!(status.code(), Some(0), "ends cleanly at EOF: {err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ssh_bootstrap_refuses_bad_usage() {
    let dir = temp_dir("ssh-usage");
    for mode in [None, Some("bogus"), Some("")] {
        let mut child = Reaped(ssh_bootstrap(&dir, mode).spawn().expect("spawn"));
        let (status, err) = child.finish();
        assert_eq!(status.code(), Some(2), "{mode:?}");
        assert!(err.contains("usage"), "{err}");
    }
    assert!(!present(&dir.join("data")) && !present(&dir.join("pass")));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ssh_bootstrap_socket_mode_fails_on_taken_names_and_cleans_up() {
    // ./data already there: nothing bound, the file is not ours to remove.
    let dir = temp_dir("ssh-taken-data");
    std::fs::write(dir.join("data"), b"someone else's").expect("write");
    let mut child = Reaped(ssh_bootstrap(&dir, Some("socket")).spawn().expect("spawn"));
    let (status, err) = child.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("bind") && err.contains("./data"), "{err}");
    assert!(
        err.contains(&format!("errno {}", libc::EADDRINUSE)),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.join("data")).expect("still there"),
        b"someone else's"
    );
    assert!(!present(&dir.join("pass")));
    std::fs::remove_dir_all(&dir).ok();

    // ./pass already there: the ./data it bound is unlinked again.
    let dir = temp_dir("ssh-taken-pass");
    std::fs::write(dir.join("pass"), b"").expect("write");
    let mut child = Reaped(ssh_bootstrap(&dir, Some("socket")).spawn().expect("spawn"));
    let (status, err) = child.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("bind") && err.contains("./pass"), "{err}");
    assert!(!present(&dir.join("data")), "./data left behind");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ssh_bootstrap_rsyscall_mode_gives_up_when_its_session_ends_before_a_client_connects() {
    // Its stdout is the ssh session's: once that reader is gone, nobody will connect, and
    // it must not wait in accept forever.
    let dir = temp_dir("ssh-gone");
    let mut socket_mode = Reaped(
        ssh_bootstrap(&dir, Some("socket"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn socket mode"),
    );
    let mut stdout = socket_mode.0.stdout.take().expect("stdout");
    let mut done = [0u8; 5];
    stdout.read_exact(&mut done).expect("done");
    let mut rsyscall_mode = Reaped(
        ssh_bootstrap(&dir, Some("rsyscall"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn rsyscall mode"),
    );
    // It has the listening socket once the socket mode exits.
    let (status, err) = socket_mode.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    // The session goes: the reader of its stdout is closed, and no client ever connects.
    drop(rsyscall_mode.0.stdout.take());
    let (status, err) = rsyscall_mode.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("no client connected"), "{err}");
}

#[test]
fn ssh_bootstrap_rsyscall_mode_refuses_a_missing_or_wrong_pass() {
    let dir = temp_dir("ssh-pass");
    // No ./pass at all.
    let mut child = Reaped(
        ssh_bootstrap(&dir, Some("rsyscall"))
            .spawn()
            .expect("spawn"),
    );
    let (status, err) = child.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("./pass"), "{err}");
    // A ./pass that sends two fds, then one that hangs up without any.
    let listener = UnixListener::bind(dir.join("pass")).expect("bind");
    let e = ends(2);
    let raw: Vec<i32> = e.theirs.iter().map(|s| s.as_raw_fd()).collect();
    let mut child = Reaped(
        ssh_bootstrap(&dir, Some("rsyscall"))
            .spawn()
            .expect("spawn"),
    );
    let (conn, _) = listener.accept().expect("accept");
    send_fds(&conn, &raw).expect("send fds");
    let (status, err) = child.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("expected one message with 1 fd"), "{err}");
    let mut child = Reaped(
        ssh_bootstrap(&dir, Some("rsyscall"))
            .spawn()
            .expect("spawn"),
    );
    let (conn, _) = listener.accept().expect("accept");
    drop(conn);
    let (status, err) = child.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(status.signal(), None, "no crash");
    std::fs::remove_dir_all(&dir).ok();
}
