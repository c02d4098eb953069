//! `Thread` and `ChildThread`: a process we control, with its task, connection,
//! environment and standard streams, and `exec` (`clone` is in `clone.rs`).
//!
//! # Safety
//! `exec` lends the child memory holding argv and envp. It is freed only once no kernel can
//! read it: when the requests were answered or never sent, or once `/proc` shows that the
//! child exec'd or is exiting; until then it is kept with the child, whose drop frees it
//! only after the child is reaped. The requests it sends take only pointers into that
//! memory.
//! The standard streams are borrowed handles to fds 0, 1 and 2 (see `std_fd` for why
//! that is sound).
#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rsyscall_handle::{
    ChildProcess, Error, FileDescriptor, Pipe, Result, Task, WrittenPointer, local_namespaces,
};
use rsyscall_near::{self as near, Signal};
use rsyscall_server::proto::SymbolTable;

use crate::command::{Command, Environment, SharedEnvironment};
use crate::connection::Connection;
use crate::monitor::AsyncChildProcess;

pub(crate) struct ThreadInner {
    pub(crate) task: Task,
    /// Moves fds between the local table and this thread's; `None` when this thread uses
    /// the local table itself.
    /// Set at creation, or by `unshare_files` for a thread that had used the local table.
    pub(crate) connection: std::sync::OnceLock<Connection>,
    /// Its environment, changed through [`EnvironmentRef::set`] and
    /// [`EnvironmentRef::remove`].
    pub(crate) environ: SharedEnvironment,
    /// The number of the thread's syscall server socket in its own table, if it has one.
    pub(crate) server_fd: Option<near::FileDescriptor>,
    /// This thread's parent in the kernel's sense, the thread that waits for it, if it is
    /// a thread we drive: the thread it was cloned from, or with `CLONE_PARENT` that
    /// thread's parent. `Thread::clone` gives children to this thread when it can.
    pub(crate) parent: Option<Thread>,
    /// The thread's own epoller inside its process, once made; until then its fds are
    /// watched by the local process's reactor.
    pub(crate) root_epoller: crate::epoller::RootSlot,
    /// The addresses of the protocol's entry points in the thread's address space
    /// (PROTOCOL.md section 3): this program's own for threads sharing our memory, the
    /// describing helper's for bootstrapped threads. Clones from the thread run these.
    /// `None` where they are unknown (a persistent thread attached to from another
    /// program, whose memory is not ours): such a thread cannot clone.
    pub(crate) symbols: Option<SymbolTable>,
    /// A persistent thread's reconnectable interface, which knows the fds its server owns.
    pub(crate) persistent: std::sync::OnceLock<Arc<crate::persistent::Reconnecting>>,
    /// A bootstrapped thread's connection and exec watch ([`Thread::exec_bootstrapped`]).
    pub(crate) bootstrapped: std::sync::OnceLock<Arc<crate::bootstrap::ExecWatch>>,
    /// For a thread on another host: how channels with the local process are made
    /// (replaced when a persistent thread there reconnects over another ssh session).
    pub(crate) host: std::sync::Mutex<Option<crate::host::HostAccess>>,
    /// A clone child made without a futex helper: what is needed to start one before the
    /// child makes a process that could hold its server socket ([`crate::clone`]).
    pub(crate) lazy_helper: async_lock::Mutex<Option<crate::clone::LazyHelper>>,
}

/// A process we control: its [`Task`] (every syscall), how fds reach it, its environment
/// and its standard streams.
///
/// `Thread` does not implement [`Clone`]: [`Thread::clone`] is the reference's name for
/// making a child process. [`Thread::duplicate`] gives another handle to the same thread.
///
/// # Examples
///
/// The local thread, and a child process that runs our syscalls until it exits:
///
/// ```
/// # use rsyscall_thread::local_thread;
/// # use rsyscall_near::CLONE;
/// # use rsyscall_handle::ChildState;
/// # async_io::block_on(async {
/// let parent = local_thread();
/// let child = parent.clone(CLONE::empty()).await?;
/// let pid = child.task().getpid().await?;
/// assert_ne!(pid.as_raw() as u32, std::process::id());
/// assert_eq!(child.task().getppid().await?.as_raw() as u32, std::process::id());
/// let process = child.exit(0).await?;
/// assert_eq!(process.wait().await?, ChildState::Exited(0));
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
pub struct Thread {
    pub(crate) inner: Arc<ThreadInner>,
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thread(pid {})", self.inner.task.pid().as_raw())
    }
}

/// The thread for the local process: syscalls run directly in the calling thread.
pub fn local_thread() -> Thread {
    static LOCAL: std::sync::OnceLock<Thread> = std::sync::OnceLock::new();
    LOCAL
        .get_or_init(|| {
            let task = Task::local();
            let environ = SharedEnvironment::new(Environment::from_local());
            let thread = Thread::from_parts(
                task,
                None,
                environ,
                None,
                None,
                Some(rsyscall_server::symbol_table()),
            );
            thread.created(
                near::ThreadKind::Local,
                std::process::id() as i32,
                format_args!("the local process"),
            );
            make_reactor();
            thread
        })
        .duplicate()
}

/// Makes async-io's reactor now, while the program has fds to spare. async-io makes it
/// (an epoll fd, an eventfd and a timerfd) on first use and panics if it cannot; left to
/// the first clone, that use can come after a burst of clones took every fd (`EMFILE`),
/// and the panic would replace the library's typed error. Registering any fd makes it.
fn make_reactor() {
    let made = std::os::unix::net::UnixStream::pair()
        .and_then(|(ours, _theirs)| async_io::Async::new(ours).map(drop));
    if let Err(e) = made {
        log::warn!("cannot make async-io's reactor yet: {e}");
    }
}

/// The result of [`Thread::environ`]: the thread's environment, with lookups done through
/// the thread itself.
///
/// The environment can be changed ([`EnvironmentRef::set`], [`EnvironmentRef::remove`]):
/// every handle to the thread sees the change, and so do its later [`which`] lookups and
/// [`exec`](ChildThread::exec)s (the default environment of a [`Command`]). A thread
/// cloned from it starts with a copy. Nothing changes in the process itself: the
/// environment is what the programs it execs get. The local thread's environment is the
/// one every [`local_thread`] handle shares, initially the program's own.
///
/// [`which`]: EnvironmentRef::which
#[derive(Clone, Copy)]
pub struct EnvironmentRef<'a> {
    thread: &'a Thread,
}

impl EnvironmentRef<'_> {
    /// A copy of the variables as they are now.
    pub fn vars(&self) -> Environment {
        self.thread.inner.environ.read().clone()
    }

    /// A variable's value.
    pub fn get(&self, key: impl AsRef<OsStr>) -> Option<OsString> {
        self.thread
            .inner
            .environ
            .read()
            .get(key)
            .map(OsStr::to_owned)
    }

    /// Sets a variable, for every handle to this thread.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty name, a name containing `=`, or a NUL byte
    /// in either (exec could not pass them on).
    pub fn set(&self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let bad_key = key.is_empty() || key.as_bytes().iter().any(|&b| b == b'=' || b == 0);
        if bad_key || value.as_bytes().contains(&0) {
            return Err(Error::invalid(
                "set",
                format!(
                    "{key:?}={value:?}: a name must be non-empty, without '=' or NUL; a value without NUL"
                ),
            ));
        }
        self.thread.inner.environ.write().set(key, value);
        Ok(())
    }

    /// Removes a variable (if set), for every handle to this thread.
    pub fn remove(&self, key: impl AsRef<OsStr>) {
        self.thread.inner.environ.write().remove(key);
    }

    /// Finds `name` in the thread's `PATH` (checked for execute permission by the thread
    /// itself, in its own mount namespace) and returns a [`Command`] for it with argv\[0\]
    /// `name`. A name containing `/` is checked where it is, the same way (see
    /// [`Environment::which_cached`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the directories searched (or the path) if there is no
    /// such executable; as [`Environment::which_cached`].
    pub async fn which(&self, name: &str) -> Result<Command> {
        self.thread
            .inner
            .environ
            .which(&self.thread.inner.task, name)
            .await
    }
}

impl Thread {
    /// How this thread is named in logs: its kind (local, clone child, stub, ssh host...)
    /// and pid. Every syscall it runs is logged at `trace` level with this label, and its
    /// creation, exec, exit and hangup at `debug` (see [`near::trace`]).
    pub fn label(&self) -> near::ThreadLabel {
        self.inner.task.sysif().label()
    }

    /// Names this new thread `kind` with pid `pid` in logs and logs its creation, `how`
    /// it was made, at `debug` level.
    pub(crate) fn created(&self, kind: near::ThreadKind, pid: i32, how: fmt::Arguments<'_>) {
        let label = near::ThreadLabel::new(kind, pid);
        self.inner.task.sysif().set_label(label);
        if near::trace::thread_debug_enabled() {
            near::trace::debug_thread(label, format_args!("created: {how}"));
        }
    }

    /// Logs a lifecycle event of this thread at `debug` level.
    pub(crate) fn debug_event(&self, what: fmt::Arguments<'_>) {
        if near::trace::thread_debug_enabled() {
            near::trace::debug_thread(self.label(), what);
        }
    }

    /// Another handle to this same thread: cheap, it shares everything (the task, the
    /// connection, the environment). [`Thread::clone`] makes a child process instead.
    pub fn duplicate(&self) -> Thread {
        Thread {
            inner: Arc::clone(&self.inner),
        }
    }

    pub(crate) fn from_parts(
        task: Task,
        connection: Option<Connection>,
        environ: SharedEnvironment,
        parent: Option<Thread>,
        server_fd: Option<near::FileDescriptor>,
        symbols: Option<SymbolTable>,
    ) -> Thread {
        // Every thread of another fd table is made here: from now on a dropped handle of
        // such a table has its close sent soon.
        rsyscall_handle::set_close_flusher(crate::reaper::delay_close_flush);
        Thread {
            inner: Arc::new(ThreadInner {
                task,
                connection: connection
                    .map(std::sync::OnceLock::from)
                    .unwrap_or_default(),
                environ,
                parent,
                server_fd,
                root_epoller: Default::default(),
                symbols,
                persistent: Default::default(),
                bootstrapped: Default::default(),
                host: Default::default(),
                lazy_helper: Default::default(),
            }),
        }
    }

    /// The task: every syscall is a method on it.
    pub fn task(&self) -> &Task {
        &self.inner.task
    }

    /// Whether the thread is known to be gone: its process died, exec'd or exited, and
    /// every syscall on it now fails with a hangup. Known once a request has seen it.
    pub fn is_dead(&self) -> bool {
        self.inner.task.sysif().is_hung_up()
    }

    /// The environment.
    pub fn environ(&self) -> EnvironmentRef<'_> {
        EnvironmentRef { thread: self }
    }

    /// A handle to fd `n` of the table this thread uses now, which never closes it.
    fn std_fd(&self, n: i32) -> FileDescriptor {
        // SAFETY: fds 0, 1 and 2 are open in every table a thread uses, and none is an fd
        // this crate relies on: the local process's are kept open by std (which opens
        // /dev/null on any that is closed at startup, and treats replacing them as sound);
        // a child's table starts as a copy of its parent's, where they were open, so the
        // fds made for the child before the copy (its syscall socket) got higher numbers;
        // and nothing here closes them (`reserved_fds` keeps them). Replacing them is what
        // they are for (redirecting a child's output before exec).
        unsafe { FileDescriptor::borrowed(&self.inner.task, near::FileDescriptor::new(n)) }
    }

    /// fd 0 of this thread, in the table it uses now (the handle never closes it).
    pub fn stdin(&self) -> FileDescriptor {
        self.std_fd(0)
    }

    /// fd 1 of this thread, in the table it uses now (the handle never closes it).
    pub fn stdout(&self) -> FileDescriptor {
        self.std_fd(1)
    }

    /// fd 2 of this thread, in the table it uses now (the handle never closes it).
    pub fn stderr(&self) -> FileDescriptor {
        self.std_fd(2)
    }

    /// Whether this thread uses the local process's fd table.
    pub(crate) fn uses_local_table(&self) -> bool {
        self.inner.task.fd_table().id() == local_namespaces().fd_table
    }

    /// A pipe in this thread's table.
    ///
    /// # Errors
    /// See [`Task::pipe`].
    pub async fn pipe(&self) -> Result<Pipe> {
        self.inner.task.pipe().await
    }

    /// Reads `fd` until EOF.
    ///
    /// # Errors
    /// See [`Task::read_bytes`].
    pub async fn read_to_eof(&self, fd: &FileDescriptor) -> Result<Vec<u8>> {
        self.inner.task.read_to_eof(fd).await
    }

    /// Ends this thread with `exit(status)`: the reference's `Thread.exit`, for any thread
    /// run by a syscall server (a child thread through any of its handles, or a thread
    /// further down). Returns once the thread is gone, also if it already was; how it ended
    /// is for its parent to see ([`ChildThread::exit`] hands over the monitor for that).
    ///
    /// The local thread is refused: its syscalls run on the calling OS thread, which
    /// `exit` would end under the executor, leaving the program half alive. End the
    /// program instead (`std::process::exit`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the local thread; [`NotSent`](near::NotSent) if this
    /// side shut the connection down.
    pub async fn exit(&self, status: i32) -> Result<()> {
        let task = &self.inner.task;
        if task.sysif().is_local() {
            return Err(Error::invalid(
                "exit",
                "the local thread runs on the calling OS thread of this program; end the program instead",
            ));
        }
        // SAFETY: exit ends the thread's server, a process of its own; nothing of ours
        // runs on its stack, which it no longer uses once gone.
        match unsafe { near::exit(task.sysif(), status) }.await {
            // Sent and answered by the end of the connection, or not sent because the
            // connection was already lost: either way the thread is gone.
            Ok(_) | Err(near::SyscallError::Hangup) => {
                self.debug_event(format_args!("exited: exit({status})"));
                Ok(())
            }
            Err(e) => Err(task.error("exit")(e)),
        }
    }

    /// The connection that moves fds between the local table and this thread's, if the
    /// thread does not use the local table itself.
    pub fn connection(&self) -> Option<&Connection> {
        self.inner.connection.get()
    }

    /// The error for a table the local process cannot reach.
    fn unreachable_table(&self, what: &'static str) -> Error {
        Error::invalid(
            what,
            format!(
                "the local process has no connection to the fd table of pid {}",
                self.inner.task.pid().as_raw()
            ),
        )
    }

    /// Copies local fds into this thread's table: directly when it uses the local table,
    /// else over its connection, one `SCM_RIGHTS` message per 253 fds.
    pub(crate) async fn local_to_thread(&self, fds: Vec<OwnedFd>) -> Result<Vec<FileDescriptor>> {
        let task = &self.inner.task;
        if self.host().is_some() {
            return Err(self.no_fd_passing("moving fds to a thread"));
        }
        if self.uses_local_table() {
            return fds
                .into_iter()
                .map(|fd| FileDescriptor::from_owned_fd(task, fd))
                .collect();
        }
        let conn = self
            .connection()
            .ok_or_else(|| self.unreachable_table("moving fds to a thread"))?;
        let mut out = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(253) {
            let borrowed: Vec<_> = chunk.iter().map(|f| f.as_fd()).collect();
            out.extend(conn.send_to_remote(task, &borrowed).await?);
        }
        Ok(out)
    }

    /// Copies an fd of this thread's table into the local one.
    pub(crate) async fn thread_to_local(&self, fd: &FileDescriptor) -> Result<OwnedFd> {
        let task = &self.inner.task;
        task.check_fd(fd)?;
        if let Some(local) = fd.as_local_fd() {
            return local.try_clone_to_owned().map_err(|source| Error::Io {
                what: "duplicating a local fd",
                source,
            });
        }
        if self.host().is_some() {
            return Err(self.no_fd_passing("moving fds from a thread"));
        }
        let conn = self
            .connection()
            .ok_or_else(|| self.unreachable_table("moving fds from a thread"))?;
        conn.recv_from_remote(task, &[fd])
            .await?
            .pop()
            .ok_or_else(|| Error::invalid("thread_to_local", "no fd received"))
    }

    /// Copies `fd`, an fd of the local table (the local thread's, or of a thread sharing
    /// it), into this thread's table; returns the copy, owned by this thread. For fds made
    /// after this thread was cloned, which it therefore did not inherit.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an fd of another table; the connection's errors.
    pub async fn pass_fd(&self, fd: &FileDescriptor) -> Result<FileDescriptor> {
        let borrowed = fd.as_local_fd().ok_or_else(|| {
            Error::invalid(
                "pass_fd",
                "the fd is not in the local table; pass it from the thread that has it",
            )
        })?;
        let copy = borrowed.try_clone_to_owned().map_err(|source| Error::Io {
            what: "duplicating a local fd",
            source,
        })?;
        self.local_to_thread(vec![copy])
            .await?
            .pop()
            .ok_or_else(|| Error::invalid("pass_fd", "no fd arrived"))
    }
}

/// A child process created by [`Thread::clone`], running a syscall server until it execs
/// or exits. Derefs to its [`Thread`].
///
/// Dropping it before [`ChildThread::exec`] or [`ChildThread::exit`] kills the child with
/// `SIGKILL` and has it reaped in the background (see "Dropping and cancellation" in the
/// [crate documentation](crate)).
///
/// # Examples
///
/// Run a program in a fresh child and wait for it:
///
/// ```
/// # use rsyscall_thread::local_thread;
/// # use rsyscall_near::CLONE;
/// # use rsyscall_thread::Command;
/// # use rsyscall_handle::ChildState;
/// # async_io::block_on(async {
/// let child = local_thread().clone(CLONE::empty()).await?;
/// let sh = Command::new("/bin/sh", "sh").args(["-c", "exit 3"]);
/// let process = child.exec(sh).await?;
/// assert_eq!(process.wait().await?, ChildState::Exited(3));
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
pub struct ChildThread {
    thread: Thread,
    parent: Thread,
    /// The child's monitor, until exec or exit hands it over.
    monitor: Option<AsyncChildProcess>,
    pub(crate) _server_sock: FileDescriptor,
    /// Made with `CLONE::SIGHAND`: its signal dispositions are its parent's, so exec must
    /// not reset any (the kernel gives the exec'd program a copy of them).
    shares_sighand: bool,
    /// The argv/envp block of an exec whose end is not known yet: the child's kernel may
    /// still read it. Kept with the child so that dropping an exec future (which drops the
    /// child, killing it) frees the block only once the child is reaped.
    lent: Option<WrittenPointer<[u8]>>,
    /// Its connection, when it is a plain [`SyscallConnection`]: exec sends its requests
    /// together through it ([`SyscallConnection::cork`]).
    pub(crate) connection: std::sync::Weak<crate::SyscallConnection>,
}

impl fmt::Debug for ChildThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChildThread(pid {})",
            self.thread.inner.task.pid().as_raw()
        )
    }
}

impl Deref for ChildThread {
    type Target = Thread;
    fn deref(&self) -> &Thread {
        &self.thread
    }
}

/// [`ChildThread::exec`] failed: the child did not run the program. It is given back; it
/// still runs its server and is usable, unless it died ([`Error::is_hangup`]).
///
/// It displays as its [`error`](ExecError::error), and its [`source`] is that error's
/// source, so that a report walking the chain prints the cause once.
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
pub struct ExecError {
    /// Why exec failed.
    pub error: Error,
    /// The child, back to its caller.
    pub thread: ChildThread,
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl From<ExecError> for Error {
    fn from(e: ExecError) -> Error {
        e.error
    }
}

impl ChildThread {
    pub(crate) fn new(
        thread: Thread,
        parent: Thread,
        monitor: AsyncChildProcess,
        server_sock: FileDescriptor,
        shares_sighand: bool,
    ) -> ChildThread {
        ChildThread {
            thread,
            parent,
            monitor: Some(monitor),
            _server_sock: server_sock,
            shares_sighand,
            lent: None,
            connection: std::sync::Weak::new(),
        }
    }

    /// This child's parent, the thread that waits for it: the thread it was cloned from,
    /// or (with `CLONE::PARENT`, which [`Thread::clone`] adds when it can) that thread's
    /// own parent.
    pub fn parent(&self) -> &Thread {
        &self.parent
    }

    /// The child's process, as its parent sees it.
    pub fn process(&self) -> Option<&ChildProcess> {
        self.monitor.as_ref().map(AsyncChildProcess::process)
    }

    /// The child's pid in its parent's pid namespace.
    pub fn pid(&self) -> Option<near::Pid> {
        self.monitor.as_ref().map(AsyncChildProcess::pid)
    }

    /// This child's handle to `fd`, an fd of its parent's table: the same fd if the child
    /// shares the table, else the copy it inherited when it was created.
    ///
    /// # Errors
    /// [`Error::Mismatch`] / [`Error::InvalidArgument`] if `fd` is not of the parent's table.
    pub fn inherit_fd(&self, fd: &FileDescriptor) -> Result<FileDescriptor> {
        let task = &self.thread.inner.task;
        if task.fd_table().id() == fd.far().table {
            fd.for_task(task)
        } else {
            fd.inherit(task)
        }
    }

    /// Hands over the monitor, now describing `command`.
    /// Gives up killing the child on drop: returns its monitor (which reaps it once it
    /// exits, and never kills it), for a child that must outlive this handle.
    pub(crate) fn release(mut self, command: String) -> Option<AsyncChildProcess> {
        self.take_monitor(command)
    }

    fn take_monitor(&mut self, command: String) -> Option<AsyncChildProcess> {
        let mut monitor = self.monitor.take()?;
        monitor.set_command(command);
        Some(monitor)
    }

    /// Replaces the child's program with `command` (`execve`), first resetting its signal
    /// mask and `SIGPIPE` disposition to the defaults. argv, envp and everything else exec
    /// needs cost one allocation and one memory write. The environment is the thread's
    /// ([`Thread::environ`]) with the command's changes.
    ///
    /// `Ok` means the kernel really replaced the child's image: a successful exec sends no
    /// answer and ends the connection, as a death does, so the kernel's record of the child
    /// is consulted to tell them apart (the program may still die at once, as any program
    /// may; its monitor reports that).
    ///
    /// # Dropping
    /// Dropping the future drops the child, which kills it (see [`ChildThread`]); argv and
    /// envp are freed once it is reaped, never while its exec may still read them.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # use rsyscall_near::CLONE;
    /// # use rsyscall_thread::Command;
    /// # async_io::block_on(async {
    /// let path = std::env::temp_dir().join(format!("rsyscall-doc-exec-{}", std::process::id()));
    /// let script = format!("echo hello > '{}'", path.display());
    /// let child = local_thread().clone(CLONE::empty()).await?;
    /// let process = child.exec(Command::new("/bin/sh", "sh").args(["-c", script.as_str()])).await?;
    /// process.check().await?;
    /// assert_eq!(std::fs::read(&path).unwrap(), b"hello\n");
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`ExecError`] carrying the child: still usable if exec failed (`ENOENT` for a
    /// missing file, `E2BIG`...); dead, with a hangup error ([`Error::is_hangup`]), if it
    /// died (was killed, or already was dead) before its exec completed, so the program
    /// never ran; [`Error::Io`] if `/proc` could not tell which.
    pub async fn exec(self, command: Command) -> std::result::Result<AsyncChildProcess, ExecError> {
        self.exec_with(command, None).await
    }

    async fn exec_with(
        self,
        command: Command,
        envp: Option<Vec<std::ffi::OsString>>,
    ) -> std::result::Result<AsyncChildProcess, ExecError> {
        if let Err(error) = command.validate() {
            return Err(ExecError {
                error,
                thread: self,
            });
        }
        let mut this = self;
        match this.do_exec(&command, envp).await {
            Ok(()) => match this.take_monitor(command.to_string()) {
                Some(monitor) => Ok(monitor),
                None => Err(ExecError {
                    error: Error::invalid("exec", "the child was already exec'd or exited"),
                    thread: this,
                }),
            },
            Err(error) => Err(ExecError {
                error,
                thread: this,
            }),
        }
    }

    /// Sends the signal resets and the execve, and learns how the exec ended. The
    /// argv/envp block is freed as soon as no kernel can read it any more: when the requests
    /// were answered or never sent, or once the child is known to have exec'd or died. While
    /// that is unknown it stays in `self.lent`, freed only after the child is reaped.
    async fn do_exec(
        &mut self,
        command: &Command,
        envp: Option<Vec<std::ffi::OsString>>,
    ) -> Result<()> {
        // A handle of our own, so that `self.lent` can be set while requests borrow the task.
        let thread = self.thread.duplicate();
        let task = thread.task();
        if thread.is_dead() {
            // Known before sending: the request would not even be written.
            return Err(task.error("execve")(near::SyscallError::Hangup));
        }
        if self.lent.is_some() {
            // A block an earlier exec lent may still be read: it must not be replaced
            // (and so freed) by this one.
            return Err(Error::invalid(
                "exec",
                "an earlier exec of this child has not settled; drop the child instead",
            ));
        }
        let envp = match envp {
            Some(envp) => envp,
            None => command.environment(&thread.inner.environ.read()),
        };
        // The program gets the table as it is: closes queued (or in flight from another
        // flush) go out first, so it inherits no fd whose handle is gone.
        task.prepare_to_copy().await;
        // One allocation and one write for everything: a prefix with the sigaction for the
        // SIGPIPE reset (32 zero bytes: SIG_DFL, no flags, empty mask) and the empty signal
        // mask (8 zero bytes), then path, argv and envp.
        let image = task
            .exec_image(&[0u8; 40], command.path(), command.argv(), &envp)
            .await?;
        let (base, path, argv, envp) = (
            image.prefix().as_u64(),
            image.path(),
            image.argv(),
            image.envp(),
        );
        // From here the child's kernel may read the block: it goes with the child (see
        // `lent`) before anything is sent.
        self.lent = Some(image.into_pointer());
        let sysif = task.sysif();
        // The signal resets and the execve go out together: the connection keeps their
        // order, so they cost one round trip.
        let sigaction: near::SyscallFuture<'_> = if self.shares_sighand {
            Box::pin(std::future::ready(Ok(0)))
        } else {
            // SAFETY: the sigaction at `base` is 32 zero bytes (SIG_DFL, no flags, empty
            // mask), and the child's dispositions are its own (no CLONE_SIGHAND).
            unsafe {
                sysif.syscall(near::Request::new(
                    libc::SYS_rt_sigaction,
                    [
                        libc::SIGPIPE as i64,
                        base as i64,
                        0,
                        near::KERNEL_SIGSET_SIZE as i64,
                        0,
                        0,
                    ],
                ))
            }
        };
        // SAFETY: the sigset at `base + 32` is 8 zero bytes; no old set is written.
        let sigmask = unsafe {
            sysif.syscall(near::Request::new(
                libc::SYS_rt_sigprocmask,
                [
                    libc::SIG_SETMASK as i64,
                    (base + 32) as i64,
                    0,
                    near::KERNEL_SIGSET_SIZE as i64,
                    0,
                    0,
                ],
            ))
        };
        // Sent as an ordinary request (not `near::execve`, which counts a lost connection
        // as success): a lost connection is examined below.
        // SAFETY: path, argv and envp were laid out by exec_image, NUL- and
        // NULL-terminated, in the child's address space, and the block is kept in
        // `self.lent` until no kernel can read it.
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
        // Corked for their first poll, which enqueues all three: they go out in one send
        // and wake the child once.
        let mut all = std::pin::pin!(futures_lite::future::zip(
            futures_lite::future::zip(sigaction, sigmask),
            exec
        ));
        let connection = self.connection.upgrade();
        let cork = connection.as_ref().map(|c| c.cork());
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(all.as_mut().poll(cx))).await;
        drop(cork);
        let ((action, mask), exec) = match first {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => all.await,
        };
        // An answered or unsent request no longer reads the block.
        let over = |r: &near::SyscallResult| !matches!(r, Err(near::SyscallError::Hangup));
        match exec {
            Err(e @ (near::SyscallError::Errno(_) | near::SyscallError::OutOfRange(_))) => {
                // Responses come in order: the resets were answered before it.
                self.lent = None;
                action.map_err(task.error("rt_sigaction"))?;
                mask.map_err(task.error("rt_sigprocmask"))?;
                Err(task.error("execve")(e))
            }
            Err(e @ near::SyscallError::NotSent(_)) => {
                if over(&action) && over(&mask) {
                    self.lent = None;
                }
                Err(task.error("execve")(e))
            }
            // A successful execve is never answered; the connection ends. So it does when
            // the child dies: ask the kernel which it was.
            Ok(_) | Err(near::SyscallError::Hangup) => match self.after_hangup().await? {
                AfterHangup::Execd => {
                    self.lent = None;
                    self.thread
                        .debug_event(format_args!("exec'd {:?}", command.path()));
                    // The program runs; a failed reset (none is expected with these
                    // arguments) cannot be undone any more.
                    for (name, r) in [("rt_sigaction", action), ("rt_sigprocmask", mask)] {
                        if let Err(e @ near::SyscallError::Errno(_)) = r {
                            log::warn!("{name} before exec failed: {e}");
                        }
                    }
                    Ok(())
                }
                AfterHangup::Died => {
                    self.lent = None;
                    Err(task.error("execve")(near::SyscallError::Hangup))
                }
            },
        }
    }

    /// Whether this child, whose connection was lost after an execve was sent, exec'd or
    /// died without exec'ing.
    ///
    /// The connection ends when the child's server socket is closed (by the exec's
    /// close-on-exec, or by death) or when the futex helper sees the child's
    /// `CLONE_CHILD_CLEARTID` word cleared, which the kernel does both early in a
    /// successful exec and early in an exit: none of these tells the two apart. The
    /// kernel's own flags do, exactly: every clone child starts with `PF_FORKNOEXEC`,
    /// which only a completed exec clears (after the point of no return, once the new
    /// image is installed), and a dying task gets `PF_EXITING` before it lets go of its
    /// memory, fds or futex word, and keeps both flags until it is reaped. They are read
    /// from field 9 of `/proc/PID/stat`, with the pid read from the fdinfo of our pidfd
    /// before and after: the child is ours and not reaped (our monitor has not waited), so
    /// while the pidfd still names a pid, that pid is our child's, never a reused one.
    ///
    /// Only one state is transient: a child in the middle of its exec, between clearing
    /// the futex word and clearing `PF_FORKNOEXEC`; then this looks again, briefly.
    ///
    /// # Errors
    /// [`Error::Io`] if `/proc` cannot tell (not mounted, the child invisible in its pid
    /// namespace, reaped by someone else, or still in between after 5 seconds).
    async fn after_hangup(&self) -> Result<AfterHangup> {
        let unknown = |source: std::io::Error| Error::Io {
            what: "telling a completed exec from a death",
            source,
        };
        let monitor = self
            .monitor
            .as_ref()
            .ok_or_else(|| unknown(std::io::Error::other("the child is no longer monitored")))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            let (state, flags) = match monitor.local_pidfd() {
                Some(pidfd) => proc_task_flags(pidfd).map_err(unknown)?,
                // A child on another host: its parent reads its entry there. The child is
                // its parent's, not reaped (only its monitor reaps it), so the pid is its.
                None => {
                    let path = format!("/proc/{}/stat", monitor.pid().as_raw());
                    let task = self.parent.task();
                    let file = task
                        .open(path.as_str(), rsyscall_near::O::RDONLY, 0)
                        .await?;
                    let stat = task.read_to_eof(&file).await?;
                    parse_proc_stat(&path, &stat)
                        .map(|(_, state, flags)| (state, flags))
                        .map_err(unknown)?
                }
            };
            if flags & PF_FORKNOEXEC == 0 {
                return Ok(AfterHangup::Execd);
            }
            if flags & PF_EXITING != 0 || matches!(state, 'Z' | 'X') {
                return Ok(AfterHangup::Died);
            }
            if std::time::Instant::now() >= deadline {
                return Err(unknown(std::io::Error::other(format!(
                    "pid {} neither finished its exec nor died within 5 seconds",
                    self.thread.inner.task.pid().as_raw()
                ))));
            }
            async_io::Timer::after(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(20));
        }
    }

    /// `execve(path, argv, envp)`: like [`ChildThread::exec`] with exactly the environment
    /// `envp` (`KEY=VALUE` strings) instead of the thread's.
    ///
    /// # Errors
    /// As [`ChildThread::exec`]; an envp entry without `=` is [`Error::InvalidArgument`].
    pub async fn execve<S: AsRef<std::ffi::OsStr>>(
        self,
        path: impl AsRef<std::ffi::OsStr>,
        argv: &[S],
        envp: &[S],
    ) -> std::result::Result<AsyncChildProcess, ExecError> {
        let command = argv_command(path.as_ref(), argv);
        if let Some(bad) = envp.iter().find(|e| !e.as_ref().as_bytes().contains(&b'=')) {
            let error = Error::invalid(
                "execve",
                format!("envp entry {:?} has no '='", bad.as_ref()),
            );
            return Err(ExecError {
                error,
                thread: self,
            });
        }
        let envp = envp.iter().map(|e| e.as_ref().to_owned()).collect();
        self.exec_with(command, Some(envp)).await
    }

    /// `execv(path, argv)`: like [`ChildThread::exec`] with the thread's environment.
    ///
    /// # Errors
    /// As [`ChildThread::exec`].
    pub async fn execv<S: AsRef<std::ffi::OsStr>>(
        self,
        path: impl AsRef<std::ffi::OsStr>,
        argv: &[S],
    ) -> std::result::Result<AsyncChildProcess, ExecError> {
        let command = argv_command(path.as_ref(), argv);
        self.exec(command).await
    }

    /// Ends the child with `exit(status)` and returns it for waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # use rsyscall_near::CLONE;
    /// # use rsyscall_handle::ChildState;
    /// # async_io::block_on(async {
    /// let child = local_thread().clone(CLONE::empty()).await?;
    /// let process = child.exit(7).await?;
    /// assert_eq!(process.wait().await?, ChildState::Exited(7));
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The connection's errors (a child already dead still yields its monitor).
    pub async fn exit(mut self, status: i32) -> Result<AsyncChildProcess> {
        self.thread.exit(status).await?;
        self.take_monitor(format!("rsyscall thread (exit {status})"))
            .ok_or_else(|| Error::invalid("exit", "the child was already exec'd or exited"))
    }
}

impl Drop for ChildThread {
    fn drop(&mut self) {
        let lent = self.lent.take();
        match self.monitor.take() {
            // The block of an exec whose end is unknown is freed once the child is reaped.
            Some(monitor) => monitor.abandon(Signal::SIGKILL, Box::new(lent)),
            // Nothing tells when the child stops reading it: keep it.
            None => std::mem::forget(lent),
        }
    }
}

/// The kernel's task flag of a task that is exiting (`include/linux/sched.h`).
pub(crate) const PF_EXITING: u64 = 0x4;
/// The kernel's task flag of a task cloned and not exec'd since (`include/linux/sched.h`).
const PF_FORKNOEXEC: u64 = 0x40;

/// How a child whose connection was lost during its exec ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterHangup {
    /// It completed the exec: its old image is gone and the program's is installed.
    Execd,
    /// It died without completing the exec.
    Died,
}

/// The pid that `/proc/self/fdinfo` shows for the local pidfd `pidfd`: in the pid
/// namespace of the `/proc` mount; 0 if the process is not in it, -1 once it is reaped.
pub(crate) fn pidfd_pid(pidfd: BorrowedFd<'_>) -> std::io::Result<i64> {
    let path = format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd());
    let info = std::fs::read_to_string(&path).map_err(|e| reading(&path, e))?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("{path} has no Pid line")))
}

/// The error of reading `path`: a shortage the caller may act on (`EMFILE`, `ENFILE`,
/// `ENOMEM`) keeps its errno, so that it reaches `io::Error::raw_os_error`; any other
/// error says which file.
fn reading(path: &str, e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => e,
        _ => std::io::Error::new(e.kind(), format!("reading {path}: {e}")),
    }
}

/// The state letter and task flags (fields 3 and 9 of `/proc/PID/stat`) of the unreaped
/// process the local pidfd `pidfd` refers to.
fn proc_task_flags(pidfd: BorrowedFd<'_>) -> std::io::Result<(char, u64)> {
    proc_stat(pidfd).map(|(_, state, flags)| (state, flags))
}

/// The command name, state letter and task flags (fields 2, 3 and 9 of `/proc/PID/stat`)
/// of the unreaped process the local pidfd `pidfd` refers to.
pub(crate) fn proc_stat(pidfd: BorrowedFd<'_>) -> std::io::Result<(Vec<u8>, char, u64)> {
    let reaped =
        || std::io::Error::other("the process was reaped before its /proc entry could be read");
    let pid = pidfd_pid(pidfd)?;
    match pid {
        -1 => return Err(reaped()),
        0 => {
            return Err(std::io::Error::other(
                "the process is not in the pid namespace of /proc",
            ));
        }
        _ => {}
    }
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read(&path);
    // The pid could name another process only after ours was reaped, which the pidfd
    // would then show: checked after the read, so that the read was of our process.
    if pidfd_pid(pidfd)? != pid {
        return Err(reaped());
    }
    let stat = stat.map_err(|e| reading(&path, e))?;
    parse_proc_stat(&path, &stat)
}

/// The command name, state letter and task flags in the contents `stat` of `path`, a
/// `/proc/PID/stat` file.
fn parse_proc_stat(path: &str, stat: &[u8]) -> std::io::Result<(Vec<u8>, char, u64)> {
    let malformed = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path} is not in the expected format"),
        )
    };
    // The command name, in parentheses, may contain anything: fields follow the last ')'.
    let open = stat.iter().position(|&b| b == b'(');
    let close = stat.iter().rposition(|&b| b == b')');
    let (Some(open), Some(close)) = (open, close) else {
        return Err(malformed());
    };
    if close < open {
        return Err(malformed());
    }
    let comm = stat[open + 1..close].to_vec();
    let rest = String::from_utf8_lossy(&stat[close + 1..]);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().and_then(|s| s.chars().next());
    let flags = fields.get(6).and_then(|f| f.parse().ok());
    match (state, flags) {
        (Some(state), Some(flags)) => Ok((comm, state, flags)),
        _ => Err(malformed()),
    }
}

/// A command running `path` with exactly `argv` (argv\[0\] included; an empty argv gets
/// the path as argv\[0\]).
fn argv_command<S: AsRef<std::ffi::OsStr>>(path: &std::ffi::OsStr, argv: &[S]) -> Command {
    match argv.split_first() {
        Some((first, rest)) => Command::new(path, first.as_ref()).args(rest),
        None => Command::new(path, path),
    }
}
