//! The unix stub and stdin bootstrap binaries as black boxes (PROTOCOL.md sections 3 and
//! 6): started with plain `std::process`, driven byte by byte over their sockets. Their
//! describe structs and strings, a syscall served afterwards, the stub's connect through
//! `/proc/self/fd` for a socket path too long for a `sockaddr_un`, and bad input: the
//! wrong number of fds, nothing at all, a missing variable. Every process is waited for.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rsyscall_server::proto::{StdinBootstrapDescribe, UnixStubDescribe};
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
