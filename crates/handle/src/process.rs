//! `ChildProcess`: a child we can signal and wait on without ever hitting a reused pid.
//!
//! # Safety
//! The one unsafe call is `waitid`, whose siginfo buffer is an allocation of the parent's
//! address space held in an `InFlight` guard until the syscall completes.
#![allow(unsafe_code)]

use std::fmt;
use std::sync::Mutex;

use rsyscall_near::{self as near, IdType, Signal, W};

use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::memory::InFlight;
use crate::task::Task;

/// A state change of a child, as `waitid` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChildState {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal.
    Killed(Signal),
    /// Killed by this signal, dumping core.
    Dumped(Signal),
    /// Stopped by this signal.
    Stopped(Signal),
    /// Stopped by ptrace with this signal.
    Trapped(Signal),
    /// Continued by `SIGCONT`.
    Continued,
}

impl fmt::Display for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildState::Exited(s) => write!(f, "exited with status {s}"),
            ChildState::Killed(s) => write!(f, "killed by {s}"),
            ChildState::Dumped(s) => write!(f, "killed by {s} (core dumped)"),
            ChildState::Stopped(s) => write!(f, "stopped by {s}"),
            ChildState::Trapped(s) => write!(f, "trapped by {s}"),
            ChildState::Continued => write!(f, "continued"),
        }
    }
}

impl ChildState {
    /// Parses a `siginfo_t` filled by `waitid`; `None` if it reports no event (`si_pid` 0,
    /// as after `WNOHANG` with nothing to report).
    pub fn from_siginfo(bytes: &[u8]) -> Option<ChildState> {
        let i32_at = |off: usize| {
            bytes
                .get(off..off + 4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let pid = i32_at(16)?;
        if pid == 0 {
            return None;
        }
        let code = i32_at(8)?;
        let status = i32_at(24)?;
        let sig = || Signal::new(status);
        Some(match code {
            libc::CLD_EXITED => ChildState::Exited(status),
            libc::CLD_KILLED => ChildState::Killed(sig()?),
            libc::CLD_DUMPED => ChildState::Dumped(sig()?),
            libc::CLD_STOPPED => ChildState::Stopped(sig()?),
            libc::CLD_TRAPPED => ChildState::Trapped(sig()?),
            libc::CLD_CONTINUED => ChildState::Continued,
            _ => return None,
        })
    }

    /// Whether the child is gone (exited, killed or dumped).
    pub fn died(&self) -> bool {
        matches!(
            self,
            ChildState::Exited(_) | ChildState::Killed(_) | ChildState::Dumped(_)
        )
    }

    /// Whether the child exited with status 0.
    pub fn clean(&self) -> bool {
        matches!(self, ChildState::Exited(0))
    }
}

#[derive(Default)]
struct Status {
    busy: bool,
    death: Option<ChildState>,
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
            pidfd,
            status: Mutex::new(Status::default()),
        }
    }

    /// The pid, in the parent's pid namespace.
    pub fn pid(&self) -> near::Pid {
        self.pid
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

    /// Records a death observed elsewhere (for example when the parent's table is gone).
    pub fn mark_dead(&self, state: ChildState) {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).death = Some(state);
    }

    /// `pidfd_send_signal(pidfd, sig)` — signals the child.
    ///
    /// # Errors
    /// [`Error::ChildGone`] once reaped, [`Error::ChildBusy`] during another kill or wait,
    /// and the syscall's errors.
    pub async fn kill(&self, sig: Signal) -> Result<()> {
        if let Some(state) = self.death() {
            return Err(Error::ChildGone {
                pid: self.pid.as_raw(),
                state,
            });
        }
        let _busy = self.borrow()?;
        let fd = self.parent.far().near_fd(&self.pidfd.far())?;
        near::pidfd_send_signal(self.parent.sysif(), fd, sig)
            .await
            .map_err(|source| Error::Syscall {
                syscall: "pidfd_send_signal",
                pid: self.parent.pid().as_raw(),
                source,
            })
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
        let fd = self.parent.far().near_fd(&self.pidfd.far())?;
        let buf = self
            .parent
            .alloc(std::mem::size_of::<libc::siginfo_t>(), 8)
            .await?;
        buf.write(0, &[0u8; std::mem::size_of::<libc::siginfo_t>()])
            .await?;
        let buf = InFlight::new(buf);
        // SAFETY: the siginfo buffer is an allocation of the right size in the parent's
        // address space, kept (or leaked) until the syscall is done.
        let r = unsafe {
            near::waitid(
                self.parent.sysif(),
                IdType::PidFd(fd),
                buf.get().addr(),
                options,
                near::Address::NULL,
            )
        }
        .await;
        let ((), buf) = buf.settle(r).map_err(|source| Error::Syscall {
            syscall: "waitid",
            pid: self.parent.pid().as_raw(),
            source,
        })?;
        let info = buf.read(0, std::mem::size_of::<libc::siginfo_t>()).await?;
        let state = ChildState::from_siginfo(&info);
        if let Some(s) = state
            && s.died()
            && !options.contains(W::NOWAIT)
        {
            self.mark_dead(s);
        }
        Ok(state)
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
