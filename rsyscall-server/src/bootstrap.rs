//! The handshakes of the helper binaries started by other programs (PROTOCOL.md section
//! 6): the stdin bootstrap, the unix stub and the ssh bootstrap. Each receives its
//! sockets, describes itself on the data socket (section 3) and then serves on the
//! syscall socket.
//!
//! Like the rest of the crate: no allocation, no panic; failures are reported on stderr
//! and through the exit status (1: the handshake failed, 2: bad environment or usage).

use crate::io::Output;
use crate::proto::{BootstrapDescribe, StdinBootstrapDescribe, UnixStubDescribe};
use crate::rt::{self, InitialStack};
use crate::server::{MAX_PASSED_FDS, close_all, receive_fds, send_fds};
use crate::{server, symbol_table, sys};

/// The environment variable naming the unix stub's socket.
pub const UNIX_STUB_SOCK_PATH_ENV: &[u8] = b"RSYSCALL_UNIX_STUB_SOCK_PATH";

/// `sizeof(sun_path)`: a path must fit with its NUL.
const SUN_PATH_LEN: usize = 108;

/// The `rsyscall-stdin-bootstrap` program: receives the syscall, data and connecting fds
/// in one `SCM_RIGHTS` message on fd 0, writes its [`StdinBootstrapDescribe`] and its
/// environment strings on the data fd, and serves on the syscall fd. Exits 0 when the
/// client ends the stream at a request boundary, 1 on any failure (with a message on
/// stderr).
pub fn stdin_bootstrap_main(stack: InitialStack) -> ! {
    const NAME: &[u8] = b"rsyscall-stdin-bootstrap";
    let mut fds = [-1i32; MAX_PASSED_FDS];
    if !receive_fds(0, 3, &mut fds) {
        rt::write_stderr(&[
            NAME,
            b": expected one message with 3 fds (syscall, data, connecting) on stdin\n",
        ]);
        rt::exit_group(1);
    }
    let [syscall_fd, data_fd, connecting_fd] = [fds[0], fds[1], fds[2]];
    let describe = StdinBootstrapDescribe {
        symbols: symbol_table(),
        pid: sys::getpid() as i32,
        syscall_fd,
        data_fd,
        futex_memfd: -1,
        connecting_fd,
        _pad: 0,
        envp_count: stack.env().count() as u64,
    };
    let mut out = Output::new(data_fd);
    let mut written = out.write_all(&describe.to_bytes());
    if written == 0 {
        written = write_strings(&mut out, stack.env());
    }
    if written < 0 {
        close_all(fds.iter().take(3));
        fail(NAME, b"writing the describe struct failed", written);
    }
    serve(NAME, syscall_fd)
}

/// The `rsyscall-unix-stub` program: connects to the unix socket named by
/// `$RSYSCALL_UNIX_STUB_SOCK_PATH` (through `/proc/self/fd/N` of an `O_PATH` fd of its
/// directory when the path is too long for a `sockaddr_un`), receives the syscall, data,
/// futex memfd and connecting fds in one message, writes its [`UnixStubDescribe`], its
/// argv and its environment on the data fd, and serves on the syscall fd. Exits 0 when
/// the client ends the stream at a request boundary (a client normally ends the stub with
/// `exit` instead), 1 on a failed handshake, 2 if the variable is missing.
pub fn unix_stub_main(stack: InitialStack) -> ! {
    const NAME: &[u8] = b"rsyscall-unix-stub";
    let Some(path) = stack
        .env()
        .find_map(|e| strip_var(e, UNIX_STUB_SOCK_PATH_ENV))
    else {
        rt::write_stderr(&[
            NAME,
            b": RSYSCALL_UNIX_STUB_SOCK_PATH is not set; run this through its wrapper\n",
        ]);
        rt::exit_group(2);
    };
    let sock = match connect_unix(path) {
        Ok(fd) => fd,
        Err(e) => fail(
            NAME,
            b"connecting to RSYSCALL_UNIX_STUB_SOCK_PATH failed",
            e,
        ),
    };
    let mut fds = [-1i32; MAX_PASSED_FDS];
    let got = receive_fds(sock, 4, &mut fds);
    sys::close(sock);
    if !got {
        rt::write_stderr(&[NAME, b": expected one message with 4 fds on the socket\n"]);
        rt::exit_group(1);
    }
    let [syscall_fd, data_fd, futex_memfd, connecting_fd] = [fds[0], fds[1], fds[2], fds[3]];
    let sigmask = match sys::blocked_signals() {
        Ok(mask) => mask,
        Err(e) => fail(NAME, b"reading the signal mask failed", e),
    };
    let describe = UnixStubDescribe {
        symbols: symbol_table(),
        pid: sys::getpid() as i32,
        syscall_fd,
        data_fd,
        futex_memfd,
        connecting_fd,
        _pad: 0,
        argc: stack.argc() as u64,
        envp_count: stack.env().count() as u64,
        sigmask,
    };
    let mut out = Output::new(data_fd);
    let mut written = out.write_all(&describe.to_bytes());
    if written == 0 {
        written = write_strings(&mut out, (0..stack.argc()).filter_map(|i| stack.arg(i)));
    }
    if written == 0 {
        written = write_strings(&mut out, stack.env());
    }
    if written < 0 {
        close_all(fds.iter().take(4));
        fail(NAME, b"writing the describe struct failed", written);
    }
    serve(NAME, syscall_fd)
}

/// The ssh bootstrap's data socket, relative to its working directory.
const DATA_PATH: &[u8] = b"./data";
/// The ssh bootstrap's fd-passing socket, relative to its working directory.
const PASS_PATH: &[u8] = b"./pass";
/// The backlog of the ssh bootstrap's listening sockets.
const BACKLOG: i32 = 16;

/// The `rsyscall-bootstrap` program (PROTOCOL.md section 6), run twice by an ssh client
/// in a fresh directory on the remote host; `argv[1]` selects the mode.
///
/// - `socket`: binds and listens on the unix sockets `./data` and `./pass`, writes `done\n`
///   on fd 1 and closes it, accepts one connection on `./pass`, closes that listener and
///   unlinks `./pass`, sends the `./data` listening fd over the connection and exits 0.
///   `./data` stays for the client to reach; on a failure whatever it bound is unlinked.
/// - `rsyscall`: dies with its parent (`PR_SET_PDEATHSIG`), connects to `./pass`,
///   receives exactly one fd (the listening socket), accepts two connections on it (the
///   syscall socket, then the data socket), writes its [`BootstrapDescribe`] and its
///   environment on the data socket and serves on the syscall socket; exits 0 when the
///   client ends the stream at a request boundary.
///
/// Exit status 1 on a failed step (a message on stderr names it and its errno), 2 for a
/// missing or unknown mode. Every fd it makes is close-on-exec.
pub fn ssh_bootstrap_main(stack: InitialStack) -> ! {
    match stack.arg(1) {
        Some(b"socket") => ssh_socket_mode(),
        Some(b"rsyscall") => ssh_rsyscall_mode(stack),
        _ => {
            rt::write_stderr(&[
                b"usage: rsyscall-bootstrap socket|rsyscall\n",
                b"  socket: listen on ./data and ./pass, print done, hand ./data over ./pass\n",
                b"  rsyscall: take ./data from ./pass, describe yourself and serve\n",
            ]);
            rt::exit_group(2)
        }
    }
}

/// The ssh bootstrap's `socket` mode: see [`ssh_bootstrap_main`].
fn ssh_socket_mode() -> ! {
    // A reader of our stdout that went away must give EPIPE, not kill us before we
    // clean up.
    sys::block_sigpipe();
    let data = match listen_unix(DATA_PATH) {
        Ok(fd) => fd,
        Err((step, e)) => socket_mode_fail(step, e, &[]),
    };
    let pass = match listen_unix(PASS_PATH) {
        Ok(fd) => fd,
        Err((step, e)) => socket_mode_fail(step, e, &[DATA_PATH]),
    };
    let both: &[&[u8]] = &[DATA_PATH, PASS_PATH];
    let written = rt::write_all(1, b"done\n");
    sys::close(1);
    if let Err(e) = written {
        socket_mode_fail(b"writing done on stdout failed", e, both);
    }
    let conn = match accept_retrying(pass) {
        Ok(fd) => fd,
        Err(e) => socket_mode_fail(b"accepting on ./pass failed", e, both),
    };
    sys::close(pass);
    let unlinked = unlink_path(PASS_PATH);
    if unlinked < 0 {
        socket_mode_fail(b"unlinking ./pass failed", unlinked, &[DATA_PATH]);
    }
    let sent = send_fds(conn, &[data]);
    sys::close(conn);
    sys::close(data);
    if sent < 0 {
        socket_mode_fail(
            b"sending the ./data listening socket failed",
            sent,
            &[DATA_PATH],
        );
    }
    rt::exit_group(0)
}

/// Unlinks `bound` (the socket files this process bound), then reports like [`fail`].
fn socket_mode_fail(what: &[u8], err: i64, bound: &[&[u8]]) -> ! {
    for path in bound {
        unlink_path(path);
    }
    fail(b"rsyscall-bootstrap socket", what, err)
}

/// The ssh bootstrap's `rsyscall` mode: see [`ssh_bootstrap_main`].
fn ssh_rsyscall_mode(stack: InitialStack) -> ! {
    const NAME: &[u8] = b"rsyscall-bootstrap rsyscall";
    let ret = sys::die_with_parent();
    if ret < 0 {
        fail(NAME, b"prctl(PR_SET_PDEATHSIG) failed", ret);
    }
    let pass = match connect_unix(PASS_PATH) {
        Ok(fd) => fd,
        Err(e) => fail(NAME, b"connecting to ./pass failed", e),
    };
    let mut fds = [-1i32; MAX_PASSED_FDS];
    let got = receive_fds(pass, 1, &mut fds);
    sys::close(pass);
    if !got {
        rt::write_stderr(&[NAME, b": expected one message with 1 fd on ./pass\n"]);
        rt::exit_group(1);
    }
    let listening = fds[0];
    // The client connects through ssh's forward once it read `done`; if it never does (it
    // went away meanwhile), the session's end or a time limit ends us, not a wait forever.
    if let Err(e) = wait_for_client(listening) {
        fail(
            NAME,
            b"no client connected (the session ended, or 60 s passed)",
            e,
        );
    }
    let syscall_sock = match accept_retrying(listening) {
        Ok(fd) => fd,
        Err(e) => fail(NAME, b"accepting the syscall connection failed", e),
    };
    if let Err(e) = wait_for_client(listening) {
        fail(
            NAME,
            b"no second connection (the session ended, or 60 s passed)",
            e,
        );
    }
    let data_sock = match accept_retrying(listening) {
        Ok(fd) => fd,
        Err(e) => fail(NAME, b"accepting the data connection failed", e),
    };
    let describe = BootstrapDescribe {
        symbols: symbol_table(),
        pid: sys::getpid() as i32,
        listening_sock: listening,
        syscall_sock,
        data_sock,
        envp_count: stack.env().count() as u64,
    };
    let mut out = Output::new(data_sock);
    let mut written = out.write_all(&describe.to_bytes());
    if written == 0 {
        written = write_strings(&mut out, stack.env());
    }
    if written < 0 {
        fail(NAME, b"writing the describe struct failed", written);
    }
    serve(NAME, syscall_sock)
}

/// A new close-on-exec unix stream socket bound at `path` and listening; on failure the
/// step that failed and `-errno` (a socket bound before `listen` failed is unlinked).
fn listen_unix(path: &[u8]) -> Result<i32, (&'static [u8], i64)> {
    let mut addr = [0u8; 2 + SUN_PATH_LEN];
    let len = sockaddr_un(path, &mut addr).ok_or((&b"path too long"[..], -sys::EINVAL))?;
    let sock = sys::unix_stream_socket();
    if sock < 0 {
        return Err((b"socket() failed", sock));
    }
    let sock = sock as i32;
    let ret = sys::bind(sock, addr.get(..len).unwrap_or(&[]));
    if ret < 0 {
        sys::close(sock);
        return Err((bind_step(path), ret));
    }
    let ret = sys::listen(sock, BACKLOG);
    if ret < 0 {
        sys::close(sock);
        unlink_path(path);
        return Err((b"listen() failed", ret));
    }
    Ok(sock)
}

/// The message for a failed `bind` of `path`.
fn bind_step(path: &[u8]) -> &'static [u8] {
    if path == DATA_PATH {
        b"binding ./data failed"
    } else {
        b"binding ./pass failed"
    }
}

/// `unlink(path)` for a short path; 0 or `-errno`.
fn unlink_path(path: &[u8]) -> i64 {
    let mut c = [0u8; SUN_PATH_LEN];
    match c.get_mut(..path.len()) {
        Some(dst) if path.len() < SUN_PATH_LEN => copy_into(dst, path),
        _ => return -sys::EINVAL,
    }
    sys::unlink(c.get(..=path.len()).unwrap_or(&[]))
}

/// Accepts one connection on `listen_fd` (close-on-exec), retrying `EINTR` and
/// `ECONNABORTED`; the new fd or `-errno`.
fn accept_retrying(listen_fd: i32) -> Result<i32, i64> {
    loop {
        let conn = sys::accept_cloexec(listen_fd);
        if conn == -sys::EINTR || conn == -sys::ECONNABORTED {
            continue;
        } else if conn < 0 {
            return Err(conn);
        }
        return Ok(conn as i32);
    }
}

/// How long the `rsyscall` mode waits for each of its two connections.
const CLIENT_WAIT_MS: i32 = 60_000;

/// Waits until `listen_fd` has a connection to accept. Fails with `-ETIMEDOUT` after
/// [`CLIENT_WAIT_MS`], or `-EPIPE` once fd 1 (the ssh session's stdout, which the client
/// reads) reports a hangup or error: the session is over, and nobody will connect.
fn wait_for_client(listen_fd: i32) -> Result<(), i64> {
    loop {
        let mut fds = [
            sys::PollFd {
                fd: listen_fd,
                events: sys::POLLIN,
                revents: 0,
            },
            // No events asked: hangups and errors are always reported (an fd 1 that is
            // not open is reported as POLLNVAL, and ignored).
            sys::PollFd {
                fd: 1,
                events: 0,
                revents: 0,
            },
        ];
        let n = sys::poll(&mut fds, CLIENT_WAIT_MS);
        if n == -sys::EINTR {
            continue;
        }
        if n < 0 {
            return Err(n);
        }
        if n == 0 {
            return Err(-sys::ETIMEDOUT);
        }
        if fds[0].revents & sys::POLLIN != 0 {
            return Ok(());
        }
        if fds[1].revents & (sys::POLLHUP | sys::POLLERR) != 0 {
            return Err(-sys::EPIPE);
        }
    }
}

/// Serves on `fd` and exits: 0 at a clean end, 1 on an error.
fn serve(name: &[u8], fd: i32) -> ! {
    match server(fd, fd) {
        0 => rt::exit_group(0),
        e => fail(name, b"serving ended with an error", e),
    }
}

/// Writes each string as a little-endian `u64` length and its bytes; 0 or `-errno`.
fn write_strings<'a>(out: &mut Output, strings: impl Iterator<Item = &'a [u8]>) -> i64 {
    for s in strings {
        let len = (s.len() as u64).to_le_bytes();
        let w = out.write_all(&len);
        if w < 0 {
            return w;
        }
        let w = out.write_all(s);
        if w < 0 {
            return w;
        }
    }
    0
}

/// The value of `NAME=value` if `entry` sets `name`.
fn strip_var<'a>(entry: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = entry.strip_prefix(name)?;
    rest.strip_prefix(b"=")
}

/// A `sockaddr_un` for `path` (family, path, NUL) and its length, if the path fits.
fn sockaddr_un(path: &[u8], buf: &mut [u8; 2 + SUN_PATH_LEN]) -> Option<usize> {
    if path.is_empty() || path.len() >= SUN_PATH_LEN || path.contains(&0) {
        return None;
    }
    buf.fill(0);
    buf[0] = 1; // AF_UNIX, little-endian u16
    let dst = buf.get_mut(2..2usize.wrapping_add(path.len()))?;
    copy_into(dst, path);
    Some(2usize.wrapping_add(path.len()).wrapping_add(1))
}

/// Connects a new unix stream socket to `path`; a path too long for a `sockaddr_un` is
/// reached as `/proc/self/fd/N/name` through an `O_PATH` fd of its directory.
fn connect_unix(path: &[u8]) -> Result<i32, i64> {
    let mut addr = [0u8; 2 + SUN_PATH_LEN];
    let mut dirfd = -1i32;
    let len = match sockaddr_un(path, &mut addr) {
        Some(len) => len,
        None => {
            // dir/name: open dir, then connect to /proc/self/fd/N/name.
            let split = path.iter().rposition(|&b| b == b'/').ok_or(-sys::EINVAL)?;
            let (dir, name) = (
                path.get(..split).unwrap_or(&[]),
                path.get(split..).unwrap_or(&[]),
            );
            let dir: &[u8] = if dir.is_empty() { b"/" } else { dir };
            let mut dir_c = [0u8; 4096];
            let dst = dir_c.get_mut(..dir.len()).ok_or(-sys::EINVAL)?;
            copy_into(dst, dir);
            let fd = sys::open_dir_path(dir_c.get(..=dir.len()).ok_or(-sys::EINVAL)?);
            if fd < 0 {
                return Err(fd);
            }
            dirfd = fd as i32;
            let mut num = [0u8; 20];
            let num = rt::format_i64(fd, &mut num);
            let mut short = [0u8; SUN_PATH_LEN];
            let mut at = 0usize;
            for part in [&b"/proc/self/fd/"[..], num, name] {
                let Some(dst) = short.get_mut(at..at.wrapping_add(part.len())) else {
                    sys::close(dirfd);
                    return Err(-sys::EINVAL);
                };
                copy_into(dst, part);
                at = at.wrapping_add(part.len());
            }
            match sockaddr_un(short.get(..at).unwrap_or(&[]), &mut addr) {
                Some(len) => len,
                None => {
                    sys::close(dirfd);
                    return Err(-sys::EINVAL);
                }
            }
        }
    };
    let sock = sys::unix_stream_socket();
    if sock < 0 {
        if dirfd >= 0 {
            sys::close(dirfd);
        }
        return Err(sock);
    }
    let sock = sock as i32;
    let ret = loop {
        let ret = sys::connect(sock, addr.get(..len).unwrap_or(&[]));
        if ret != -sys::EINTR {
            break ret;
        }
    };
    if dirfd >= 0 {
        sys::close(dirfd);
    }
    if ret < 0 {
        sys::close(sock);
        return Err(ret);
    }
    Ok(sock)
}

/// Copies `src` into `dst` (of the same length) without a panic path.
fn copy_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// Reports `what` with the errno of `err` (`-errno`) and exits with status 1.
fn fail(name: &[u8], what: &[u8], err: i64) -> ! {
    let mut buf = [0u8; 20];
    let errno = rt::format_i64(err.wrapping_neg(), &mut buf);
    rt::write_stderr(&[name, b": ", what, b": errno ", errno, b"\n"]);
    rt::exit_group(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_un_fits_paths_with_their_nul() {
        let mut buf = [0u8; 2 + SUN_PATH_LEN];
        assert_eq!(sockaddr_un(b"/a", &mut buf), Some(5));
        assert_eq!(&buf[..5], b"\x01\x00/a\x00");
        assert_eq!(sockaddr_un(&[b'a'; 107], &mut buf), Some(110));
        assert_eq!(sockaddr_un(&[b'a'; 108], &mut buf), None);
        assert_eq!(sockaddr_un(b"", &mut buf), None);
    }

    #[test]
    fn strip_var_matches_whole_names() {
        assert_eq!(strip_var(b"A=b", b"A"), Some(&b"b"[..]));
        assert_eq!(strip_var(b"AB=b", b"A"), None);
        assert_eq!(strip_var(b"A", b"A"), None);
    }
}
