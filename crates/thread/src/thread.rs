//! `Thread` and `ChildThread`: a process we control, with its task, connection,
//! environment and standard streams, and `exec` (`clone` is in `clone.rs`).
//!
//! # Safety
//! `exec` lends the child memory holding argv and envp, kept (or leaked) until the execve
//! request is over; the requests it sends take only pointers into that memory.
#![allow(unsafe_code)]

use std::fmt;
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rsyscall_handle::{
    ChildProcess, Error, FileDescriptor, InFlight, Pipe, Result, Task, local_namespaces,
};
use rsyscall_near::{self as near, Signal};

use crate::command::{Command, Environment};
use crate::connection::Connection;
use crate::monitor::AsyncChildProcess;

pub(crate) struct ThreadInner {
    pub(crate) task: Task,
    /// Moves fds between the local table and this thread's; `None` when this thread uses
    /// the local table itself.
    /// Set at creation, or by `unshare_files` for a thread that had used the local table.
    pub(crate) connection: std::sync::OnceLock<Connection>,
    pub(crate) environ: Environment,
    /// The number of the thread's syscall server socket in its own table, if it has one.
    pub(crate) server_fd: Option<near::FileDescriptor>,
    /// The thread that created this one, if any (a `CLONE::PARENT` child of this thread is
    /// that thread's child).
    pub(crate) parent: Option<Thread>,
    /// The thread's own epoller inside its process, once made; until then its fds are
    /// watched by the local process's reactor.
    pub(crate) root_epoller: crate::epoller::RootSlot,
}

/// A process we control: its [`Task`] (every syscall), how fds reach it, its environment
/// and its standard streams.
///
/// `Thread` does not implement [`Clone`]: [`Thread::clone`] is the reference's name for
/// making a child process. [`Thread::duplicate`] gives another handle to the same thread.
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
            Thread::from_parts(task, None, Environment::from_local(), None, None)
        })
        .duplicate()
}

/// The result of [`Thread::environ`]: the thread's environment, with lookups done through
/// the thread itself.
#[derive(Clone, Copy)]
pub struct EnvironmentRef<'a> {
    thread: &'a Thread,
}

impl<'a> EnvironmentRef<'a> {
    /// The variables.
    pub fn vars(&self) -> &'a Environment {
        &self.thread.inner.environ
    }

    /// A variable's value.
    pub fn get(&self, key: &str) -> Option<&'a std::ffi::OsStr> {
        self.thread.inner.environ.get(key)
    }

    /// Finds `name` in the thread's `PATH` (checked for execute permission by the thread
    /// itself, in its own mount namespace) and returns a [`Command`] for it with argv\[0\]
    /// `name`. A name containing `/` is used as it is.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the directories searched if nothing is found.
    pub async fn which(&self, name: &str) -> Result<Command> {
        if name.contains('/') {
            return Ok(Command::new(name, name));
        }
        self.vars()
            .which_cached(&self.thread.inner.task, name)
            .await
    }
}

impl Thread {
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
        environ: Environment,
        parent: Option<Thread>,
        server_fd: Option<near::FileDescriptor>,
    ) -> Thread {
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
        FileDescriptor::borrowed(&self.inner.task, near::FileDescriptor::new(n))
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
        self.inner.task.read_to_end(fd).await
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
/// `SIGKILL` (and reaps it in the background when its parent is the local process).
pub struct ChildThread {
    thread: Thread,
    parent: Thread,
    /// The child's monitor, until exec or exit hands it over.
    monitor: Option<AsyncChildProcess>,
    pub(crate) _server_sock: FileDescriptor,
    /// Made with `CLONE::SIGHAND`: its signal dispositions are its parent's, so exec must
    /// not reset any (the kernel gives the exec'd program a copy of them).
    shares_sighand: bool,
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

/// [`ChildThread::exec`] failed; the child is still running its server and usable.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ExecError {
    /// Why exec failed.
    #[source]
    pub error: Error,
    /// The child, back to its caller.
    pub thread: ChildThread,
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
        }
    }

    /// The thread that created this child.
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
    fn take_monitor(&mut self, command: String) -> Option<AsyncChildProcess> {
        let mut monitor = self.monitor.take()?;
        monitor.set_command(command);
        Some(monitor)
    }

    /// Replaces the child's program with `command` (`execve`), first resetting its signal
    /// mask and `SIGPIPE` disposition to the defaults. argv, envp and everything else exec
    /// needs cost one allocation and one memory write.
    ///
    /// # Errors
    /// [`ExecError`] carrying the still-usable child if exec failed (`ENOENT` for a
    /// missing file...).
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

    async fn do_exec(
        &self,
        command: &Command,
        envp: Option<Vec<std::ffi::OsString>>,
    ) -> Result<()> {
        let task = &self.thread.inner.task;
        let envp = envp.unwrap_or_else(|| command.environment(&self.thread.inner.environ));
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
        // From here the child's kernel reads the block: keep it if the future is dropped.
        let buf = InFlight::new(image.into_pointer());
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
        // SAFETY: path, argv and envp were laid out by exec_image, NUL- and NULL-terminated, in the
        // child's address space, and `buf` is kept (or leaked) until the call is over.
        let exec = unsafe { near::execve(sysif, path, argv, envp) };
        let ((action, mask), exec) =
            futures_lite::future::zip(futures_lite::future::zip(sigaction, sigmask), exec).await;
        if exec.is_ok() {
            // The program runs; a failed reset (none is expected with these arguments)
            // cannot be undone any more.
            for (name, r) in [("rt_sigaction", action), ("rt_sigprocmask", mask)] {
                if let Err(e) = r {
                    log::warn!("{name} before exec failed: {e}");
                }
            }
        } else {
            action.map_err(task.error("rt_sigaction"))?;
            mask.map_err(task.error("rt_sigprocmask"))?;
        }
        exec.map_err(task.error("execve"))?;
        buf.done();
        Ok(())
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
    /// # Errors
    /// The connection's errors (a child already dead still yields its monitor).
    pub async fn exit(mut self, status: i32) -> Result<AsyncChildProcess> {
        let task = &self.thread.inner.task;
        // SAFETY: exit ends the child's server thread; nothing of ours runs on it.
        unsafe { near::exit(task.sysif(), status) }
            .await
            .map_err(task.error("exit"))?;
        self.take_monitor(format!("rsyscall thread (exit {status})"))
            .ok_or_else(|| Error::invalid("exit", "the child was already exec'd or exited"))
    }
}

impl Drop for ChildThread {
    fn drop(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            monitor.abandon(Signal::SIGKILL, Box::new(()));
        }
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
