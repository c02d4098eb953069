//! Threads on another host: no fd can be passed between the local process and them, so
//! every channel between the two (a child's syscall socket, [`Thread::open_channels`]) is
//! a connection made through a unix socket that ssh forwards to the listening socket of
//! the host's bootstrap process (PROTOCOL.md section 6), accepted there by the thread
//! that is to hold it.
//!
//! # Invariants
//! - Every thread of one host holds the host's listening socket at the same number in its
//!   table (it is inherited by clones and kept by `unshare_files`: it is among the
//!   thread's reserved fds), so any of them can accept a channel.
//! - Channels of one host are made one at a time: each local `connect` is matched with the
//!   next `accept`, and the whole exchange is a critical part ([`crate::background`]), so
//!   a dropped future never leaves a connection pending for the next accept to take.
//! - A child of such a thread is watched through its parent's root epoller (its pidfd
//!   cannot reach the local reactor), and is always that thread's own child (no
//!   `CLONE_PARENT`: a pidfd cannot be moved to the grandparent either).
//!
//! # Safety
//! One borrowed handle to the listening socket, for the duration of an `accept4`.
#![allow(unsafe_code)]

use std::any::Any;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use rsyscall_handle::{Error, FileDescriptor, Result};
use rsyscall_near::{self as near, SOCK};

use crate::background::Critical;
use crate::thread::Thread;

/// One host reached through a forwarded unix socket: what every thread on it shares.
pub(crate) struct HostLink {
    /// The local unix socket that ssh forwards to the bootstrap's listening socket.
    forward: PathBuf,
    /// Describes the host in errors and logs (`ssh build-box`).
    name: String,
    /// Held while a channel is made, so each local connection meets the right accept.
    making: async_lock::Mutex<()>,
    /// What the link keeps alive and tears down when the last thread of the host is gone
    /// (the ssh session's local resources).
    _keep: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for HostLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostLink")
            .field("name", &self.name)
            .field("forward", &self.forward)
            .finish_non_exhaustive()
    }
}

impl HostLink {
    /// A link whose channels are made by connecting to `forward` from the local process;
    /// `keep` is dropped with the link.
    pub(crate) fn new(
        name: String,
        forward: PathBuf,
        keep: Box<dyn Any + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(HostLink {
            forward,
            name,
            making: async_lock::Mutex::new(()),
            _keep: keep,
        })
    }

    /// The host's description.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// How one thread of a host makes channels: the host's link and the number of the host's
/// listening socket in the thread's table.
#[derive(Clone, Debug)]
pub(crate) struct HostAccess {
    pub(crate) link: Arc<HostLink>,
    pub(crate) listener: near::FileDescriptor,
}

impl Thread {
    /// How this thread makes channels with the local process, if it is on another host.
    pub(crate) fn host(&self) -> Option<HostAccess> {
        self.inner
            .host
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records that this thread is on another host, or how it is reached now; returns
    /// what it replaced.
    pub(crate) fn set_host(&self, access: HostAccess) -> Option<HostAccess> {
        self.inner
            .host
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(access)
    }

    /// The error for passing an fd between the local process and a thread on another host.
    pub(crate) fn no_fd_passing(&self, what: &'static str) -> Error {
        let host = self
            .host()
            .map_or_else(|| "another host".to_owned(), |h| h.link.name().to_owned());
        Error::invalid(
            what,
            format!(
                "pid {} is on {host}: fds cannot be passed across hosts; make channels with \
                 Thread::open_channels, or pass fds between threads of that host",
                self.task().pid().as_raw()
            ),
        )
    }

    /// `n` channels between the local process and this thread of another host: for each,
    /// a connection to the forwarded socket (the local end) and the connection the thread
    /// accepted on the host's listening socket (the thread's end, close-on-exec).
    pub(crate) async fn host_channels(&self, n: usize) -> Result<Vec<(OwnedFd, FileDescriptor)>> {
        let Some(access) = self.host() else {
            return Err(Error::invalid(
                "host_channels",
                "not a thread of another host",
            ));
        };
        let thread = self.duplicate();
        Critical::new(async move {
            let _making = access.link.making.lock().await;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(one_channel(&thread, &access).await?);
            }
            Ok(out)
        })
        .await
    }
}

/// One channel: connect locally, accept in `thread`.
async fn one_channel(thread: &Thread, access: &HostAccess) -> Result<(OwnedFd, FileDescriptor)> {
    let local = UnixStream::connect(&access.link.forward).map_err(|source| Error::Io {
        what: "connecting to the forwarded socket of a remote host",
        source,
    })?;
    let task = thread.task();
    // SAFETY: `listener` is the host's listening socket in this thread's table, which the
    // thread keeps open for its life (a reserved fd, never closed by us); the handle lives
    // for this one accept, and is never closed or replaced.
    let listener = unsafe { FileDescriptor::borrowed(task, access.listener) };
    let remote = listener.accept4(SOCK::CLOEXEC).await?;
    Ok((OwnedFd::from(local), remote))
}
