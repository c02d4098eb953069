//! `Connection`: moving file descriptors between the local process and a thread's fd table
//! over a socketpair, one `SCM_RIGHTS` message per move.
//!
//! A move is a critical part ([`crate::background`]) from the moment its message is sent:
//! dropped then, it is finished in the background and the moved fds are closed, so the
//! message is never left on the socket for the next move to receive in place of its own.
//!
//! # Safety
//! The unsafe calls own the fds the kernel just installed by `SCM_RIGHTS`, compute control
//! buffer sizes, and borrow the thread's copy of the remote end in a table that unshared.
#![allow(unsafe_code)]

use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{self as sock, ControlMessage, ControlMessageOwned, MsgFlags};
use rsyscall_handle::{Error, FileDescriptor, Result, Task};

use crate::background::Critical;

/// One end of a socketpair in the local process and the other in a thread's fd table.
///
/// Moves are serialized: fds sent on the socket are received in order, so one move's send
/// and receive must not interleave with another's.
pub struct Connection {
    /// Held for a whole move, by the background thread too if the move's future is dropped.
    local: Arc<async_lock::Mutex<OwnedFd>>,
    remote: FileDescriptor,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

fn io(what: &'static str) -> impl Fn(nix::Error) -> Error {
    move |e| Error::Io {
        what,
        source: std::io::Error::from(e),
    }
}

impl Connection {
    /// A connection over `local` (in the local table) and `remote` (in the thread's table),
    /// two ends of one socketpair.
    ///
    /// Crate-private: moves borrow the copy of `remote` in tables that unshared, trusting
    /// that it is a thread's own fd-passing socket, which the thread keeps open.
    pub(crate) fn new(local: OwnedFd, remote: FileDescriptor) -> Self {
        Connection {
            local: Arc::new(async_lock::Mutex::new(local)),
            remote,
        }
    }

    /// The remote end, in the thread's table (as it was when the connection was made).
    pub fn remote(&self) -> &FileDescriptor {
        &self.remote
    }

    /// The remote end as used by `task`: the same fd if it shares the table, or (not
    /// owned: the connection keeps it) the copy its table got when it unshared its fd
    /// table.
    fn remote_for(&self, task: &Task) -> Result<FileDescriptor> {
        if task.fd_table().id() == self.remote.far().table {
            return self.remote.for_task(task);
        }
        // The copy is owned by the connection's thread (its reserved fds), not by this
        // move: a borrowed handle to it, after checking that the copy exists.
        let near = self.remote.inherited_number(task)?;
        // SAFETY: `near` is the copy of the remote end that `task`'s table got when it
        // unshared (inherited_number checked it): the thread keeps it open for this connection (it
        // is among its reserved fds) and nothing else owns it. The handle lives for one
        // move, which only sends or receives on it.
        Ok(unsafe { FileDescriptor::borrowed(task, near) })
    }

    /// Copies local fds into the table of `task` (which uses the remote end's table).
    ///
    /// # Errors
    /// Local `sendmsg` errors and the remote `recvmsg`'s.
    pub async fn send_to_remote(
        &self,
        task: &Task,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Vec<FileDescriptor>> {
        let remote = self.remote_for(task)?;
        let local = self.local.lock_arc().await;
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        sock::sendmsg::<()>(
            local.as_raw_fd(),
            &[IoSlice::new(&[0])],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io("sendmsg on a connection"))?;
        // Sent: the receive must happen, under the lock, even if this future is dropped.
        let (task, count) = (task.clone(), fds.len());
        Critical::new(async move {
            let received = task.recv_fds(&remote, count).await;
            drop(local);
            received
        })
        .await
    }

    /// Copies fds of `task`'s table (which uses the remote end's table) into the local one.
    ///
    /// # Errors
    /// The remote `sendmsg`'s errors and the local `recvmsg`'s; receiving another number of
    /// fds than sent is [`Error::InvalidArgument`].
    pub async fn recv_from_remote(
        &self,
        task: &Task,
        fds: &[&FileDescriptor],
    ) -> Result<Vec<OwnedFd>> {
        let remote = self.remote_for(task)?;
        let local = self.local.lock_arc().await;
        // Once the remote sendmsg is sent, the local receive must follow it, under the
        // lock, even if this future is dropped (the fds are then closed).
        let (task, fds): (Task, Vec<FileDescriptor>) =
            (task.clone(), fds.iter().map(|&f| f.clone()).collect());
        Critical::new(async move {
            let fds: Vec<&FileDescriptor> = fds.iter().collect();
            task.send_fds(&remote, &fds).await?;
            receive(&local, fds.len())
        })
        .await
    }
}

/// Receives the `count` fds of one `SCM_RIGHTS` message on `local` (sent just before).
fn receive(local: &OwnedFd, count: usize) -> Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE((4 * count) as u32) } as usize;
    let mut cmsg_buf = vec![0u8; space];
    let msg = sock::recvmsg::<()>(
        local.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg_buf),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io("recvmsg on a connection"))?;
    let mut out = Vec::new();
    for c in msg.cmsgs().map_err(io("parsing control messages"))? {
        if let ControlMessageOwned::ScmRights(got) = c {
            for fd in got {
                // SAFETY: the kernel just installed this fd in our table for us.
                out.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if out.len() != count {
        return Err(Error::InvalidArgument {
            what: "Connection::recv_from_remote",
            detail: format!("expected {count} fds, received {}", out.len()),
        });
    }
    Ok(out)
}
