//! `ChildProcess`: a child we can signal and wait on without ever hitting a reused pid;
//! `ThreadProcess`: a child that runs on memory of ours; `Process`: any process, by pid.

use std::fmt;
use std::sync::Mutex;

use rsyscall_near::{self as near, Signal, W};

use crate::child_state::ChildState;
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::memory::Allocation;
use crate::structs::WaitId;
use crate::task::Task;

#[derive(Default)]
struct Status {
    busy: bool,
    death: Option<ChildState>,
    /// A death seen with `W::NOWAIT` through a remote parent, before the reaping `waitid`:
    /// if that call's answer is lost (its future dropped), this is the record.
    seen_death: Option<ChildState>,
}

/// A child process: created by `parent`, which alone can wait on it, and referred to by a
/// pidfd in the parent's table, so that signalling and waiting can never reach another
/// process that reused its pid.
///
/// Only one `kill` or `waitid` may run at a time; a second concurrent one is
/// [`Error::ChildBusy`]. Once the child has been reaped, `kill` is [`Error::ChildGone`]
/// and `waitid` returns the recorded death.
pub struct ChildProcess {
    parent: Task,
    pid: near::Pid,
    /// The pid namespace `pid` is valid in: the parent's when the child was made.
    pidns: rsyscall_far::PidNamespace,
    pidfd: FileDescriptor,
    status: Mutex<Status>,
}

impl fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChildProcess(pid {}, parent pid {})",
            self.pid.as_raw(),
            self.parent.pid().as_raw()
        )
    }
}

struct Busy<'a>(&'a Mutex<Status>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).busy = false;
    }
}

impl ChildProcess {
    /// The child `pid` (in `parent`'s pid namespace) of `parent`, with its pidfd in the
    /// parent's table.
    pub fn new(parent: &Task, pid: near::Pid, pidfd: FileDescriptor) -> Self {
        ChildProcess {
            parent: parent.clone(),
            pid,
            pidns: parent.namespaces().pidns,
            pidfd,
            status: Mutex::new(Status::default()),
        }
    }

    /// The pid, in the parent's pid namespace.
    pub fn pid(&self) -> near::Pid {
        self.pid
    }

    /// The pid tagged with the pid namespace it is valid in (the parent's).
    pub fn far(&self) -> rsyscall_far::Process {
        rsyscall_far::Process {
            pidns: self.pidns,
            near: self.pid,
        }
    }

    /// The task that created the child.
    pub fn parent(&self) -> &Task {
        &self.parent
    }

    /// The pidfd, in the parent's table.
    pub fn pidfd(&self) -> &FileDescriptor {
        &self.pidfd
    }

    /// How the child died, once it has been reaped.
    pub fn death(&self) -> Option<ChildState> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).death
    }

    fn borrow(&self) -> Result<Busy<'_>> {
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if st.busy {
            return Err(Error::ChildBusy {
                pid: self.pid.as_raw(),
            });
        }
        st.busy = true;
        Ok(Busy(&self.status))
    }

    /// [`Error::ChildGone`] once the child is reaped.
    fn check_alive(&self) -> Result<()> {
        match self.death() {
            Some(state) => Err(Error::ChildGone {
                pid: self.pid.as_raw(),
                state,
            }),
            None => Ok(()),
        }
    }

    /// The child's pid as the parent task names it now, with the child held (no wait can
    /// reap it, so the pid cannot be reused, until the guard goes).
    ///
    /// # Errors
    /// [`Error::ChildGone`], [`Error::ChildBusy`]; [`Error::Mismatch`] if the parent task
    /// is no longer in the pid namespace the pid belongs to.
    fn hold(&self) -> Result<(Busy<'_>, near::Pid)> {
        self.check_alive()?;
        let busy = self.borrow()?;
        let pid = self
            .parent
            .namespaces()
            .near_pid(self.parent.pid(), &self.far())?;
        Ok((busy, pid))
    }

    /// `pidfd_send_signal(pidfd, sig)` — signals the child. `sig` is a [`Signal`], or
    /// `None` for the null signal, which sends nothing (see [`ChildProcess::exists`]).
    ///
    /// # Errors
    /// [`Error::ChildGone`] once reaped, [`Error::ChildBusy`] during another kill or wait,
    /// and the syscall's errors.
    pub async fn kill(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        self.check_alive()?;
        let _busy = self.borrow()?;
        self.parent.check_fd(&self.pidfd)?;
        self.pidfd.pidfd_send_signal(sig).await
    }

    /// Whether the child still exists (running, stopped, or dead but not yet reaped): the
    /// null signal through its pidfd, the original's `kill(pid, 0)` without the pid-reuse
    /// race. `false` once it has been reaped. Runs alongside a wait (it takes no hold on
    /// the child).
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the parent's fd table changed since (the pidfd is in the old
    /// one); the syscall's errors other than `ESRCH`.
    pub async fn exists(&self) -> Result<bool> {
        if self.death().is_some() {
            return Ok(false);
        }
        self.parent.check_fd(&self.pidfd)?;
        match self.pidfd.pidfd_send_signal(None).await {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(near::Errno::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `kill(-pid, sig)` through the parent — signals the process group the child leads
    /// (`None`: the null signal, a check that the group exists). The child is held while
    /// the signal goes, so its pid, and the group id equal to it, cannot name anyone else.
    ///
    /// # Errors
    /// `ESRCH` if the child leads no group; [`Error::ChildGone`], [`Error::ChildBusy`],
    /// [`Error::Mismatch`] as [`ChildProcess::getpgid`]; `EPERM`.
    pub async fn killpg(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        let (_busy, pid) = self.hold()?;
        self.parent.kill(near::Pid::new(-pid.as_raw()), sig).await
    }

    /// `getpgid(pid)` through the parent — the child's process group id, in the parent's
    /// pid namespace.
    ///
    /// # Errors
    /// [`Error::ChildGone`] once reaped, [`Error::ChildBusy`] during a kill or wait,
    /// [`Error::Mismatch`] if the parent task left the pid namespace of the child's pid;
    /// `ESRCH`. See getpgid(2).
    pub async fn getpgid(&self) -> Result<near::Pid> {
        let (_busy, pid) = self.hold()?;
        self.parent.getpgid(pid).await
    }

    /// `setpgid(pid, pgid)` through the parent — moves the child into the process group
    /// that `group` (another child of the same parent task, or this one) leads, or with
    /// `None` makes the child lead a new group of its own. Both children are held during
    /// the call, so neither pid can be reused meanwhile.
    ///
    /// # Errors
    /// [`Error::Mismatch`] ([`MismatchError::PidNamespace`]) if `group`'s pid belongs to
    /// another pid namespace than the one the parent runs the syscall in (so it would name
    /// another process there), and nothing is sent; [`Error::ChildGone`],
    /// [`Error::ChildBusy`] for either child; `EACCES` (the child has exec'd), `EPERM`
    /// (`group` leads no group in the child's session), `ESRCH` (not a child of the
    /// caller). See setpgid(2).
    ///
    /// [`MismatchError::PidNamespace`]: rsyscall_far::MismatchError::PidNamespace
    pub async fn setpgid(&self, group: Option<&ChildProcess>) -> Result<()> {
        let group = group.filter(|g| !std::ptr::eq(*g, self));
        let (_busy, pid) = self.hold()?;
        let Some(group) = group else {
            return self.parent.setpgid(pid, near::Pid::new(0)).await;
        };
        let pgid = self
            .parent
            .namespaces()
            .near_pid(self.parent.pid(), &group.far())?;
        group.check_alive()?;
        let _group_busy = group.borrow()?;
        self.parent.setpgid(pid, pgid).await
    }

    /// `getpriority(PRIO_PROCESS, pid)` through the parent — the child's nice value.
    ///
    /// # Errors
    /// As [`ChildProcess::getpgid`]. See getpriority(2).
    pub async fn getpriority(&self) -> Result<i32> {
        let (_busy, pid) = self.hold()?;
        self.parent.getpriority(near::PrioWho::Process(pid)).await
    }

    /// `setpriority(PRIO_PROCESS, pid, nice)` through the parent — sets the child's nice
    /// value.
    ///
    /// # Errors
    /// As [`ChildProcess::getpgid`]; as [`Task::setpriority`] (`EACCES` lowering it
    /// without `CAP_SYS_NICE`).
    pub async fn setpriority(&self, nice: i32) -> Result<()> {
        let (_busy, pid) = self.hold()?;
        self.parent
            .setpriority(near::PrioWho::Process(pid), nice)
            .await
    }

    /// `waitid(P_PIDFD, pidfd, infop, options)` — waits for (or with `W::NOHANG`, polls for)
    /// a state change; `None` means `W::NOHANG` found none. A death reaps the child (unless
    /// `W::NOWAIT`) and is recorded.
    ///
    /// # Errors
    /// [`Error::ChildBusy`] during another kill or wait; the syscall's errors.
    pub async fn waitid(&self, options: W) -> Result<Option<ChildState>> {
        if let Some(state) = self.death() {
            return Ok(Some(state));
        }
        let _busy = self.borrow()?;
        if !options.contains(W::NOWAIT) && !self.parent.sysif().is_local() {
            return self.waitid_remote(options).await;
        }
        let info = self
            .parent
            .waitid(WaitId::PidFd(&self.pidfd), options)
            .await?;
        let state = info.and_then(|i| i.child_state());
        if let Some(s) = state
            && s.died()
            && !options.contains(W::NOWAIT)
        {
            self.record_death(s);
        }
        Ok(state)
    }

    fn record_death(&self, s: ChildState) {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).death = Some(s);
    }

    /// `waitid` through a parent in another process. A dropped future does not stop a
    /// remote syscall: a reaping `waitid` whose answer is dropped would reap the child and
    /// lose how it died. So the state is first read without consuming it (`W::NOWAIT`);
    /// a death is recorded, and only then reaped (an `ECHILD` then means an earlier reap
    /// whose answer was lost). A stop or continue is consumed by a `waitid` that does not
    /// ask for `W::EXITED`, so it cannot reap. This costs one more round trip per event;
    /// the local parent's `waitid` is synchronous and needs none of it.
    async fn waitid_remote(&self, options: W) -> Result<Option<ChildState>> {
        let wait = |options| self.parent.waitid(WaitId::PidFd(&self.pidfd), options);
        loop {
            let seen = self
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .seen_death;
            let state = match seen {
                Some(s) => s,
                None => match wait(options | W::NOWAIT)
                    .await?
                    .and_then(|i| i.child_state())
                {
                    None => return Ok(None),
                    Some(s) => s,
                },
            };
            if state.died() {
                self.status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .seen_death = Some(state);
                match wait(W::EXITED | W::NOHANG).await {
                    Ok(_) => {}
                    Err(Error::Syscall {
                        source: near::SyscallError::Errno(near::Errno::ECHILD),
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
                self.record_death(state);
                return Ok(Some(state));
            }
            let events = options.difference(W::EXITED) | W::NOHANG;
            if let Some(s) = wait(events).await?.and_then(|i| i.child_state()) {
                return Ok(Some(s));
            }
            // The stop or continue was gone by the time it was consumed (the child died
            // or changed again): look afresh, unless the caller asked not to wait.
            if options.contains(W::NOHANG) {
                return Ok(None);
            }
        }
    }
}

/// Any process, named by pid in the pid namespace of `task`, which runs the syscalls.
///
/// Every operation here is racy: unless the process is an unreaped child of `task`, the pid
/// may have been reused by an unrelated process by the time the syscall runs. Prefer
/// [`ChildProcess`] (which goes through a pidfd) for children.
#[derive(Clone, Debug)]
pub struct Process {
    task: Task,
    pid: near::Pid,
}

impl Process {
    /// Process `pid`, as seen from `task`.
    pub fn new(task: &Task, pid: near::Pid) -> Self {
        Process {
            task: task.clone(),
            pid,
        }
    }

    /// The pid, in the task's pid namespace.
    pub fn pid(&self) -> near::Pid {
        self.pid
    }

    /// The task the syscalls run in.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// `kill(pid, sig)` — signals the process (racy: see [`Process`]). `sig` is a
    /// [`Signal`], or `None` for the null signal (see [`Process::exists`]).
    ///
    /// # Errors
    /// `ESRCH`, `EPERM`. See kill(2).
    pub async fn kill(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        self.task.kill(self.pid, sig).await
    }

    /// `kill(pid, 0)` — whether a process with this pid exists (a zombie does), as the
    /// original checks: `true` also when it exists but may not be signalled (`EPERM`).
    /// Racy: the pid may have been reused (see [`Process`]; [`ChildProcess::exists`] is
    /// not).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for pids that name no single process (0 and below);
    /// the syscall's errors other than `ESRCH` and `EPERM`.
    pub async fn exists(&self) -> Result<bool> {
        if self.pid.as_raw() <= 0 {
            return Err(Error::invalid(
                "Process::exists",
                format!("{:?} names no single process", self.pid),
            ));
        }
        match self.task.kill(self.pid, None).await {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(near::Errno::EPERM) => Ok(true),
            Err(e) if e.errno() == Some(near::Errno::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `kill(-pid, sig)` — signals the process group whose id is this pid (the group this
    /// process leads), as killpg(3) does (racy: see [`Process`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for pids that do not name a group (0 and below, which
    /// `kill` would read as "our own group" or "every process"); `ESRCH`, `EPERM`.
    pub async fn killpg(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        if self.pid.as_raw() <= 0 {
            return Err(Error::invalid(
                "killpg",
                format!("{:?} is not a process group id", self.pid),
            ));
        }
        self.task
            .kill(near::Pid::new(-self.pid.as_raw()), sig)
            .await
    }

    /// `getpgid(pid)` — the process's process group.
    ///
    /// # Errors
    /// `ESRCH`. See getpgid(2).
    pub async fn getpgid(&self) -> Result<near::Pid> {
        self.task.getpgid(self.pid).await
    }

    /// `getpriority(PRIO_PROCESS, pid)` — the process's nice value.
    ///
    /// # Errors
    /// `ESRCH`. See getpriority(2).
    pub async fn getpriority(&self) -> Result<i32> {
        self.task
            .getpriority(near::PrioWho::Process(self.pid))
            .await
    }

    /// `setpriority(PRIO_PROCESS, pid, nice)` — sets the process's nice value.
    ///
    /// # Errors
    /// As [`Task::setpriority`].
    pub async fn setpriority(&self, nice: i32) -> Result<()> {
        self.task
            .setpriority(near::PrioWho::Process(self.pid), nice)
            .await
    }
}

/// Where a [`ThreadProcess`]'s child-clear-tid word is: a byte offset into one of its
/// allocations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FutexWord {
    /// Index into the allocations given to [`ThreadProcess::new`].
    pub allocation: usize,
    /// Byte offset of the 4-byte word in that allocation.
    pub offset: usize,
}

struct ThreadMemory {
    allocations: Vec<Allocation>,
    futex: Option<FutexWord>,
}

/// A child that runs on memory of ours (a clone child sharing our address space: its stack,
/// its `CLONE_CHILD_CLEARTID` word...), with that memory.
///
/// The memory is freed once the child is observed to have left it: when a wait through
/// this handle reports its death, or when [`ThreadProcess::poll_released`] finds the
/// child-clear-tid word zeroed (the kernel clears it when the child exits or execs).
/// Dropping the handle before then leaks the memory rather than free it under a running
/// child.
pub struct ThreadProcess {
    process: ChildProcess,
    memory: Mutex<Option<ThreadMemory>>,
}

impl fmt::Debug for ThreadProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ThreadProcess({:?}, holds memory: {})",
            self.process,
            self.holds_memory()
        )
    }
}

impl ThreadProcess {
    /// `process`, running on `allocations`; `futex` names its child-clear-tid word, if it
    /// has one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `futex` is not a 4-byte word inside one of the
    /// allocations (the allocations are then leaked, as the child may be using them).
    pub fn new(
        process: ChildProcess,
        allocations: Vec<Allocation>,
        futex: Option<FutexWord>,
    ) -> Result<Self> {
        if let Some(w) = futex {
            let fits = allocations
                .get(w.allocation)
                .is_some_and(|a| w.offset.checked_add(4).is_some_and(|end| end <= a.len()));
            if !fits {
                std::mem::forget(allocations);
                return Err(Error::invalid(
                    "ThreadProcess::new",
                    format!("{w:?} is not a 4-byte word of the given allocations"),
                ));
            }
        }
        Ok(ThreadProcess {
            process,
            memory: Mutex::new(Some(ThreadMemory { allocations, futex })),
        })
    }

    /// The child process.
    pub fn process(&self) -> &ChildProcess {
        &self.process
    }

    /// The pid, in the parent's pid namespace.
    pub fn pid(&self) -> near::Pid {
        self.process.pid()
    }

    /// Whether the memory is still held (the child may still run on it).
    pub fn holds_memory(&self) -> bool {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn release(&self) {
        let mem = self.memory.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(mem);
    }

    /// Frees the memory if the child is known to have left it: it was seen dead, or its
    /// child-clear-tid word reads 0. Returns whether the memory is released.
    ///
    /// # Errors
    /// The transport's errors reading the word.
    pub async fn poll_released(&self) -> Result<bool> {
        if self.process.death().is_some() {
            self.release();
            return Ok(true);
        }
        // Read the word without holding the lock across the await.
        let word = {
            let guard = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            match &*guard {
                None => return Ok(true),
                Some(m) => match m.futex {
                    None => return Ok(false),
                    Some(w) => {
                        let a = &m.allocations[w.allocation];
                        (a.far().space, a.addr_at(w.offset)?)
                    }
                },
            }
        };
        let (space, near) = word;
        let at = rsyscall_far::Pointer { space, near };
        let bytes = match self.process.parent().read_memory(at, 4).await {
            Ok(b) => b,
            // Released concurrently (by a wait) while we were reading.
            Err(_) if !self.holds_memory() => return Ok(true),
            Err(e) => return Err(e),
        };
        if bytes.len() == 4 && bytes.iter().all(|&b| b == 0) {
            self.release();
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `pidfd_send_signal(pidfd, sig)` — signals the child; see [`ChildProcess::kill`].
    ///
    /// # Errors
    /// As [`ChildProcess::kill`].
    pub async fn kill(&self, sig: impl Into<Option<Signal>>) -> Result<()> {
        self.process.kill(sig).await
    }

    /// `waitid(P_PIDFD, pidfd, infop, options)` — see [`ChildProcess::waitid`]; a reported
    /// death frees the memory.
    ///
    /// # Errors
    /// As [`ChildProcess::waitid`].
    pub async fn waitid(&self, options: W) -> Result<Option<ChildState>> {
        let state = self.process.waitid(options).await?;
        if state.is_some_and(|s| s.died()) {
            self.release();
        }
        Ok(state)
    }
}

impl Drop for ThreadProcess {
    fn drop(&mut self) {
        let mem = self
            .memory
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(m) = mem {
            log::debug!(
                "leaking the memory of {:?}: it may still be running on it",
                self.process
            );
            std::mem::forget(m.allocations);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn siginfo(code: i32, pid: i32, status: i32) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b[0..4].copy_from_slice(&libc::SIGCHLD.to_ne_bytes());
        b[8..12].copy_from_slice(&code.to_ne_bytes());
        b[16..20].copy_from_slice(&pid.to_ne_bytes());
        b[24..28].copy_from_slice(&status.to_ne_bytes());
        b
    }

    #[test]
    fn parses_siginfo() {
        assert_eq!(
            ChildState::from_siginfo(&siginfo(libc::CLD_EXITED, 5, 3)),
            Some(ChildState::Exited(3))
        );
        assert_eq!(
            ChildState::from_siginfo(&siginfo(libc::CLD_KILLED, 5, 9)),
            Some(ChildState::Killed(Signal::SIGKILL))
        );
        let rt = libc::SIGRTMIN() + 1;
        let s = ChildState::from_siginfo(&siginfo(libc::CLD_DUMPED, 5, rt)).expect("state");
        assert_eq!(s.to_string(), "killed by SIGRTMIN+1 (core dumped)");
        assert_eq!(
            ChildState::from_siginfo(&siginfo(libc::CLD_EXITED, 0, 0)),
            None
        );
        assert_eq!(ChildState::from_siginfo(&[0u8; 10]), None);
        // The layout used above is libc's.
        assert_eq!(std::mem::size_of::<libc::siginfo_t>(), 128);
    }
}
