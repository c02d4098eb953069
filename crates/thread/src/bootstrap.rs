//! Threads from bootstrapped processes: a process that runs a syscall server over sockets
//! we hold, and described itself (PROTOCOL.md sections 3 and 6), becomes a full [`Thread`]
//! ([`Thread::from_bootstrap`]); [`stdin_bootstrap`] gets such a process through a
//! launcher such as `sudo`.
//!
//! # Safety
//! [`Thread::from_bootstrap`] is where the claims [`Task::new`] and [`Memory::new`] trust
//! are made for such a process: its caller vouches that the process is not in our address
//! space or fd table. [`stdin_bootstrap`] makes that promise for the process it starts:
//! the helper is exec'd (a new address space, and a table of its own: exec unshares it),
//! and the sockets it is described by were sent only to it, through the launcher's stdin.
//! `WeakConnection` forwards the unsafe methods of the allocator's interface and
//! transport to the connection, whose duties are the same, and fails without sending
//! anything once the connection is gone.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_io::Async;
use futures_lite::AsyncReadExt;
use nix::sys::socket::{self as sock, ControlMessage, MsgFlags};
#[cfg(doc)]
use rsyscall_handle::Memory;
use rsyscall_handle::{BoxFuture, Error, FileDescriptor, Result, Task, Transport};
use rsyscall_near::{self as near, CLONE, MFD, NotSent, Signal, SyscallError};
use rsyscall_server::proto::{StdinBootstrapDescribe, SymbolTable};

use crate::command::{Command, Environment, SharedEnvironment};
use crate::connection::Connection;
use crate::monitor::AsyncChildProcess;
use crate::remote::{RemoteTask, remote_task};
use crate::syscall_connection::SyscallConnection;
use crate::thread::Thread;

/// The stdin bootstrap helper's name in the libexec directory.
pub const STDIN_BOOTSTRAP: &str = "rsyscall-stdin-bootstrap";

/// The ssh bootstrap helper's name in the libexec directory (PROTOCOL.md section 6).
pub const SSH_BOOTSTRAP: &str = "rsyscall-bootstrap";

/// At most this many environment strings are accepted from a helper.
const MAX_ENV_STRINGS: u64 = 1 << 16;
/// The kernel's limit on one argument or environment string (`MAX_ARG_STRLEN`).
const MAX_STRING_LEN: u64 = 32 * 4096;
/// The start of the error for a data socket closed before anything was sent.
const NOTHING_SENT: &str = "the data socket was closed before";
/// What to do about a helper that broke its handshake, ending every [`Error::Handshake`]
/// of the bootstraps and the stub: the usual causes are a helper from another build (a
/// stale `$RSYSCALL_LIBEXEC_DIR`) and another program run in its place.
pub(crate) fn helper_advice(helper: &'static str) -> String {
    let started = match helper {
        STDIN_BOOTSTRAP => {
            "; and that the launcher runs, as its last argument, the helper path it is given"
        }
        crate::stub::UNIX_STUB => {
            "; and that the program runs the wrapper StubServer::make wrote (or execs the stub \
             with RSYSCALL_UNIX_STUB_SOCK_PATH set)"
        }
        _ => "",
    };
    format!(
        "check that the peer is {helper} of this library's build (protocol version 0 of \
         PROTOCOL.md, which the helpers embedded in the library speak): if {} is set, the \
         helpers there must come from the same build (unset it to use the embedded ones){started}",
        crate::libexec::LIBEXEC_ENV
    )
}

/// How much of a failed launcher's stderr is kept.
const STDERR_KEPT: usize = 64 * 1024;
/// How long a launcher whose helper hung up without describing itself is given to exit
/// on its own before it is killed.
const LAUNCHER_GRACE: Duration = Duration::from_secs(5);

/// A process running a syscall server over sockets we hold, and what it said about itself
/// in its describe struct and strings (PROTOCOL.md section 3): what
/// [`Thread::from_bootstrap`] turns into a [`Thread`]. The fd numbers are in the
/// process's own table.
#[derive(Debug)]
pub struct BootstrapParts {
    /// Our end of its syscall socket.
    pub syscall_sock: OwnedFd,
    /// Our end of its data socket, used afterwards to pass fds (its [`Connection`]).
    pub data_sock: OwnedFd,
    /// Its pid, in its own pid namespace.
    pub pid: i32,
    /// Its end of the syscall socket.
    pub syscall_fd: i32,
    /// Its end of the data socket.
    pub data_fd: i32,
    /// The entry points in its address space (for clones made from it).
    pub symbols: SymbolTable,
    /// Its environment (`NAME=value` strings).
    pub environment: Vec<OsString>,
}

impl Thread {
    /// Turns a bootstrapped process (see [`BootstrapParts`]) into a [`Thread`]: a task
    /// whose memory is reached through the syscall socket (the in-band transport of
    /// PROTOCOL.md section 5: its address space is not ours), whose pid, pid, mount and
    /// network namespaces are read from the process itself, a [`Connection`] over the
    /// data socket, its environment from the describe strings, and the entry points of its
    /// symbol table, so that [`Thread::clone`] works from it (children share its address
    /// space and run its trampoline and server; their futex helper is cloned there too).
    /// Its stdin, stdout and stderr are whatever fds 0, 1 and 2 are in that process. It
    /// has no parent thread: its children are its own, waited for through it.
    ///
    /// Namespace identities: a namespace whose `/proc/self/ns` link (read through the new
    /// thread) equals the local process's is the local identity; any other link gets one
    /// identity per link for the life of this program, shared by every bootstrapped
    /// or attached persistent thread. (Threads cloned here into new namespaces keep their own identities, so a
    /// bootstrapped thread in such a namespace is treated as being in another one: using
    /// a handle across them is a `Mismatch` error, never a wrong syscall.) If `/proc` is
    /// not readable there, fresh identities are used, with the same effect.
    ///
    /// # Safety
    /// The claims [`Task::new`] and [`Memory::new`] trust:
    /// - `syscall_sock` is connected to a syscall server (PROTOCOL.md section 1), serving
    ///   on `syscall_fd`, in a process whose address space and fd table are not this
    ///   process's nor any other we drive: a process that was exec'd and not cloned
    ///   from since with `CLONE_VM` or `CLONE_FILES` by anyone but this library;
    /// - `pid` is its pid in its own pid namespace, `data_fd` its end of `data_sock`'s
    ///   socketpair, and neither `data_fd` nor `syscall_fd` is owned by anything else;
    /// - `symbols` are the addresses of the protocol's entry points in that process.
    ///
    /// # Errors
    /// Registering the sockets with the reactor; the syscalls that read the namespaces
    /// (a lost connection is [`Error::Syscall`] with a hangup).
    pub async unsafe fn from_bootstrap(parts: BootstrapParts) -> Result<Thread> {
        // SAFETY: the caller's promises, passed on.
        unsafe { bootstrap_thread(parts, None, near::ThreadKind::Bootstrapped) }.await
    }

    /// Replaces the program of this bootstrapped thread ([`Thread::from_bootstrap`],
    /// [`stdin_bootstrap`], [`StubServer::accept`](crate::StubServer::accept)) with
    /// `command` (`execve`), with the thread's environment ([`Thread::environ`]) changed
    /// by the command's. Everything else passes to the program as exec passes it: its
    /// signal mask and dispositions, its fds without close-on-exec, its stdin, stdout and
    /// stderr. This is how a mocked program hands over to a real one.
    ///
    /// `Ok` means the kernel really replaced the process's image; the thread is then gone
    /// (every later syscall on it is a hangup). The process is not our child, so nothing
    /// is returned for it: its end is seen by whoever waits for it (for
    /// [`stdin_bootstrap`], the launcher's [`AsyncChildProcess`]; for a stub, the program
    /// that ran it).
    ///
    /// How the end is told: the first exec of a thread sets the thread's
    /// `set_tid_address` word (which the kernel clears at exec and at exit) and clones the
    /// protocol's futex helper in its address space to watch it, whose exit ends the
    /// connection even while other processes hold copies of its socket; the helper stays
    /// for the thread's life, and a program the thread execs inherits it as a child that
    /// already exited. Before each execve the thread's command name is set to a name
    /// containing `/`, which no exec can give (the kernel names an exec'd process after
    /// the last part of its path): once the connection is lost, `/proc/PID/stat` shows
    /// another name exactly when the exec completed, even if the program has exited
    /// since, and the `PF_EXITING` flag or a dead state otherwise. A failed exec restores
    /// the name, with a request pipelined right after the `execve` (so even when this
    /// future was dropped meanwhile).
    ///
    /// That entry lasts until the process is reaped. A [`stdin_bootstrap`] launcher's
    /// monitor reaps only when waited for, so exec then wait is always told exactly. A
    /// stub's parent is a program we do not drive: if the exec'd program ends and that
    /// parent reaps it before the entry is read (a program that exits at once), the
    /// outcome cannot be known any more and is [`Error::Io`], never a guess.
    ///
    /// argv and envp are freed as soon as no kernel reads them; if the future is dropped
    /// while the execve is in flight, the connection keeps them until it is answered.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_thread::{Command, local_thread, stdin_bootstrap};
    /// # use rsyscall_handle::ChildState;
    /// # async_io::block_on(async {
    /// let env = local_thread().environ().which("env").await?;
    /// let (launcher, thread) = stdin_bootstrap(&local_thread(), env).await?;
    /// thread
    ///     .exec_bootstrapped(Command::new("/bin/sh", "sh").args(["-c", "exit 3"]))
    ///     .await?;
    /// assert_eq!(launcher.wait().await?, ChildState::Exited(3));
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`] for a thread that was not bootstrapped (a clone child
    ///   execs with [`ChildThread::exec`](crate::ChildThread::exec)) or a bad command;
    /// - the execve's error (`ENOENT` for a missing file, `E2BIG`...): the thread still runs
    ///   its server and is usable;
    /// - a hangup ([`Error::is_hangup`]) if the thread died (was killed, or already was
    ///   dead) before its exec completed, so the program never ran;
    /// - [`Error::Io`] if `/proc` could not tell which (not mounted, the process not
    ///   visible in our pid namespace, or reaped by its parent before it could be read;
    ///   see above).
    pub async fn exec_bootstrapped(&self, command: Command) -> Result<()> {
        let Some(watch) = self.inner.bootstrapped.get().cloned() else {
            return Err(Error::invalid(
                "exec_bootstrapped",
                "this thread was not bootstrapped; a clone child execs with ChildThread::exec",
            ));
        };
        command.validate()?;
        let task = self.task();
        if self.is_dead() {
            return Err(task.error("execve")(SyscallError::Hangup));
        }
        // One exec at a time; the first installs the watch.
        let mut installed = watch.installed.lock().await;
        if !*installed {
            let (thread, conn) = (self.duplicate(), watch.conn.clone());
            // It lends the process memory and makes a process: it must not stop half-way.
            crate::background::Critical::new(install_exec_watch(thread, conn)).await?;
            *installed = true;
        }
        // The process, as a pidfd of ours, to read its /proc entry after the connection
        // is lost.
        let theirs = task.pidfd_open(task.pid(), near::PIDFD::empty()).await?;
        let pidfd = self.thread_to_local(&theirs).await?;
        drop(theirs);
        let envp = command.environment(&self.inner.environ.read());
        // The program gets the table as it is: no fd whose handle is gone (the pidfd just
        // dropped included) may be passed on.
        task.prepare_to_copy().await;
        // One allocation and one write: the marker name (16 bytes, NUL-padded), room for
        // the name to restore (16 bytes), then path, argv and envp.
        let mut prefix = [0u8; 32];
        prefix[..EXEC_MARKER.len()].copy_from_slice(EXEC_MARKER);
        let image = task
            .exec_image(&prefix, command.path(), command.argv(), &envp)
            .await?;
        let (base, path, argv, envp) = (
            image.prefix().as_u64(),
            image.path(),
            image.argv(),
            image.envp(),
        );
        // Dropped with the future, it goes to the connection until the requests end.
        let mut lent = Lent {
            image: Some(image.into_pointer()),
            sysif: task.sysif_arc().clone(),
        };
        let sysif = task.sysif();
        let prctl = |option: i32, addr: u64| {
            // SAFETY: PR_GET_NAME writes 16 bytes at `base + 16`, PR_SET_NAME reads a
            // NUL-terminated name of at most 16 bytes at `base` or `base + 16`: all
            // inside the block, kept until the requests are over.
            unsafe {
                sysif.syscall(near::Request::new(
                    libc::SYS_prctl,
                    [option as i64, addr as i64, 0, 0, 0, 0],
                ))
            }
        };
        let get = prctl(libc::PR_GET_NAME, base + 16);
        let set = prctl(libc::PR_SET_NAME, base);
        // SAFETY: path, argv and envp were laid out by exec_image, NUL- and
        // NULL-terminated, in the thread's address space, and the block is kept (`lent`)
        // until no kernel can read it.
        let exec = unsafe {
            sysif.syscall(near::Request::new(
                libc::SYS_execve,
                [
                    path.as_u64() as i64,
                    argv.as_u64() as i64,
                    envp.as_u64() as i64,
                    0,
                    0,
                    0,
                ],
            ))
        };
        // The old name goes back right after a failed execve, in the same pipeline, so
        // that it is restored even if this future is dropped meanwhile (the requests sent
        // run anyway). After a successful one nothing runs it: the server is gone.
        let restore = prctl(libc::PR_SET_NAME, base + 16);
        let ((get, set), (exec, restore)) = futures_lite::future::zip(
            futures_lite::future::zip(get, set),
            futures_lite::future::zip(exec, restore),
        )
        .await;
        let over = |r: &near::SyscallResult| !matches!(r, Err(SyscallError::Hangup));
        match exec {
            Err(e @ (SyscallError::Errno(_) | SyscallError::OutOfRange(_))) => {
                // The exec failed: the thread runs on, under its own name again.
                if let Err(e) = restore {
                    log::warn!("restoring the command name after a failed exec: {e}");
                }
                drop(lent.image.take());
                get.map_err(task.error("prctl"))?;
                set.map_err(task.error("prctl"))?;
                Err(task.error("execve")(e))
            }
            Err(e @ SyscallError::NotSent(_)) => {
                if over(&get) && over(&set) && over(&restore) {
                    drop(lent.image.take());
                }
                Err(task.error("execve")(e))
            }
            Ok(_) | Err(SyscallError::Hangup) => {
                // The process exec'd or died: its old address space is gone either way,
                // and the connection with it (the block cannot be freed any more).
                std::mem::forget(lent.image.take());
                if set.is_err() && !matches!(set, Err(SyscallError::Hangup)) {
                    return Err(unknown(std::io::Error::other(format!(
                        "the marker name was not set: {set:?}"
                    ))));
                }
                match bootstrapped_exec_end(&pidfd, task.pid()).await? {
                    true => {
                        self.debug_event(format_args!("exec'd {:?}", command.path()));
                        Ok(())
                    }
                    false => Err(task.error("execve")(SyscallError::Hangup)),
                }
            }
        }
    }
}

/// The command name a bootstrapped thread has during its exec: with a `/`, which no
/// exec'd program's name has.
const EXEC_MARKER: &[u8] = b"rsyscall/exec";

/// A bootstrapped thread's connection, and whether its exec watch is installed.
pub(crate) struct ExecWatch {
    /// The thread's connection, to end when the futex helper exits.
    conn: Arc<SyscallConnection>,
    /// Whether the `set_tid_address` word and its futex helper are in place; locked for
    /// the whole of an exec.
    installed: async_lock::Mutex<bool>,
}

impl std::fmt::Debug for ExecWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecWatch")
    }
}

/// The argv/envp block of an exec in flight: dropped with the future, it is kept by the
/// connection until every request sent is over.
struct Lent {
    image: Option<rsyscall_handle::WrittenPointer<[u8]>>,
    sysif: Arc<dyn near::SyscallInterface>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(image) = self.image.take() {
            self.sysif.keep_until_answered(Box::new(image));
        }
    }
}

/// An exec whose end cannot be told: `source` says why (the I/O error of reading `/proc`
/// keeps its errno, such as `EMFILE`).
fn unknown(source: std::io::Error) -> Error {
    Error::Io {
        what: "telling a completed exec from a death",
        source,
    }
}
/// Gives `thread` a `set_tid_address` word, which the kernel clears (and wakes) when the
/// process execs or exits, and a futex helper in its address space watching it, whose
/// exit ends `conn`. The word is never freed: the kernel may write it for the life of
/// the process's address space.
async fn install_exec_watch(thread: Thread, conn: Arc<SyscallConnection>) -> Result<()> {
    let task = thread.task();
    let word = task.alloc(4, 4).await?;
    word.write(0, &1u32.to_ne_bytes()).await?;
    let addr = word.addr_at(0)?;
    // From the syscall on, the kernel may write the word at any time.
    std::mem::forget(word);
    // SAFETY: `addr` is a 4-byte word of the thread's memory that is never freed or
    // reused (forgotten above); the kernel writes 0 there when the thread execs or exits.
    unsafe {
        task.sysif().syscall(near::Request::new(
            libc::SYS_set_tid_address,
            [addr.as_u64() as i64, 0, 0, 0, 0, 0],
        ))
    }
    .await
    .map_err(task.error("set_tid_address"))?;
    let (helper, watch, mem) = thread
        .remote_futex_helper(CLONE::empty(), None, addr)
        .await?;
    // The helper exits once the thread exec'd or exited; its stack is freed only after
    // it was reaped.
    helper.reap_when_exits(Box::new(mem));
    conn.hangup_on(watch).map_err(io("registering a pidfd"))
}

/// Whether the bootstrapped process `pidfd` (local), whose connection was lost during its
/// exec, completed the exec (`true`) or died first (`false`): see
/// [`Thread::exec_bootstrapped`]. A process in the middle of its exec (its memory
/// released, not yet renamed) is looked at again, briefly.
async fn bootstrapped_exec_end(pidfd: &OwnedFd, pid: near::Pid) -> Result<bool> {
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_micros(50);
    loop {
        let (comm, state, flags) = crate::thread::proc_stat(pidfd.as_fd()).map_err(unknown)?;
        if !comm.contains(&b'/') {
            return Ok(true);
        }
        if flags & crate::thread::PF_EXITING != 0 || matches!(state, 'Z' | 'X') {
            return Ok(false);
        }
        if std::time::Instant::now() >= deadline {
            return Err(unknown(std::io::Error::other(format!(
                "pid {} neither finished its exec nor died within 5 seconds",
                pid.as_raw()
            ))));
        }
        async_io::Timer::after(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A bootstrapped thread's connection as its allocator sees it: each call goes to the
/// connection while any task holds it, and fails as [`NotSent::Closed`] (it certainly did
/// not run) once none does.
#[derive(Debug)]
struct WeakConnection(Weak<SyscallConnection>);

/// The failure of a call made after the connection was dropped.
fn gone<'a, T: Send + 'a>() -> BoxFuture<'a, std::result::Result<T, SyscallError>> {
    Box::pin(std::future::ready(Err(SyscallError::NotSent(
        NotSent::Closed,
    ))))
}

impl near::SyscallInterface for WeakConnection {
    unsafe fn syscall(&self, request: near::Request) -> near::SyscallFuture<'_> {
        let Some(conn) = self.0.upgrade() else {
            return gone();
        };
        Box::pin(async move {
            // SAFETY: forwarded from the caller.
            unsafe { near::SyscallInterface::syscall(&*conn, request) }.await
        })
    }

    unsafe fn syscall_no_response(&self, request: near::Request) -> near::SyscallFuture<'_> {
        let Some(conn) = self.0.upgrade() else {
            return gone();
        };
        Box::pin(async move {
            // SAFETY: forwarded from the caller.
            unsafe { near::SyscallInterface::syscall_no_response(&*conn, request) }.await
        })
    }

    unsafe fn syscall_new_fd(&self, request: near::Request) -> near::SyscallFuture<'_> {
        let Some(conn) = self.0.upgrade() else {
            return gone();
        };
        Box::pin(async move {
            // SAFETY: forwarded from the caller.
            unsafe { near::SyscallInterface::syscall_new_fd(&*conn, request) }.await
        })
    }

    unsafe fn syscall_recorded(
        &self,
        request: near::Request,
        cell: near::ResultCell,
    ) -> near::SyscallFuture<'_> {
        let Some(conn) = self.0.upgrade() else {
            return gone();
        };
        Box::pin(async move {
            // SAFETY: forwarded from the caller.
            unsafe { near::SyscallInterface::syscall_recorded(&*conn, request, cell) }.await
        })
    }

    fn set_label(&self, label: near::ThreadLabel) {
        if let Some(c) = self.0.upgrade() {
            near::SyscallInterface::set_label(&*c, label);
        }
    }

    fn label(&self) -> near::ThreadLabel {
        self.0.upgrade().map_or(near::ThreadLabel::UNLABELLED, |c| {
            near::SyscallInterface::label(&*c)
        })
    }

    fn is_hung_up(&self) -> bool {
        self.0.upgrade().is_none_or(|c| c.is_hung_up())
    }

    fn keep_until_answered(&self, keep: Box<dyn std::any::Any + Send>) {
        match self.0.upgrade() {
            Some(conn) => near::SyscallInterface::keep_until_answered(&*conn, keep),
            // Nothing can tell when a syscall sent on it ended: never reuse the memory.
            None => std::mem::forget(keep),
        }
    }
}

impl Transport for WeakConnection {
    unsafe fn write<'a>(
        &'a self,
        dest: near::Address,
        data: &'a [u8],
    ) -> BoxFuture<'a, std::result::Result<(), SyscallError>> {
        let Some(conn) = self.0.upgrade() else {
            return gone();
        };
        Box::pin(async move {
            // SAFETY: forwarded from the caller.
            unsafe { Transport::write(&*conn, dest, data) }.await
        })
    }

    unsafe fn read(
        &self,
        src: near::Address,
        len: usize,
    ) -> BoxFuture<'_, std::result::Result<Vec<u8>, SyscallError>> {
        let Some(conn) = self.0.upgrade() else {
            return gone();
        };
        Box::pin(async move {
            // SAFETY: forwarded from the caller.
            unsafe { Transport::read(&*conn, src, len) }.await
        })
    }
}

/// [`Thread::from_bootstrap`], for a process on this host (`host` is `None`: fds pass
/// over the data socket) or on another one (`host`: channels go through its forward).
///
/// # Safety
/// As [`Thread::from_bootstrap`].
pub(crate) async unsafe fn bootstrap_thread(
    parts: BootstrapParts,
    host: Option<crate::host::HostAccess>,
    kind: near::ThreadKind,
) -> Result<Thread> {
    let pid = near::Pid::new(parts.pid);
    let conn: Arc<SyscallConnection> = Arc::new(
        SyscallConnection::new(
            parts.syscall_sock,
            near::FileDescriptor::new(parts.syscall_fd),
        )
        .map_err(|source| Error::Io {
            what: "registering a bootstrapped thread's connection",
            source,
        })?,
    );
    near::SyscallInterface::set_label(&*conn, near::ThreadLabel::new(kind, parts.pid));
    // The allocator reaches the process through a weak reference: memory a cancelled
    // syscall may still use is kept by the connection until answered, and a strong
    // reference back would keep the connection, its socket and so the process alive
    // for good once every handle is gone.
    let weak = Arc::new(WeakConnection(Arc::downgrade(&conn)));
    // SAFETY: the caller's promises: `conn` runs syscalls in one process, of pid `pid`
    // in its own namespace, whose address space and fd table are its own; `weak`
    // reaches that address space in-band over the same connection (or fails once the
    // connection is gone).
    let RemoteTask { task, .. } =
        unsafe { remote_task(conn.clone(), weak.clone(), weak, Some(pid)) }.await?;
    // SAFETY: `data_fd` is the process's end of the data socket, owned by nothing else
    // (the caller's promise); the connection owns it from now on.
    let remote =
        unsafe { FileDescriptor::from_raw(&task, near::FileDescriptor::new(parts.data_fd)) };
    // A thread on another host gets its channels through the host's forward: the data
    // socket cannot pass fds across ssh, and is closed at both ends.
    let connection = if host.is_some() {
        drop((remote, parts.data_sock));
        None
    } else {
        Some(Connection::new(parts.data_sock, remote))
    };
    let environ = SharedEnvironment::new(Environment::from_strings(
        parts.environment.into_iter().map(OsString::into_vec),
    ));
    let thread = Thread::from_parts(
        task,
        connection,
        environ,
        None,
        Some(near::FileDescriptor::new(parts.syscall_fd)),
        Some(parts.symbols),
    );
    let watch = ExecWatch {
        conn,
        installed: async_lock::Mutex::new(false),
    };
    let _ = thread.inner.bootstrapped.set(Arc::new(watch));
    thread.created(kind, parts.pid, format_args!("bootstrapped"));
    if let Some(host) = host {
        let _ = thread.set_host(host);
    }
    Ok(thread)
}

/// Reads exactly `buf.len()` bytes from `helper`'s data socket; `what` names them in the
/// error.
pub(crate) async fn read_exact(
    sock: &Async<UnixStream>,
    buf: &mut [u8],
    helper: &'static str,
    what: &str,
) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = (&*sock)
            .read(&mut buf[done..])
            .await
            .map_err(|source| Error::Io {
                what: "reading a helper's data socket",
                source,
            })?;
        if n == 0 {
            return Err(Error::Handshake {
                helper,
                detail: if done == 0 {
                    format!(
                        "{NOTHING_SENT} {what} (nothing was sent): the helper ended, or \
                         closed the socket, before describing itself (its stderr may say \
                         why); {}",
                        helper_advice(helper)
                    )
                } else {
                    format!(
                        "{what} is truncated: {done} of {} bytes arrived: the helper ended \
                         midway, or speaks another version of the protocol; {}",
                        buf.len(),
                        helper_advice(helper)
                    )
                },
            });
        }
        done += n;
    }
    Ok(())
}

/// Reads `count` strings (each a `u64` length and its bytes) from `helper`'s data socket.
pub(crate) async fn read_strings(
    sock: &Async<UnixStream>,
    count: u64,
    helper: &'static str,
) -> Result<Vec<OsString>> {
    if count > MAX_ENV_STRINGS {
        return Err(Error::Handshake {
            helper,
            detail: format!(
                "it announced {count} strings (more than {MAX_ENV_STRINGS}); {}",
                helper_advice(helper)
            ),
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let mut len = [0u8; 8];
        read_exact(sock, &mut len, helper, &format!("the length of string {i}")).await?;
        let len = u64::from_le_bytes(len);
        if len > MAX_STRING_LEN {
            return Err(Error::Handshake {
                helper,
                detail: format!(
                    "string {i} is {len} bytes long (at most {MAX_STRING_LEN}); {}",
                    helper_advice(helper)
                ),
            });
        }
        let mut s = vec![0u8; len as usize];
        read_exact(sock, &mut s, helper, &format!("string {i}")).await?;
        out.push(OsString::from_vec(s));
    }
    Ok(out)
}

/// Reads and checks a stdin bootstrap's describe struct and environment.
async fn read_stdin_describe(
    sock: &Async<UnixStream>,
) -> Result<(StdinBootstrapDescribe, Vec<OsString>)> {
    let mut buf = [0u8; StdinBootstrapDescribe::SIZE];
    read_exact(sock, &mut buf, STDIN_BOOTSTRAP, "the describe struct").await?;
    let d = StdinBootstrapDescribe::from_bytes(&buf);
    let fds = [d.syscall_fd, d.data_fd, d.connecting_fd];
    let distinct = fds[0] != fds[1] && fds[1] != fds[2] && fds[0] != fds[2];
    if d.pid <= 0 || fds.iter().any(|&fd| fd < 0) || !distinct {
        return Err(Error::Handshake {
            helper: STDIN_BOOTSTRAP,
            detail: format!(
                "malformed describe struct: pid {}, syscall fd {}, data fd {}, connecting fd \
                 {} (a positive pid and three distinct fds were expected); {}",
                d.pid,
                d.syscall_fd,
                d.data_fd,
                d.connecting_fd,
                helper_advice(STDIN_BOOTSTRAP)
            ),
        });
    }
    let env = read_strings(sock, d.envp_count, STDIN_BOOTSTRAP).await?;
    Ok((d, env))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Runs `command` in a child of `thread` with the stdin bootstrap helper's path appended
/// to its arguments and a socket as its stdin, and turns the helper into a [`Thread`]
/// ([`Thread::from_bootstrap`]). For launchers that pass their stdin on to the program
/// they run: `sudo -u nobody`, `env`, `setpriv ...`, `chroot DIR` ... The helper must be
/// executable by whoever the launcher runs it as (see
/// [`libexec::helper_path`](crate::libexec::helper_path); copy it somewhere they can
/// reach and set `RSYSCALL_LIBEXEC_DIR` if need be).
///
/// Returns the launcher's process (for `env` and other launchers that exec, that is the
/// helper itself; for `sudo`, sudo, which ends when the helper does) and the new thread.
/// The thread's stdin is the socket its sockets came on (at EOF: our end is closed once
/// it described itself), its stdout the launcher's (which
/// is `thread`'s), and its stderr `thread`'s stderr, set once it described itself. The
/// launcher's own stderr is a memory file, read only to report its failure.
///
/// # Examples
///
/// A thread through `env` (a launcher that execs what it is given), used, then ended:
///
/// ```
/// # use rsyscall_thread::{local_thread, stdin_bootstrap};
/// # use rsyscall_handle::ChildState;
/// # async_io::block_on(async {
/// let env = local_thread().environ().which("env").await?;
/// let (launcher, thread) = stdin_bootstrap(&local_thread(), env).await?;
/// assert_eq!(thread.task().getpid().await?, launcher.pid());
/// assert!(thread.environ().get("PATH").is_some());
/// thread.exit(0).await?;
/// assert_eq!(launcher.wait().await?, ChildState::Exited(0));
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
/// - [`Error::LauncherFailed`] with its exit state and what it wrote on stderr, if the
///   launcher ended before the helper described itself (sudo refusing, a missing
///   program, a helper it could not execute);
/// - [`Error::Handshake`] if the helper (or whatever the launcher ran) sent a truncated
///   or malformed describe struct, or closed the socket without one while the launcher
///   kept running; the launcher is killed and reaped then;
/// - [`Error::Helper`] if the helper binary is not found; the errors of clone and exec.
///
/// # Cancellation
/// It waits until the helper describes itself or the launcher ends: a launcher that does
/// neither (one waiting for a password on a terminal) makes it wait. Dropping the future
/// then drops the launcher's monitor, which does not kill it: the launcher, its helper
/// and the sockets go when it ends (the helper's server ends at once, its socket's other
/// end being closed).
pub async fn stdin_bootstrap(
    thread: &Thread,
    command: Command,
) -> Result<(AsyncChildProcess, Thread)> {
    let helper = crate::libexec::helper_path(STDIN_BOOTSTRAP)?;
    stdin_bootstrap_with_helper(thread, command, &helper).await
}

/// [`stdin_bootstrap`] running the helper binary at `helper` (a path as the launched
/// program sees it): for a copy the launcher's user can execute when the libexec
/// directory is not reachable for them (a checkout under a home directory of mode 0700),
/// or a helper speaking the same protocol.
///
/// # Errors
/// As [`stdin_bootstrap`].
pub async fn stdin_bootstrap_with_helper(
    thread: &Thread,
    command: Command,
    helper: &std::path::Path,
) -> Result<(AsyncChildProcess, Thread)> {
    let (syscall_ours, syscall_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
    let (data_ours, data_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
    let (_connecting_ours, connecting_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
    let (stdin_ours, stdin_theirs) = UnixStream::pair().map_err(io("socketpair"))?;
    let local = Task::local();
    let stderr_file = local
        .memfd_create(b"rsyscall-launcher-stderr", MFD::CLOEXEC)
        .await?;
    let stderr_local = stderr_file
        .as_local_fd()
        .ok_or_else(|| Error::invalid("stdin_bootstrap", "memfd not local"))?
        .try_clone_to_owned()
        .map_err(io("duplicating a memfd"))?;

    // The helper's sockets go out first: they wait on its stdin until it reads them.
    let raw = [
        syscall_theirs.as_raw_fd(),
        data_theirs.as_raw_fd(),
        connecting_theirs.as_raw_fd(),
    ];
    sock::sendmsg::<()>(
        stdin_ours.as_raw_fd(),
        &[IoSlice::new(&[0])],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Error::Io {
        what: "sending a helper its sockets",
        source: e.into(),
    })?;
    drop((syscall_theirs, data_theirs, connecting_theirs));

    let launcher = thread.clone(CLONE::empty()).await?;
    let stdin_copy = OwnedFd::from(stdin_theirs);
    let mut moved = launcher
        .local_to_thread(vec![
            stdin_copy,
            stderr_local.try_clone().map_err(io("dup"))?,
        ])
        .await?
        .into_iter();
    let (Some(stdin_fd), Some(stderr_fd)) = (moved.next(), moved.next()) else {
        return Err(Error::invalid("stdin_bootstrap", "fds did not arrive"));
    };
    launcher.task().dup2(&stdin_fd, &launcher.stdin()).await?;
    launcher.task().dup2(&stderr_fd, &launcher.stderr()).await?;
    drop((stdin_fd, stderr_fd));
    let command = command.arg(helper);
    let description = command.to_string();
    let process = launcher.exec(command).await?;

    let data = Async::new(data_ours).map_err(io("registering a data socket"))?;
    let read_stderr = || {
        let mut buf = vec![0u8; STDERR_KEPT];
        let n = std::fs::File::from(stderr_local.try_clone().ok()?)
            .read_at(&mut buf, 0)
            .ok()?;
        buf.truncate(n);
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    enum Outcome {
        Described(Result<(StdinBootstrapDescribe, Vec<OsString>)>),
        Ended(Result<rsyscall_handle::ChildState>),
    }
    let outcome = futures_lite::future::or(
        async { Outcome::Described(read_stdin_describe(&data).await) },
        async { Outcome::Ended(process.wait().await) },
    )
    .await;
    let described = match outcome {
        Outcome::Described(Ok(d)) => d,
        Outcome::Described(Err(e)) => {
            // The helper hung up or lied. A launcher that failed is exiting: it gets a
            // moment to, and is killed otherwise.
            // Only a helper that sent nothing at all may have been a launcher failing.
            let lied =
                !matches!(&e, Error::Handshake { detail, .. } if detail.starts_with(NOTHING_SENT));
            let ended = futures_lite::future::or(async { Some(process.wait().await) }, async {
                async_io::Timer::after(LAUNCHER_GRACE).await;
                None
            })
            .await;
            return Err(match ended {
                Some(Ok(state)) if !lied => Error::LauncherFailed {
                    command: description,
                    state,
                    stderr: read_stderr().unwrap_or_default(),
                },
                Some(_) => e,
                None => {
                    let _ = process.kill(Signal::SIGKILL).await;
                    let _ = process.wait().await;
                    e
                }
            });
        }
        Outcome::Ended(state) => {
            let state = state?;
            // A helper that lied and exited at once may end before its lie is read: what
            // it sent is still in the socket, and decides which error this is.
            let late =
                futures_lite::future::or(async { Some(read_stdin_describe(&data).await) }, async {
                    async_io::Timer::after(LAUNCHER_GRACE).await;
                    None
                })
                .await;
            return Err(match late {
                Some(Err(e @ Error::Handshake { .. })) if !matches!(&e, Error::Handshake { detail, .. } if detail.starts_with(NOTHING_SENT)) => {
                    e
                }
                _ => Error::LauncherFailed {
                    command: description,
                    state,
                    stderr: read_stderr().unwrap_or_default(),
                },
            });
        }
    };
    let (d, environment) = described;
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
    // SAFETY: the process that described itself received our sockets through the
    // launcher's stdin, which only the launcher's exec'd program (and what it runs) can
    // read: an exec'd process, whose address space and table are its own; the fds it
    // named are the ones it received, its own.
    let new = match unsafe { bootstrap_thread(parts, None, near::ThreadKind::StdinBootstrap) }.await
    {
        Ok(t) => t,
        Err(e) => {
            let _ = process.kill(Signal::SIGKILL).await;
            let _ = process.wait().await;
            return Err(e);
        }
    };
    // Its stderr becomes the caller's thread's.
    let ours = thread.thread_to_local(&thread.stderr()).await?;
    if let Some(theirs) = new.local_to_thread(vec![ours]).await?.pop() {
        new.task().dup2(&theirs, &new.stderr()).await?;
    }
    // The stdin socket's other end is closed: the thread reads EOF on its stdin.
    drop(stdin_ours);
    Ok((process, new))
}
