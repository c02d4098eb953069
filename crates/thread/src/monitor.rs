//! `AsyncChildProcess`: waiting for a child's exit on the event loop, through its pidfd.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use async_io::Async;
use rsyscall_handle::structs::WaitId;
use rsyscall_handle::{ChildProcess, ChildState, Error, Result};
use rsyscall_near::{Signal, W};

use crate::afd::AsyncFileDescriptor;
use crate::{reaper, service};

/// How a child's exit is seen.
enum Readiness {
    /// A pidfd in the local table, registered with the async-io reactor.
    Local(Async<OwnedFd>),
    /// A pidfd in the parent's table, on the parent's root epoller: for a parent whose
    /// table the local process cannot reach (a thread on another host).
    Epoller(Box<AsyncFileDescriptor>),
    /// Nothing can tell us: the child is polled. For a parent on another host that can
    /// have no root epoller (a persistent thread there, whose syscall socket changes).
    Poll,
}

/// How often a [`Readiness::Poll`] child is looked at.
pub(crate) const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

impl Readiness {
    /// Waits until the pidfd is readable (the child exited), possibly spuriously.
    async fn readable(&self) -> Result<()> {
        match self {
            Readiness::Local(io) => io.readable().await.map_err(|source| Error::Io {
                what: "waiting for a pidfd",
                source,
            }),
            Readiness::Epoller(afd) => afd.wait_readable().await,
            Readiness::Poll => {
                async_io::Timer::after(POLL_INTERVAL).await;
                Ok(())
            }
        }
    }
}

/// A child process whose exit is observed through a pidfd registered with the async-io
/// reactor; nothing changes the local process's signal mask or dispositions.
///
/// Dropping it does not kill the child. A child that nobody waits for any more is reaped in
/// the background once it exits: by the service thread if its parent is the local process,
/// and through its parent's connection, on the reaper thread, if its parent is a remote
/// thread (if that thread is gone first, the child is its new parent's to reap).
///
/// # Examples
///
/// What [`ChildThread::exec`](crate::ChildThread::exec) returns: signal the program, wait for it.
///
/// ```
/// # use rsyscall_thread::local_thread;
/// # use rsyscall_near::CLONE;
/// # use rsyscall_thread::Command;
/// # use rsyscall_handle::ChildState;
/// # use rsyscall_near::Signal;
/// # async_io::block_on(async {
/// let child = local_thread().clone(CLONE::empty()).await?;
/// let sleeper = child
///     .exec(Command::new("/bin/sh", "sh").args(["-c", "exec sleep 1000"]))
///     .await?;
/// sleeper.kill(Signal::SIGKILL).await?;
/// assert_eq!(sleeper.wait().await?, ChildState::Killed(Signal::SIGKILL));
/// // Reaped now: waiting again gives the same state.
/// assert_eq!(sleeper.wait().await?, ChildState::Killed(Signal::SIGKILL));
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
pub struct AsyncChildProcess {
    process: ChildProcess,
    /// How the child's exit is seen.
    readiness: Option<Readiness>,
    command: String,
    parent_is_local: bool,
    /// Memory the child may run on (a clone child's stack, when no futex helper watches
    /// it), dropped only once the child is known dead. In a `Mutex` only to keep the type
    /// `Sync`: reached through `&mut self` (`get_mut`).
    keep: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl fmt::Debug for AsyncChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AsyncChildProcess(pid {}, {})",
            self.process.pid().as_raw(),
            self.command
        )
    }
}

/// Sends `SIGTERM` to the child if a `check` future is dropped before it finished.
struct TermOnDrop<'a> {
    child: &'a AsyncChildProcess,
    armed: bool,
}

impl Drop for TermOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed && self.child.process.death().is_none() {
            self.child.signal_now(Signal::SIGTERM);
        }
    }
}

impl AsyncChildProcess {
    /// Monitors `process` through `local_pidfd`, a pidfd for it in the local table;
    /// `command` describes it in errors.
    ///
    /// # Errors
    /// Registering the pidfd with the reactor; the process is given back then (the pidfd is
    /// closed).
    #[allow(clippy::result_large_err)]
    pub fn new(
        process: ChildProcess,
        local_pidfd: OwnedFd,
        command: String,
    ) -> std::result::Result<Self, (Error, ChildProcess)> {
        let parent_is_local = process.parent().sysif().is_local();
        // Registered without O_NONBLOCK: the pidfd may share its open file description with
        // the parent's (a dup), and O_NONBLOCK there would make a blocking waitid(P_PIDFD)
        // fail with EAGAIN. Only readiness is ever asked of this registration.
        let readiness = match Async::new_nonblocking(local_pidfd) {
            Ok(r) => r,
            Err(source) => {
                let error = Error::Io {
                    what: "registering a pidfd with the reactor",
                    source,
                };
                return Err((error, process));
            }
        };
        Ok(AsyncChildProcess {
            process,
            readiness: Some(Readiness::Local(readiness)),
            command,
            parent_is_local,
            keep: Default::default(),
        })
    }

    /// Monitors `process` through `pidfd`, an [`AsyncFileDescriptor`] of a pidfd for it
    /// in its parent's table, on the parent's root epoller: for a parent whose table the
    /// local process cannot reach (a thread on another host).
    pub(crate) fn on_epoller(
        process: ChildProcess,
        pidfd: AsyncFileDescriptor,
        command: String,
    ) -> Self {
        AsyncChildProcess {
            process,
            readiness: Some(Readiness::Epoller(Box::new(pidfd))),
            command,
            parent_is_local: false,
            keep: Default::default(),
        }
    }

    /// Monitors `process` by polling it through its parent (see [`Readiness::Poll`]).
    pub(crate) fn polled(process: ChildProcess, command: String) -> Self {
        AsyncChildProcess {
            process,
            readiness: Some(Readiness::Poll),
            command,
            parent_is_local: false,
            keep: Default::default(),
        }
    }

    /// Keeps `keep` (memory the child may run on) until the child is known dead: dropped
    /// with this monitor once the child was reaped, else once it is reaped in the
    /// background.
    pub(crate) fn keep_until_dead(&mut self, keep: Box<dyn std::any::Any + Send>) {
        let slot = self
            .keep
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some(match slot.take() {
            None => keep,
            Some(earlier) => Box::new((earlier, keep)),
        });
    }

    /// Describes the child as running `command` (in errors).
    pub(crate) fn set_command(&mut self, command: String) {
        self.command = command;
    }

    /// Gives up on the child: signals it with `sig` at once, has it reaped in the background
    /// and then drops `keep` (memory it may still use). If the reaping fails (its remote
    /// parent is gone), `keep` is leaked: nothing here can tell when the child is gone.
    pub(crate) fn abandon(mut self, sig: Signal, keep: Box<dyn std::any::Any + Send>) {
        self.keep_until_dead(keep);
        self.signal_now(sig);
        if self.process.death().is_some() {
            return;
        }
        self.reap_in_background();
    }

    /// Leaves the child running, has it reaped in the background once it exits, and only
    /// then drops `keep` (memory it runs on), as [`AsyncChildProcess::abandon`] without a
    /// signal.
    pub(crate) fn reap_when_exits(mut self, keep: Box<dyn std::any::Any + Send>) {
        self.keep_until_dead(keep);
        if self.process.death().is_some() {
            return;
        }
        self.reap_in_background();
    }

    /// Has the child reaped once it dies, by someone other than the caller: the service
    /// thread for a child of the local process, the reaper for a child of a remote thread,
    /// which then drops `keep`.
    fn reap_in_background(&mut self) {
        let slot = self
            .keep
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let keep: Box<dyn std::any::Any + Send> = match slot.take() {
            Some(keep) => keep,
            None => Box::new(()),
        };
        let Some(readiness) = self.readiness.take() else {
            std::mem::forget(keep);
            return;
        };
        let readiness = match readiness {
            Readiness::Local(io) if self.parent_is_local => {
                match io.into_inner() {
                    Ok(fd) => service::reap_later(fd, keep),
                    Err(_) => std::mem::forget(keep),
                }
                return;
            }
            other => other,
        };
        let parent = self.process.parent().clone();
        let pidfd = self.process.pidfd().clone();
        reaper::spawn(async move {
            loop {
                let waited = parent
                    .waitid(WaitId::PidFd(&pidfd), W::EXITED | W::NOHANG)
                    .await;
                match waited {
                    Ok(Some(_)) => {
                        drop(keep);
                        return;
                    }
                    Ok(None) => {
                        if readiness.readable().await.is_err() {
                            break;
                        }
                    }
                    // ECHILD (reaped by someone else) or a lost parent: nothing to reap.
                    Err(e) => {
                        log::debug!("reaping an abandoned child: {e}");
                        break;
                    }
                }
            }
            // Whether the child is gone is unknown: keep what it may still use.
            std::mem::forget(keep);
        });
    }

    /// The child's pidfd in the local table, while the child is monitored here.
    pub(crate) fn local_pidfd(&self) -> Option<BorrowedFd<'_>> {
        match &self.readiness {
            Some(Readiness::Local(r)) => Some(r.get_ref().as_fd()),
            _ => None,
        }
    }

    /// The underlying child process.
    pub fn process(&self) -> &ChildProcess {
        &self.process
    }

    /// The child's pid in its parent's pid namespace.
    pub fn pid(&self) -> rsyscall_near::Pid {
        self.process.pid()
    }

    /// Waits for the child to die and reaps it; later calls return the same state.
    ///
    /// # Errors
    /// A lost connection to the parent; [`Error::ChildBusy`] during a concurrent kill.
    pub async fn wait(&self) -> Result<ChildState> {
        self.waitpid(W::EXITED).await
    }

    /// Waits for the next state change among those `options` asks for (`W::EXITED`,
    /// `W::STOPPED`, `W::CONTINUED`); a death reaps the child and is recorded.
    ///
    /// Exits are seen through the pidfd on the reactor. pidfds do not report stops and
    /// continues, and the local process's signal mask and dispositions are never touched (so
    /// no signalfd for `SIGCHLD` here): when `STOPPED` or `CONTINUED` is asked for, the child
    /// is also polled, at intervals growing from 1 ms to 50 ms.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for options without an event kind or with `W::NOHANG`; a
    /// lost connection to the parent; [`Error::ChildBusy`] during a concurrent kill.
    pub async fn waitpid(&self, options: W) -> Result<ChildState> {
        let events = W::EXITED | W::STOPPED | W::CONTINUED;
        if !options.intersects(events) || options.contains(W::NOHANG) {
            return Err(Error::invalid(
                "waitpid",
                format!(
                    "options {options:?} must ask for EXITED, STOPPED or CONTINUED, without NOHANG"
                ),
            ));
        }
        let poll = options.intersects(W::STOPPED | W::CONTINUED);
        let mut interval = std::time::Duration::from_millis(1);
        loop {
            if let Some(state) = self.process.waitid(options | W::NOHANG).await? {
                return Ok(state);
            }
            let Some(r) = &self.readiness else {
                return Err(Error::invalid("AsyncChildProcess::waitpid", "no pidfd"));
            };
            if poll {
                let exited = async { r.readable().await.map(|_| true) };
                let tick = async {
                    async_io::Timer::after(interval).await;
                    Ok(false)
                };
                futures_lite::future::or(exited, tick).await?;
                interval = (interval * 2).min(std::time::Duration::from_millis(50));
            } else {
                r.readable().await?;
            }
        }
    }

    /// Signals the child's process group (`kill(-pid, sig)` through the parent): the child
    /// must be a group leader. See [`ChildProcess::killpg`], which holds the child (so no
    /// wait reaps it meanwhile) while its pid is used as the group id.
    ///
    /// # Errors
    /// As [`ChildProcess::killpg`]: [`Error::ChildGone`] once reaped, `ESRCH` if the child
    /// leads no group.
    pub async fn killpg(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        self.process.killpg(sig).await
    }

    /// Whether the child still exists (not yet reaped): see [`ChildProcess::exists`].
    ///
    /// # Errors
    /// As [`ChildProcess::exists`].
    pub async fn exists(&self) -> Result<bool> {
        self.process.exists().await
    }

    /// Waits for the child and fails unless it exited with status 0. If this future is
    /// dropped before the child died, the child is sent `SIGTERM`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # use rsyscall_near::CLONE;
    /// # use rsyscall_thread::Command;
    /// # use rsyscall_handle::ChildState;
    /// # use rsyscall_handle::Error;
    /// # async_io::block_on(async {
    /// let child = local_thread().clone(CLONE::empty()).await?;
    /// let failing = child
    ///     .exec(Command::new("/bin/sh", "sh").args(["-c", "exit 1"]))
    ///     .await?;
    /// let err = failing.check().await.unwrap_err();
    /// assert!(matches!(err, Error::UncleanExit { state: ChildState::Exited(1), .. }));
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::UncleanExit`] with the command and how it ended; the errors of
    /// [`AsyncChildProcess::wait`].
    pub async fn check(&self) -> Result<()> {
        let mut guard = TermOnDrop {
            child: self,
            armed: true,
        };
        let state = self.wait().await;
        guard.armed = false;
        let state = state?;
        if state.clean() {
            Ok(())
        } else {
            Err(Error::UncleanExit {
                command: self.command.clone(),
                state,
            })
        }
    }

    /// Signals the child through its pidfd (`None`: the null signal, which sends nothing).
    ///
    /// # Errors
    /// See [`ChildProcess::kill`].
    pub async fn kill(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        self.process.kill(sig).await
    }

    /// Signals the child at once from the local process (used where nothing can be
    /// awaited); errors are ignored, as the child may already be gone.
    fn signal_now(&self, sig: Signal) {
        match &self.readiness {
            Some(Readiness::Local(r)) => service::pidfd_signal(r.get_ref(), sig),
            Some(Readiness::Epoller(_) | Readiness::Poll) => {
                // Only the parent can reach its pidfd: signalled through it, in the
                // background (before any reaping queued after this, on the same thread).
                let parent = self.process.parent().clone();
                let pidfd = self.process.pidfd().clone();
                reaper::spawn(async move {
                    let _ =
                        rsyscall_near::pidfd_send_signal(parent.sysif(), pidfd.near(), sig).await;
                });
            }
            None => {}
        }
    }
}

impl Drop for AsyncChildProcess {
    fn drop(&mut self) {
        if self.process.death().is_some() {
            // Dead: what it ran on (`keep`) goes with this.
            return;
        }
        self.reap_in_background();
    }
}
