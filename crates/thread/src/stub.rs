//! [`StubServer`]: mock any program. A listening unix socket that `rsyscall-unix-stub`
//! processes, started by programs we never wrote, connect back to; each accepted one
//! becomes a [`Thread`] controlling that process, with the argv it was run with
//! (PROTOCOL.md sections 3 and 6).
//!
//! # Trust
//! Whoever connects is checked with `SO_PEERCRED` against the allowed uids before anything
//! is sent; [`StubServer::make`]'s socket is in a directory of mode `0700`, so only its
//! owner (and root) can reach it at all.
//!
//! # Safety
//! [`Thread::from_bootstrap`] is given a process that connected to our socket, received
//! the sockets we made for it and described itself as the unix stub does: a process that
//! was exec'd (the stub is a program, started by another program), with its own address
//! space and fd table, whose fd numbers it named are the ones it received from us. That
//! only a process of an allowed uid may connect is what this rests on: such a process can
//! already `ptrace` us.
#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_io::{Async, Timer};
use nix::sys::socket::{self as sock, ControlMessage, MsgFlags};
use rsyscall_handle::structs::sockopt;
use rsyscall_handle::{Error, FileDescriptor, Result, Task};
use rsyscall_near::{self as near, AF, AT, MFD, O, SOCK, SockType};
use rsyscall_server::proto::UnixStubDescribe;

use crate::afd::AsyncFileDescriptor;
use crate::background::Critical;
use crate::bootstrap::{BootstrapParts, helper_advice, read_exact, read_strings};
use crate::tempdir::TempDir;
use crate::thread::Thread;

/// The unix stub's name in the libexec directory.
pub const UNIX_STUB: &str = "rsyscall-unix-stub";

/// The environment variable the stub reads its socket's path from.
pub const UNIX_STUB_SOCK_PATH_ENV: &str = "RSYSCALL_UNIX_STUB_SOCK_PATH";

/// How long an accepted connection is given, by default, to describe itself before it is
/// dropped and [`StubServer::accept`] goes on to the next one.
pub const STUB_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The backlog of the listening socket.
const BACKLOG: i32 = 16;

/// A server that programs' `rsyscall-unix-stub` processes connect back to (the reference's
/// `rsyscall.tasks.stub.StubServer`). Each [`accept`](StubServer::accept) gives the argv
/// the stub was run with and a [`Thread`] controlling its process.
///
/// # Examples
/// Mock a program named `greet`, run it from a shell, answer it and end it with status 3:
///
/// ```
/// # use rsyscall_thread::{StubServer, local_thread};
/// # async_io::block_on(async {
/// let thread = local_thread();
/// let dir = thread.mkdtemp("doc-stub-").await?;
/// let server = StubServer::make(&thread, dir.path(), "greet").await?;
/// let sh = thread.environ().which("sh").await?;
/// let script = format!("{}/greet hello; echo \"status $?\"", dir.path().display());
/// let run = async { thread.run_unchecked(sh.args(["-c", script.as_str()])).await };
/// let mock = async {
///     let (argv, stub) = server.accept().await?;
///     assert_eq!(argv[1], "hello");
///     stub.exit(3).await
/// };
/// let (ran, mocked) = futures_lite::future::zip(run, mock).await;
/// mocked?;
/// assert_eq!(ran?, rsyscall_handle::ChildState::Exited(0));
/// server.close().await?;
/// dir.cleanup().await?;
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
///
/// # Dropping
/// Dropping a `StubServer` closes its socket and removes, through its thread, the socket
/// file it bound (and for [`StubServer::make`], the wrapper and the private directory),
/// on a background thread: [`StubServer::close`] does the same and waits for it. Stub
/// threads already accepted are unaffected.
pub struct StubServer {
    thread: Thread,
    listening: Option<AsyncFileDescriptor>,
    /// The socket file, removed when closed (for `listen_on`).
    socket_path: Option<PathBuf>,
    /// The private directory holding the socket (for `make`).
    socket_dir: Option<TempDir>,
    /// The wrapper script (for `make`).
    wrapper: Option<PathBuf>,
    allowed_uids: Vec<u32>,
    handshake_timeout: Duration,
}

impl fmt::Debug for StubServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StubServer")
            .field("socket", &self.socket_path())
            .field("wrapper", &self.wrapper)
            .field("allowed_uids", &self.allowed_uids)
            .finish()
    }
}

impl StubServer {
    /// Listens for stubs on a new unix socket bound at `path` through `thread` (in its
    /// mount namespace, relative to its working directory; a path longer than `sun_path`
    /// is bound through `/proc/self/fd/N` of its directory). Stubs are started with
    /// `RSYSCALL_UNIX_STUB_SOCK_PATH` set to a path reaching that socket, and with the
    /// name they were run under as their first argument after their own path (see
    /// [`StubServer::wrapper_script`]).
    ///
    /// Connections are accepted from processes whose effective uid is `thread`'s
    /// (see [`StubServer::allow_uids`]). Whoever can reach `path` can connect: put it in
    /// a directory only you can enter, as [`StubServer::make`] does.
    ///
    /// # Errors
    /// `EADDRINUSE` if something exists at `path`; the errors of `socket`, `bind`,
    /// `listen`, `geteuid` and [`Thread::make_afd`].
    ///
    /// # Cancellation
    /// Once polled, it is finished even if this future is dropped (on a background
    /// thread), and the server it made is then dropped, its socket file removed.
    pub async fn listen_on(thread: &Thread, path: impl AsRef<Path>) -> Result<StubServer> {
        let (thread, path) = (thread.duplicate(), path.as_ref().to_owned());
        Critical::new(async move {
            let mut server = StubServer::empty(&thread).await?;
            let fd = server.bind(&path).await?;
            server.socket_path = Some(path);
            server.listen(fd).await?;
            Ok(server)
        })
        .await
    }

    /// Makes an executable `dir/name` (a `#!/bin/sh` wrapper that execs the unix stub with
    /// `RSYSCALL_UNIX_STUB_SOCK_PATH` set, see [`StubServer::wrapper_script`]) and a server
    /// listening on a socket in a new private directory (mode `0700`, made with
    /// [`Thread::mkdtemp`]). Running `dir/name` (from any program, under `thread`'s uid)
    /// gives an [`accept`](StubServer::accept). The stub is the one
    /// [`libexec::helper_path`](crate::libexec::helper_path) finds.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name that is empty, `.`, `..`, or contains `/` or
    /// NUL; `EEXIST` if `dir/name` exists (it is never overwritten); [`Error::Helper`] if
    /// the stub is not found; the errors of [`StubServer::listen_on`] and of writing the
    /// file.
    ///
    /// # Cancellation
    /// As [`StubServer::listen_on`]: what it made is removed.
    pub async fn make(thread: &Thread, dir: impl AsRef<Path>, name: &str) -> Result<StubServer> {
        let stub = crate::libexec::helper_path(UNIX_STUB)?;
        // The wrapper runs wherever its launcher is: a relative libexec path would not do.
        let stub = std::path::absolute(&stub).map_err(io("making the stub's path absolute"))?;
        StubServer::make_with_stub(thread, dir, name, &stub).await
    }

    /// [`StubServer::make`] with the stub binary at `stub` (a path as the programs running
    /// the wrapper see it).
    ///
    /// # Errors
    /// As [`StubServer::make`].
    pub async fn make_with_stub(
        thread: &Thread,
        dir: impl AsRef<Path>,
        name: &str,
        stub: &Path,
    ) -> Result<StubServer> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Error::invalid(
                "StubServer::make",
                format!("{name:?} is not a file name"),
            ));
        }
        let thread = thread.duplicate();
        let wrapper = dir.as_ref().join(name);
        let stub = stub.to_owned();
        Critical::new(async move {
            let mut server = StubServer::empty(&thread).await?;
            let sock_dir = thread.mkdtemp("rsyscall-stub-").await?;
            let sock_path = sock_dir.path().join("sock");
            server.socket_dir = Some(sock_dir);
            let fd = server.bind(&sock_path).await?;
            server.listen(fd).await?;
            let script = StubServer::wrapper_script(&sock_path, &stub);
            let task = thread.task();
            let file = task
                .open(&wrapper, O::WRONLY | O::CREAT | O::EXCL | O::CLOEXEC, 0o755)
                .await?;
            server.wrapper = Some(wrapper);
            let written = task.write_all_bytes(&file, &script).await;
            let closed = file.close().await;
            written?;
            closed?;
            Ok(server)
        })
        .await
    }

    /// The text of a `#!/bin/sh` wrapper running `stub` with `RSYSCALL_UNIX_STUB_SOCK_PATH`
    /// set to `socket`, as `stub "$0" "$@"`: the stub's own argv\[0\] is its path, and
    /// the name the wrapper was run under comes next ([`StubServer::accept`] drops the
    /// first). Both paths are quoted for the shell.
    pub fn wrapper_script(socket: &Path, stub: &Path) -> Vec<u8> {
        let mut s = b"#!/bin/sh\n".to_vec();
        s.extend_from_slice(UNIX_STUB_SOCK_PATH_ENV.as_bytes());
        s.push(b'=');
        s.extend(sh_quote(socket.as_os_str()));
        s.extend_from_slice(b" exec ");
        s.extend(sh_quote(stub.as_os_str()));
        s.extend_from_slice(b" \"$0\" \"$@\"\n");
        s
    }

    /// Accepts connections only from processes whose effective uid (as `SO_PEERCRED`
    /// reports it in the server's thread) is in `uids`, instead of only the thread's own.
    #[must_use]
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> StubServer {
        self.allowed_uids = uids.into_iter().collect();
        self
    }

    /// How long an accepted connection is given to describe itself (default
    /// [`STUB_HANDSHAKE_TIMEOUT`]) before it is dropped and the next one is taken.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> StubServer {
        self.handshake_timeout = timeout;
        self
    }

    /// The allowed uids.
    pub fn allowed_uids(&self) -> &[u32] {
        &self.allowed_uids
    }

    /// The path of the listening socket, as its thread sees it.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match (&self.socket_path, &self.socket_dir) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(dir)) => Some(dir.path().join("sock")),
            (None, None) => None,
        }
    }

    /// The wrapper [`StubServer::make`] wrote, if it made one.
    pub fn wrapper_path(&self) -> Option<&Path> {
        self.wrapper.as_deref()
    }

    /// Waits for a stub to connect, checks its uid, gives it its sockets, reads what it
    /// says about itself and makes it a [`Thread`] ([`Thread::from_bootstrap`]). Returns
    /// the argv the program was run with (argv\[0\] the name it was run under: the stub's
    /// own first argument, its path, is dropped) and the thread.
    ///
    /// The thread's process is the stub's: its stdin, stdout, stderr, working directory,
    /// environment ([`Thread::environ`]) and signal mask are as the launching program left
    /// them, and [`Thread::exit`] ends it with the status the launcher sees. It has no
    /// parent thread: dropping every handle to it ends the stub with status 0.
    ///
    /// A connection from a uid not allowed is refused (closed, with a `log::warn!`), and a
    /// connection that does not complete the handshake within the handshake timeout
    /// (nothing sent, garbage, a stub killed midway) is dropped (logged too); either way
    /// it goes on to the next.
    ///
    /// # Errors
    /// Only errors of the server itself: `accept4` failing (other than for an aborted
    /// connection), the server's thread gone, making local sockets.
    ///
    /// # Cancellation
    /// May be dropped at any await: a connection taken but not yet answered is closed (the
    /// stub sees its sockets hang up and exits), and nothing is left open here.
    pub async fn accept(&self) -> Result<(Vec<OsString>, Thread)> {
        let listening = self
            .listening
            .as_ref()
            .ok_or_else(|| Error::invalid("StubServer::accept", "the server is closed"))?;
        loop {
            let conn = match listening.accept(SOCK::CLOEXEC).await {
                Ok(conn) => conn,
                Err(e) if e.errno() == Some(near::Errno::ECONNABORTED) => continue,
                Err(e) => return Err(e),
            };
            let cred = conn.getsockopt::<sockopt::PeerCred>().await?;
            if !self.allowed_uids.contains(&cred.uid) {
                log::warn!(
                    "StubServer: refused a connection from pid {} uid {} (allowed uids: {:?})",
                    cred.pid,
                    cred.uid,
                    self.allowed_uids
                );
                drop(conn);
                continue;
            }
            let conn = self.thread.thread_to_local(&conn).await?;
            let ends = Ends::new().await?;
            let handshake = async { Some(self.handshake(conn, ends).await) };
            let timeout = async {
                Timer::after(self.handshake_timeout).await;
                None
            };
            match futures_lite::future::or(handshake, timeout).await {
                Some(Ok(got)) => return Ok(got),
                Some(Err(e)) => log::warn!(
                    "StubServer: dropped a connection from pid {} uid {}: {e}",
                    cred.pid,
                    cred.uid
                ),
                None => log::warn!(
                    "StubServer: dropped a connection from pid {} uid {}: it did not \
                     describe itself within {:?} (StubServer::handshake_timeout sets the \
                     bound); {}",
                    cred.pid,
                    cred.uid,
                    self.handshake_timeout,
                    helper_advice(UNIX_STUB)
                ),
            }
        }
    }

    /// Closes the socket and removes the files this server made, through its thread, now.
    ///
    /// # Errors
    /// The errors of `unlinkat` and [`TempDir::cleanup`] (a file already gone is not an
    /// error).
    pub async fn close(mut self) -> Result<()> {
        let parts = self.take_parts();
        parts.remove().await
    }

    /// A server with nothing made yet.
    async fn empty(thread: &Thread) -> Result<StubServer> {
        let uid = thread.task().geteuid().await?;
        Ok(StubServer {
            thread: thread.duplicate(),
            listening: None,
            socket_path: None,
            socket_dir: None,
            wrapper: None,
            allowed_uids: vec![uid],
            handshake_timeout: STUB_HANDSHAKE_TIMEOUT,
        })
    }

    /// A new socket bound at `path`; the caller records `path` right after, so the file
    /// is removed if anything later fails.
    async fn bind(&self, path: &Path) -> Result<FileDescriptor> {
        let fd = self
            .thread
            .task()
            .socket(
                AF::UNIX,
                SockType::STREAM,
                SOCK::CLOEXEC | SOCK::NONBLOCK,
                0,
            )
            .await?;
        fd.bind_unix(path).await?;
        Ok(fd)
    }

    /// Listens on the bound `fd` and registers it for async accepts.
    async fn listen(&mut self, fd: FileDescriptor) -> Result<()> {
        fd.listen(BACKLOG).await?;
        self.listening = Some(self.thread.make_afd(fd, false).await?);
        Ok(())
    }

    /// Takes what must be removed, leaving the server with nothing to remove.
    fn take_parts(&mut self) -> Leftovers {
        Leftovers {
            thread: self.thread.duplicate(),
            listening: self.listening.take(),
            socket_path: self.socket_path.take(),
            socket_dir: self.socket_dir.take(),
            wrapper: self.wrapper.take(),
        }
    }

    /// The stub handshake on the accepted connection `conn`: every error is the peer's.
    async fn handshake(&self, conn: OwnedFd, ends: Ends) -> Result<(Vec<OsString>, Thread)> {
        let Ends {
            syscall_ours,
            data_ours,
            theirs,
        } = ends;
        let raw = theirs.each_ref().map(AsRawFd::as_raw_fd);
        // A peer that is gone (or never reads) fails here or leaves the message unread;
        // either way the data socket then reads EOF or nothing.
        if let Err(e) = sock::sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(&[0])],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            return Err(Error::Handshake {
                helper: UNIX_STUB,
                detail: format!(
                    "sending the stub its sockets failed: {e} (the program that connected \
                     ended, or does not wait for them as the stub does); {}",
                    helper_advice(UNIX_STUB)
                ),
            });
        }
        drop((theirs, conn));
        let data = Async::new(data_ours).map_err(io("registering a data socket"))?;
        let mut buf = [0u8; UnixStubDescribe::SIZE];
        read_exact(&data, &mut buf, UNIX_STUB, "the describe struct").await?;
        let d = UnixStubDescribe::from_bytes(&buf);
        let fds = [d.syscall_fd, d.data_fd, d.futex_memfd, d.connecting_fd];
        let distinct = (0..4).all(|i| (i + 1..4).all(|j| fds[i] != fds[j]));
        if d.pid <= 0 || fds.iter().any(|&fd| fd < 0) || !distinct || d.argc == 0 {
            return Err(Error::Handshake {
                helper: UNIX_STUB,
                detail: format!(
                    "malformed describe struct: pid {}, fds {fds:?}, argc {} (a positive \
                     pid, four distinct fds and at least one argument were expected); {}",
                    d.pid,
                    d.argc,
                    helper_advice(UNIX_STUB)
                ),
            });
        }
        let mut argv = read_strings(&data, d.argc, UNIX_STUB).await?;
        let environment = read_strings(&data, d.envp_count, UNIX_STUB).await?;
        let data_sock: OwnedFd = data
            .into_inner()
            .map_err(io("deregistering a data socket"))?
            .into();
        let parts = BootstrapParts {
            syscall_sock: syscall_ours.into(),
            data_sock,
            pid: d.pid,
            syscall_fd: d.syscall_fd,
            data_fd: d.data_fd,
            symbols: d.symbols,
            environment,
        };
        // SAFETY: see the module's Safety section: the peer is a process of an allowed
        // uid that received these sockets from us and described itself as the stub,
        // an exec'd program; the fds it named are the ones it received, its own.
        let thread = unsafe {
            crate::bootstrap::bootstrap_thread(parts, None, rsyscall_near::ThreadKind::Stub)
        }
        .await?;
        // The futex memfd and the connecting socket are unused: the stub keeps only the
        // fds its launcher gave it.
        for fd in [d.futex_memfd, d.connecting_fd] {
            // SAFETY: the stub named these as the fds it received from us; nothing owns
            // them but the handle made here, which closes them.
            let fd =
                unsafe { FileDescriptor::from_raw(thread.task(), near::FileDescriptor::new(fd)) };
            fd.close().await?;
        }
        argv.remove(0);
        Ok((argv, thread))
    }
}

/// The sockets made for one stub: our ends of its syscall and data sockets, and the four
/// fds it is sent (syscall, data, futex memfd, connecting).
struct Ends {
    syscall_ours: UnixStream,
    data_ours: UnixStream,
    theirs: [OwnedFd; 4],
}

impl Ends {
    /// Makes them, in the local process.
    async fn new() -> Result<Ends> {
        let (syscall_ours, syscall_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        let (data_ours, data_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        let (_, connecting_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
        let futex = Task::local()
            .memfd_create(b"rsyscall-stub-futex", MFD::CLOEXEC)
            .await?
            .as_local_fd()
            .ok_or_else(|| Error::invalid("StubServer::accept", "memfd not local"))?
            .try_clone_to_owned()
            .map_err(io("duplicating a memfd"))?;
        Ok(Ends {
            syscall_ours,
            data_ours,
            theirs: [
                syscall_theirs.into(),
                data_theirs.into(),
                futex,
                connecting_theirs.into(),
            ],
        })
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        let parts = self.take_parts();
        if parts.is_empty() {
            return;
        }
        crate::reaper::spawn(async move {
            if let Err(e) = parts.remove().await {
                log::warn!("removing a StubServer's files: {e}");
            }
        });
    }
}

/// What a closed server leaves to remove.
struct Leftovers {
    thread: Thread,
    listening: Option<AsyncFileDescriptor>,
    socket_path: Option<PathBuf>,
    socket_dir: Option<TempDir>,
    wrapper: Option<PathBuf>,
}

impl Leftovers {
    fn is_empty(&self) -> bool {
        self.listening.is_none()
            && self.socket_path.is_none()
            && self.socket_dir.is_none()
            && self.wrapper.is_none()
    }

    /// Closes the socket, unlinks the files and removes the directory.
    async fn remove(self) -> Result<()> {
        let task = self.thread.task();
        let mut result = Ok(());
        if let Some(fd) = self.listening {
            result = result.and(fd.close().await);
        }
        for path in [self.wrapper, self.socket_path].into_iter().flatten() {
            match task.unlinkat(None, &path, AT::empty()).await {
                Err(e) if e.errno() != Some(near::Errno::ENOENT) => result = result.and(Err(e)),
                _ => {}
            }
        }
        if let Some(dir) = self.socket_dir {
            result = result.and(dir.cleanup().await);
        }
        result
    }
}

/// `s` quoted for the shell: in single quotes, each `'` as `'\''`.
fn sh_quote(s: &OsStr) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in s.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_quotes_paths() {
        let s = StubServer::wrapper_script(Path::new("/t/it's"), Path::new("/b/stub"));
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "#!/bin/sh\nRSYSCALL_UNIX_STUB_SOCK_PATH='/t/it'\\''s' exec '/b/stub' \"$0\" \"$@\"\n"
        );
    }
}
