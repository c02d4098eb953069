//! Socket syscalls: socketpair, shutdown, and passing fds with `SCM_RIGHTS`.

use rsyscall_near::{self as near, MSG, SHUT, SOCK};

use super::Task;
use crate::cmsg;
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;

impl Task {
    /// `socketpair(domain, type | SOCK_CLOEXEC, 0, fds)` — two connected sockets.
    ///
    /// # Errors
    /// `EAFNOSUPPORT`, `EOPNOTSUPP`, `EMFILE`. See socketpair(2).
    pub async fn socketpair(
        &self,
        domain: i32,
        ty: i32,
    ) -> Result<(FileDescriptor, FileDescriptor)> {
        self.prepare().await;
        let buf = self.malloc::<[i32; 2]>().await?;
        let addr = self.check_ptr(&buf)?;
        let buf = self.lend(buf);
        // SAFETY: addr is 8 bytes of the task's memory, lent until completion.
        let r = unsafe { near::socketpair(self.sysif(), domain, ty, SOCK::CLOEXEC, 0, addr) }.await;
        let ((), buf) = buf.settle(r).map_err(self.error("socketpair"))?;
        self.own_pair(buf.filled(8)?.0).await
    }

    /// `shutdown(fd, how)`.
    ///
    /// # Errors
    /// `ENOTCONN`, `ENOTSOCK`. See shutdown(2).
    pub async fn shutdown(&self, fd: &FileDescriptor, how: SHUT) -> Result<()> {
        let n = self.check_fd(fd)?;
        near::shutdown(self.sysif(), n, how)
            .await
            .map_err(self.error("shutdown"))
    }

    /// `sendmsg(sock, msg, MSG_NOSIGNAL)` with a one-byte payload and the fds in one
    /// `SCM_RIGHTS` message (PROTOCOL.md section 3). The fds are copied, not moved.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no fds or more than 253; the syscall's errors.
    pub async fn send_fds(&self, sock: &FileDescriptor, fds: &[&FileDescriptor]) -> Result<()> {
        let s = self.check_fd(sock)?;
        let nums = fds
            .iter()
            .map(|f| self.check_fd(f).map(|n| n.as_raw()))
            .collect::<Result<Vec<_>>>()?;
        self.prepare().await;
        let (msg, buf) = cmsg::build_msghdr(self, &nums, false).await?;
        let buf = self.lend(buf);
        let r = near::sendmsg(self.sysif(), s, msg, MSG::NOSIGNAL).await;
        buf.settle(r).map_err(self.error("sendmsg"))?;
        Ok(())
    }

    /// `recvmsg(sock, msg, MSG_CMSG_CLOEXEC)` expecting exactly `count` fds in one
    /// `SCM_RIGHTS` message; the fds come back as owning handles in this task's table.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on EOF or if another number of fds arrived (those that did
    /// are closed); the syscall's errors.
    pub async fn recv_fds(
        &self,
        sock: &FileDescriptor,
        count: usize,
    ) -> Result<Vec<FileDescriptor>> {
        let s = self.check_fd(sock)?;
        self.prepare().await;
        let (msg, buf) = cmsg::build_msghdr(self, &vec![-1; count], true).await?;
        let buf = self.lend(buf);
        // SAFETY: the msghdr and its buffers live in `buf`, lent until completion.
        let r = unsafe { near::recvmsg(self.sysif(), s, msg, MSG::CMSG_CLOEXEC) }.await;
        let (n, buf) = buf.settle(r).map_err(self.error("recvmsg"))?;
        let received = cmsg::parse_fds(&buf).await?;
        let fds: Vec<FileDescriptor> = received
            .iter()
            .map(|&n| self.own(near::FileDescriptor::new(n)))
            .collect();
        if n == 0 && fds.is_empty() {
            return Err(Error::invalid(
                "recv_fds",
                "EOF: the peer closed the socket",
            ));
        }
        if fds.len() != count {
            return Err(Error::invalid(
                "recv_fds",
                format!("expected {count} fds, received {}", fds.len()),
            ));
        }
        Ok(fds)
    }
}
