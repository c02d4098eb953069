//! Process syscalls: ids and signals.

use rsyscall_near as near;

use super::Task;
use crate::error::Result;

impl Task {
    /// `getpid()` — the task's pid in its own pid namespace.
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn getpid(&self) -> Result<near::Pid> {
        near::getpid(self.sysif())
            .await
            .map_err(self.error("getpid"))
    }

    /// `getppid()` — the pid of the task's parent (0 if outside its pid namespace).
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn getppid(&self) -> Result<near::Pid> {
        near::getppid(self.sysif())
            .await
            .map_err(self.error("getppid"))
    }

    /// `kill(pid, sig)` — signals a process by pid. Racy unless the pid is an unreaped
    /// child: prefer [`ChildProcess::kill`](crate::ChildProcess::kill).
    ///
    /// # Errors
    /// `ESRCH`, `EPERM`. See kill(2).
    pub async fn kill(&self, pid: near::Pid, sig: near::Signal) -> Result<()> {
        near::kill(self.sysif(), pid, sig)
            .await
            .map_err(self.error("kill"))
    }
}
