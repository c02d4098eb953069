//! The persistent server (PROTOCOL.md section 6), run in-process on a thread: it serves,
//! outlives its client, and is reconnected to through its listening socket and the
//! count-and-fds handshake; bad handshakes are refused without ending it.
//!
//! The server runs in this process, so its syscalls act on this process (its `getpid` is
//! ours) and the fds it receives are new numbers in this process's fd table. It owns the
//! fds it serves on and closes them when a client hangs up.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use rsyscall_tests::server::{TIMEOUT, call, sees_hangup, send_fds};
use rsyscall_tests::tmp::TempDir;

/// A persistent server on its own thread, listening on a socket in a fresh directory.
struct Persistent {
    /// Where the socket is; removed (with the socket file) on drop. The server thread
    /// stays blocked in accept until the process exits.
    _dir: TempDir,
    path: PathBuf,
}

/// Starts a persistent server serving on one end of a new socketpair; returns the other end.
fn start() -> (Persistent, UnixStream) {
    let dir = TempDir::new("persistent");
    let path = dir.join("listen.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (client, server_end) = UnixStream::pair().unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Both fds now belong to the server.
    let server_fd = server_end.into_raw_fd();
    let listen_fd = listener.into_raw_fd();
    std::thread::spawn(move || rsyscall_server::persistent_server(server_fd, server_fd, listen_fd));
    (Persistent { _dir: dir, path }, client)
}

/// Connects to the server, sends `count` and then `fds`, and returns the connection.
fn begin_handshake(path: &Path, count: i32, fds: &[RawFd]) -> UnixStream {
    let mut conn = UnixStream::connect(path).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn.write_all(&count.to_le_bytes()).unwrap();
    if !fds.is_empty() {
        send_fds(&conn, fds).unwrap();
    }
    conn
}

/// Runs a whole handshake passing `fds`; returns their numbers in the server's fd table.
fn handshake(path: &Path, fds: &[RawFd]) -> Vec<i32> {
    let mut conn = begin_handshake(path, fds.len() as i32, fds);
    let mut reply = vec![0u8; 4 * fds.len()];
    conn.read_exact(&mut reply)
        .expect("reading the fd numbers back");
    assert!(
        sees_hangup(&mut conn),
        "the server did not close the handshake connection"
    );
    reply
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Hands the server a new socketpair end to serve on; returns the client end and the
/// number the server gave the passed fd.
fn reconnect(path: &Path) -> (UnixStream, i32) {
    let (client, server_end) = UnixStream::pair().unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let numbers = handshake(path, &[server_end.as_raw_fd()]);
    assert_eq!(numbers.len(), 1);
    // The server has its own copy now.
    drop(server_end);
    (client, numbers[0])
}

fn getpid(sock: &mut UnixStream) -> i64 {
    call(sock, libc::SYS_getpid, [0; 6])
}

/// The `(st_dev, st_ino)` of an fd in this process.
fn identity(fd: RawFd) -> (u64, u64) {
    // SAFETY: stat is plain data; all-zero is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`.
    let ret = unsafe { libc::fstat(fd, &mut st) };
    assert_eq!(ret, 0, "fstat({fd}): {}", std::io::Error::last_os_error());
    (st.st_dev, st.st_ino)
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into `fds`.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(ret, 0);
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Whether reading `read_end` reaches EOF within [`TIMEOUT`] (every write end is closed).
fn pipe_reaches_eof(read_end: &mut File) -> bool {
    let mut pfd = libc::pollfd {
        fd: read_end.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes only `pfd`.
    let ready = unsafe { libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as i32) };
    if ready != 1 {
        return false;
    }
    let mut buf = [0u8; 1];
    matches!(read_end.read(&mut buf), Ok(0))
}

#[test]
fn serves_then_is_reconnected_after_eof() {
    let (server, mut client) = start();
    let me = std::process::id() as i64;
    assert_eq!(getpid(&mut client), me);
    drop(client);

    let (mut client, number) = reconnect(&server.path);
    assert_eq!(getpid(&mut client), me);
    // The server serves on the fd it received, which it got close-on-exec.
    assert_eq!(
        call(
            &mut client,
            libc::SYS_fcntl,
            [number as i64, libc::F_GETFD as i64, 0, 0, 0, 0]
        ),
        libc::FD_CLOEXEC as i64
    );
    drop(client);

    // And again: the server loops.
    let (mut client, _) = reconnect(&server.path);
    assert_eq!(getpid(&mut client), me);
}

#[test]
fn handshake_passes_several_fds() {
    let (server, client) = start();
    drop(client);
    let (client, server_end) = UnixStream::pair().unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (pipe_r, pipe_w) = pipe();
    let passed = [
        server_end.as_raw_fd(),
        pipe_r.as_raw_fd(),
        pipe_w.as_raw_fd(),
    ];
    let numbers = handshake(&server.path, &passed);
    assert_eq!(numbers.len(), 3);
    for (&original, &received) in passed.iter().zip(&numbers) {
        assert!(!passed.contains(&received), "{received} is not a new fd");
        assert_eq!(identity(original), identity(received));
    }
    drop(server_end);
    let mut client = client;
    assert_eq!(getpid(&mut client), std::process::id() as i64);
    // The extra fds are left to the client: here, close them.
    for &fd in &numbers[1..] {
        // SAFETY: the server handed these two fds over and never touches them again.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

#[test]
fn bad_handshakes_are_refused_and_the_server_keeps_accepting() {
    let (server, client) = start();
    drop(client);

    for count in [0, -1, 17, 1_000_000, i32::MIN] {
        let mut conn = begin_handshake(&server.path, count, &[]);
        assert!(sees_hangup(&mut conn), "count {count} was not refused");
    }

    // Fewer fds than announced: refused, and the fd that did arrive is closed again (the
    // pipe reaches EOF once our write end is closed too).
    let (mut pipe_r, pipe_w) = pipe();
    let mut conn = begin_handshake(&server.path, 2, &[pipe_w.as_raw_fd()]);
    assert!(sees_hangup(&mut conn), "a short fd message was not refused");
    drop(pipe_w);
    assert!(
        pipe_reaches_eof(&mut pipe_r),
        "the server kept a refused fd open"
    );

    // A count and then a plain byte with no fds.
    let mut conn = begin_handshake(&server.path, 1, &[]);
    conn.write_all(b"x").unwrap();
    assert!(
        sees_hangup(&mut conn),
        "a message without fds was not refused"
    );

    // A count, then hanging up.
    let conn = begin_handshake(&server.path, 1, &[]);
    drop(conn);

    // A client that connects and says nothing at all.
    drop(UnixStream::connect(&server.path).unwrap());

    // After all that, a good handshake works.
    let (mut client, _) = reconnect(&server.path);
    assert_eq!(getpid(&mut client), std::process::id() as i64);
}
