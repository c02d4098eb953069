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

    /// The state as the status word `wait(2)`/`waitpid(2)` give (what `WIFEXITED`,
    /// `WTERMSIG`, `WSTOPSIG`... decode): `status << 8` for an exit (the low 8 bits of the
    /// status, as the kernel keeps), the signal for a kill, `| 0x80` if a core was dumped,
    /// `sig << 8 | 0x7f` for a stop (a ptrace stop included), `0xffff` for a continue.
    pub fn wait_status(&self) -> i32 {
        match *self {
            ChildState::Exited(status) => (status & 0xff) << 8,
            ChildState::Killed(sig) => sig.as_raw(),
            ChildState::Dumped(sig) => sig.as_raw() | 0x80,
            ChildState::Stopped(sig) | ChildState::Trapped(sig) => (sig.as_raw() << 8) | 0x7f,
            ChildState::Continued => 0xffff,
        }
    }
}

/// The same state as std's `ExitStatus`, through its status word
/// ([`ChildState::wait_status`]): `code()`, `signal()`, `core_dumped()`, `stopped_signal()`
/// and `continued()` answer as for a child std waited for.
///
/// # Examples
///
/// ```
/// # use std::os::unix::process::ExitStatusExt;
/// # use std::process::ExitStatus;
/// # use rsyscall_handle::ChildState;
/// # use rsyscall_near::Signal;
/// assert_eq!(ExitStatus::from(ChildState::Exited(3)).code(), Some(3));
/// let killed = ExitStatus::from(ChildState::Killed(Signal::SIGKILL));
/// assert_eq!((killed.code(), killed.signal()), (None, Some(libc::SIGKILL)));
/// ```
impl From<ChildState> for std::process::ExitStatus {
    fn from(state: ChildState) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        std::process::ExitStatus::from_raw(state.wait_status())
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, ExitStatus};

    use super::*;

    /// `waitpid(pid, options)`'s status word, from the kernel.
    fn waitpid(pid: u32, options: i32) -> i32 {
        let mut status = 0;
        // SAFETY: `status` is a live local int the kernel writes once.
        let r = unsafe { libc::waitpid(pid as i32, &mut status, options) };
        assert_eq!(
            r,
            pid as i32,
            "waitpid: {}",
            std::io::Error::last_os_error()
        );
        status
    }

    fn kill(pid: u32, sig: Signal) {
        // SAFETY: kill has no memory effects; `pid` is our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid as i32, sig.as_raw()) }, 0);
    }

    /// Kills and reaps the child if the test fails before it did.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn states_convert_to_the_exit_status_std_gets_from_the_kernel() {
        // Exits: std's own wait of real children.
        for code in [0, 3, 255] {
            let got = Command::new("sh")
                .args(["-c", &format!("exit {code}")])
                .status()
                .unwrap();
            assert_eq!(ExitStatus::from(ChildState::Exited(code)), got);
            assert_eq!(got.code(), Some(code));
        }
        // A stop and a continue of one child, the status words from waitpid (std's wait
        // reports neither), then its kill, seen by std.
        let mut child = Reap(Command::new("sleep").arg("100").spawn().unwrap());
        let pid = child.0.id();
        kill(pid, Signal::SIGSTOP);
        let stopped = waitpid(pid, libc::WUNTRACED);
        assert_eq!(ChildState::Stopped(Signal::SIGSTOP).wait_status(), stopped);
        let stopped = ExitStatus::from(ChildState::Stopped(Signal::SIGSTOP));
        assert_eq!(stopped.stopped_signal(), Some(libc::SIGSTOP));
        assert_eq!(stopped.code(), None);
        kill(pid, Signal::SIGCONT);
        let continued = waitpid(pid, libc::WCONTINUED);
        assert_eq!(ChildState::Continued.wait_status(), continued);
        assert!(ExitStatus::from(ChildState::Continued).continued());
        kill(pid, Signal::SIGKILL);
        let killed = child.0.wait().unwrap();
        assert_eq!(
            ExitStatus::from(ChildState::Killed(Signal::SIGKILL)),
            killed
        );
        assert_eq!(
            (killed.code(), killed.signal()),
            (None, Some(libc::SIGKILL))
        );
        assert!(!killed.core_dumped());
        // A dumped core: the bit std decodes (a real dump depends on the core limit and
        // core_pattern of the machine).
        let dumped = ExitStatus::from(ChildState::Dumped(Signal::SIGSEGV));
        assert!(dumped.core_dumped());
        assert_eq!(dumped.signal(), Some(libc::SIGSEGV));
        let trapped = ExitStatus::from(ChildState::Trapped(Signal::SIGTRAP));
        assert_eq!(trapped.stopped_signal(), Some(libc::SIGTRAP));
    }
}
