//! Helpers for the server tests: locating the helper binaries, starting `rsyscall-server`
//! over a socketpair, speaking the wire protocol as a client, passing fds, and waiting for
//! processes with a deadline.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rsyscall_server::proto::{RESPONSE_SIZE, Request, SymbolTable};

/// The environment variable that names the directory holding the helper binaries.
pub const LIBEXEC_ENV: &str = "RSYSCALL_LIBEXEC_DIR";

/// How long a test waits for a response or an exit before failing.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The directory of the helper binaries: `$RSYSCALL_LIBEXEC_DIR` if set, else
/// `<repo root>/target/libexec` (where `cargo xtask build-server` installs them).
pub fn libexec_dir() -> PathBuf {
    match std::env::var_os(LIBEXEC_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let tests_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let root = tests_dir.parent().unwrap_or(&tests_dir).to_path_buf();
            root.join("target").join("libexec")
        }
    }
}

/// The path of helper binary `name`; panics, saying how to build it, if it is missing.
pub fn helper_binary(name: &str) -> PathBuf {
    let path = libexec_dir().join(name);
    if !path.is_file() {
        panic!(
            "helper binary {} not found: run `cargo xtask build-server` first, or set {} to \
             the directory that holds it",
            path.display(),
            LIBEXEC_ENV
        );
    }
    path
}

/// Sends one request (56 bytes) without waiting for its response.
pub fn send_request(sock: &mut UnixStream, number: i64, args: [i64; 6]) {
    sock.write_all(&Request::new(number, args).to_bytes())
        .expect("writing a request");
}

/// Reads one 8-byte response.
pub fn read_response(sock: &mut UnixStream) -> i64 {
    let mut buf = [0u8; RESPONSE_SIZE];
    sock.read_exact(&mut buf).expect("reading a response");
    i64::from_le_bytes(buf)
}

/// Sends a request and waits for its response.
pub fn call(sock: &mut UnixStream, number: i64, args: [i64; 6]) -> i64 {
    send_request(sock, number, args);
    read_response(sock)
}

/// A running `rsyscall-server` process and the client end of its socket.
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// Our end of the socketpair (a read timeout of [`TIMEOUT`] is set on it).
    pub sock: UnixStream,
    /// The number of the server's end of the socketpair in the server process.
    pub server_fd: i32,
    /// The symbol table the server wrote on start-up.
    pub symbols: SymbolTable,
}

impl ServerProcess {
    /// Starts `rsyscall-server <fd> <fd> <fd> [extra...]` where `fd` is the server's end of
    /// a fresh socketpair, inherited by the child, and reads its symbol table.
    pub fn start(extra_args: &[&str]) -> ServerProcess {
        let (sock, server_end) = UnixStream::pair().expect("socketpair");
        let server_fd = server_end.as_raw_fd();
        let mut cmd = Command::new(helper_binary("rsyscall-server"));
        cmd.args([
            server_fd.to_string(),
            server_fd.to_string(),
            server_fd.to_string(),
        ])
        .args(extra_args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
        inherit_fd(&mut cmd, server_fd);
        let child = cmd.spawn().expect("spawning rsyscall-server");
        drop(server_end);
        sock.set_read_timeout(Some(TIMEOUT)).expect("SO_RCVTIMEO");
        let mut sock = sock;
        let mut table = [0u8; SymbolTable::SIZE];
        sock.read_exact(&mut table)
            .expect("reading the symbol table from rsyscall-server");
        ServerProcess {
            child,
            sock,
            server_fd,
            symbols: SymbolTable::from_bytes(&table),
        }
    }

    /// Sends a request and waits for its response.
    pub fn call(&mut self, number: i64, args: [i64; 6]) -> i64 {
        call(&mut self.sock, number, args)
    }

    /// Waits (at most [`TIMEOUT`]) for the process to end; returns its status and what it
    /// wrote on stderr. Does not close the socket: drop or shut it down first if the
    /// server should see EOF.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = wait_with_deadline(&mut self.child);
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        (status, stderr)
    }
}

/// Makes `fd` (close-on-exec in this process) survive into the program `cmd` runs, at the
/// same number, by clearing `FD_CLOEXEC` in the child between fork and exec. Other
/// processes started meanwhile do not inherit it.
pub fn inherit_fd(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which
    // is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Waits for `child` to end, killing it and panicking after [`TIMEOUT`].
pub fn wait_with_deadline(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {:?}", child.id(), TIMEOUT);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `fds` over `sock` as the protocol does: one `sendmsg` with a 1-byte payload and a
/// single `SCM_RIGHTS` control message.
pub fn send_fds(sock: &UnixStream, fds: &[RawFd]) -> std::io::Result<()> {
    let data_len = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
    // u64 elements give the buffer the alignment of struct cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, enough for one header with the fds;
    // CMSG_FIRSTHDR returns a pointer into that buffer, and the fd data written through
    // CMSG_DATA fits in it by construction.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len as u32) as usize;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<RawFd>(),
            fds.len(),
        );
    }
    // SAFETY: msg and everything it points to are live locals.
    let ret = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the peer of `sock` closes the connection (read returns EOF, or the connection is
/// reset) within [`TIMEOUT`], without sending anything.
pub fn sees_hangup(sock: &mut UnixStream) -> bool {
    sock.set_read_timeout(Some(TIMEOUT)).expect("SO_RCVTIMEO");
    let mut buf = [0u8; 1];
    match sock.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}
