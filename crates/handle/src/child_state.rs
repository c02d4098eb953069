//! `ChildState`, what `waitid` reports about a child: a leaf module, so the error type can
//! carry one without depending on the process handles.

use std::fmt;

use rsyscall_near::Signal;

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
    /// The state a `waitid` siginfo reports (see [`Siginfo::child_state`]).
    pub(crate) fn from_fields(pid: i32, code: i32, status: i32) -> Option<ChildState> {
        if pid == 0 {
            return None;
        }
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
