//! `Thread::clone`: making a child process that runs a syscall server, in five steps (the
//! channels, the child's stack, the clone and its futex helper, the child's task, the
//! child's sockets), each a function below. The whole clone is one critical part
//! ([`crate::background`]): dropping its future finishes it in the background, then
//! disposes of the child.
//!
//! # When a child gets its futex helper
//! The helper (PROTOCOL.md section 4) reports the child's exec or exit when end of file on
//! its syscall socket cannot: when another process holds the socket too. A child of the
//! local process with its own fd table is the only holder of its server socket until it
//! makes a process itself (which copies or shares its table): its exec closes the socket
//! (close-on-exec runs after the kernel has left our address space and cleared
//! `PF_FORKNOEXEC`) and so does its exit (after it let go of our memory). Such a child is
//! cloned alone, without a helper, which saves the helper's clone, wakeup, exit and reaping
//! on every spawn; its stack is kept by its monitor until it is dead
//! ([`AsyncChildProcess`]), and its [`LazyHelper`] starts the helper the first time
//! anything clones from it. Children that share a table ours or another, persistent
//! children, and children of other threads get their helper at once, as before.
//!
//! # Safety
//! `clone` hands the kernel a stack image and tid pointers in memory allocated here. The
//! child runs on that stack until it execs or exits, which the futex helper reports: all
//! of that memory is handed to the service thread together with the helper's pidfd, and is
//! freed only after the helper has exited. On every failure after the clone, the child is
//! killed and its memory kept (leaked, or freed only once the child is reaped). The clone
//! runs as a critical part ([`crate::background`]), so no cancellation can drop that memory
//! between the clone and its hand-over either. The other
//! unsafe calls take fd numbers the kernel just created for us.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Weak};

use rsyscall_far as far;
use rsyscall_handle::structs::WaitId;
use rsyscall_handle::{
    Allocation, ChildProcess, Error, FdTableState, FileDescriptor, Memory, Result, Task,
};
use rsyscall_near::{self as near, Address, CLONE, Pid, Signal, SyscallError, W};
use rsyscall_server::proto::{StackImage, SymbolTable};

use crate::background::Critical;
use crate::connection::Connection;
use crate::monitor::AsyncChildProcess;
use crate::persistent::Reconnecting;
use crate::service;
use crate::syscall_connection::{HangupWatch, SyscallConnection};
use crate::thread::{ChildThread, Thread};

/// Stack for a clone child's server loop.
const STACK_SIZE: usize = 64 * 1024;
/// Stack for a futex helper.
const HELPER_STACK_SIZE: usize = 16 * 1024;

/// Flags `Thread::clone` accepts; the rest it sets itself (`VM`, `CHILD_CLEARTID`, `PIDFD`)
/// or cannot support (`THREAD`, `SIGHAND`, `SETTLS`, `VFORK`, tid-setting flags...).
const ALLOWED_CLONE_FLAGS: CLONE = CLONE::FILES
    .union(CLONE::FS)
    .union(CLONE::SIGHAND)
    .union(CLONE::PARENT)
    .union(CLONE::IO)
    .union(CLONE::SYSVSEM)
    .union(CLONE::NEWCGROUP)
    .union(CLONE::NEWIPC)
    .union(CLONE::NEWNET)
    .union(CLONE::NEWNS)
    .union(CLONE::NEWPID)
    .union(CLONE::NEWUSER)
    .union(CLONE::NEWUTS);

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Options of [`Thread::clone_with`] beyond the clone flags. [`CloneOptions::new`] (the
/// default) gives what [`Thread::clone`] does.
#[derive(Debug, Clone, Copy)]
pub struct CloneOptions {
    write_user_mappings: bool,
    /// Run the persistent server with this listening socket (of the cloning thread's
    /// table, inherited by the child) instead of the plain server.
    persistent_listen: Option<near::FileDescriptor>,
}

impl Default for CloneOptions {
    fn default() -> Self {
        CloneOptions::new()
    }
}

impl CloneOptions {
    /// The defaults: as [`Thread::clone`].
    pub const fn new() -> CloneOptions {
        CloneOptions {
            write_user_mappings: true,
            persistent_listen: None,
        }
    }

    /// The child runs `persistent_server` listening on `listen` (`Thread::clone_persistent`).
    pub(crate) const fn persistent(mut self, listen: near::FileDescriptor) -> CloneOptions {
        self.persistent_listen = Some(listen);
        self
    }

    /// With `CLONE::NEWUSER`: whether clone writes the child's id mappings (one line each
    /// for uid and gid, mapping this thread's effective ids to themselves); on by default.
    /// Off, the maps stay empty (every id inside is the overflow id) until someone in the
    /// parent user namespace writes them, for example with
    /// [`write_user_mappings`](crate::write_user_mappings) or by writing the child's
    /// `/proc/PID/uid_map` and `gid_map` directly; each can be written once.
    pub const fn automatically_write_user_mappings(mut self, write: bool) -> CloneOptions {
        self.write_user_mappings = write;
        self
    }
}

impl Thread {
    /// Makes a child process running a syscall server, and a [`ChildThread`] to drive it.
    ///
    /// `flags` may contain `FILES` (share this thread's fd table), `FS`, `IO`, `SYSVSEM`
    /// and the namespace flags `NEWCGROUP`, `NEWIPC`, `NEWNET`, `NEWNS`, `NEWPID`,
    /// `NEWUSER`, `NEWUTS`; the child always shares this thread's address space (`VM`).
    ///
    /// # Whose child it is
    /// A child must stay usable and waitable however the thread it was cloned from ends.
    /// So when this thread's parent is a live thread we drive, in the same pid namespace,
    /// the clone gets `CLONE_PARENT` and the child is that parent's, waited for by it
    /// ([`ChildThread::parent`]). By induction, every thread outside a new pid namespace
    /// is a child of the local process (of its service thread, which issues the local
    /// process's clones), and a thread cloned from a child thread keeps working, and is
    /// waited for, after that child execs or exits. There is no opting out; passing
    /// `CLONE::PARENT` yourself changes nothing where it is the default, and is
    /// [`Error::InvalidArgument`] where it cannot be honoured.
    ///
    /// The exceptions are threads in another pid namespace than their parent: the init of
    /// a new pid namespace (the kernel refuses `CLONE_PARENT` from it, `EINVAL`), and the
    /// children of a thread that called `unshare(CLONE::NEWPID)` (their parent could not
    /// name their children by the pids clone returns). Their children, and the children's
    /// descendants, stay theirs: they are waited for through that thread, so only while it
    /// runs its server. Once it has exec'd, they can no longer be waited for from here
    /// (dropping them still kills them; the program it runs must reap them).
    ///
    /// Every child runs with `PR_SET_PDEATHSIG` set to `SIGKILL`, which the kernel sends
    /// when its *parent* thread exits: so the children of the local process die with the
    /// process (the service thread lives as long), and those of any other thread with that
    /// thread's process (for the init of a pid namespace, the whole namespace dies with
    /// it anyway). The thread a child was cloned from may exit or exec without harm to it.
    ///
    /// # User namespaces
    /// With `NEWUSER`, the child's new user namespace gets one-line id mappings before this
    /// returns: this thread's effective uid and gid, to the same ids inside (written from
    /// this thread, in the parent user namespace, the unprivileged way: see
    /// [`write_user_mappings`](crate::write_user_mappings)). To write other mappings (a
    /// range, other ids) or none, skip these with [`Thread::clone_with`] and
    /// [`CloneOptions::automatically_write_user_mappings`].
    ///
    /// # Examples
    ///
    /// With `CLONE::FILES` the child shares this thread's fd table, so an fd made here after the clone is usable there:
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # use rsyscall_near::CLONE;
    /// # async_io::block_on(async {
    /// let thread = local_thread();
    /// let child = thread.clone(CLONE::FILES).await?;
    /// let pipe = thread.pipe().await?;
    /// let write_end = child.inherit_fd(&pipe.write)?;
    /// child.task().write_all_bytes(&write_end, b"from the child").await?;
    /// assert_eq!(thread.task().read_bytes(&pipe.read, 100).await?, b"from the child");
    /// child.exit(0).await?.check().await?;
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for unsupported flags; the errors of `clone` and of the
    /// setup syscalls.
    ///
    /// # Cancellation
    /// Once polled, the clone is finished even if this future is dropped: it completes on
    /// a background thread, and the child it made is then killed and reaped, its memory
    /// freed only after its futex helper has exited (see "Dropping and cancellation" in the
    /// [crate documentation](crate)).
    pub async fn clone(&self, flags: CLONE) -> Result<ChildThread> {
        self.clone_with(flags, CloneOptions::new()).await
    }

    /// [`Thread::clone`] with `options`.
    ///
    /// # Errors
    /// As [`Thread::clone`].
    ///
    /// # Cancellation
    /// As [`Thread::clone`].
    pub async fn clone_with(&self, flags: CLONE, options: CloneOptions) -> Result<ChildThread> {
        let parent = self.duplicate();
        Critical::new(async move { parent.clone_now(flags, options).await })
            .await
            .map(|(child, _)| child)
    }

    /// The clone of [`Thread::clone_persistent`](crate::PersistentThread): a child with its
    /// own table running the persistent server, and its reconnectable interface.
    pub(crate) async fn clone_persistent_child(
        &self,
        options: CloneOptions,
    ) -> Result<(ChildThread, Arc<Reconnecting>)> {
        let parent = self.duplicate();
        let (child, iface) =
            Critical::new(async move { parent.clone_now(CLONE::empty(), options).await }).await?;
        let iface = iface.ok_or_else(|| Error::invalid("clone_persistent", "no interface"))?;
        Ok((child, iface))
    }

    /// [`Thread::clone_with`]'s work, which must not stop half-way: it lends the child
    /// memory and makes processes and fds across its awaits.
    async fn clone_now(
        &self,
        flags: CLONE,
        options: CloneOptions,
    ) -> Result<(ChildThread, Option<Arc<Reconnecting>>)> {
        if !flags.difference(ALLOWED_CLONE_FLAGS).is_empty() {
            return Err(Error::InvalidArgument {
                what: "clone",
                detail: format!(
                    "unsupported flags {:?}; allowed: {ALLOWED_CLONE_FLAGS:?}",
                    flags.difference(ALLOWED_CLONE_FLAGS)
                ),
            });
        }
        let task = self.task();
        // The child runs the server code of the thread's address space, at addresses only
        // known for threads that share our memory or described themselves.
        let Some(symbols) = self.inner.symbols else {
            return Err(Error::invalid(
                "clone",
                "the addresses of the server code in this thread's address space are unknown \
                 (a persistent thread attached to from another program); clone from a thread \
                 that shares this program's memory or was bootstrapped",
            ));
        };
        // Closes queued on our table go out first. A child without CLONE_FILES would
        // otherwise inherit copies of fds whose handles are gone, and a loop of
        // clone+exec+wait, which leaves each child's pidfd to be closed and may make no
        // other syscall here, would grow the table without bound. Closes in flight from
        // another flush are waited for too.
        task.prepare_to_copy().await;
        // The child will hold a copy of (or share) this thread's table, and so its server
        // socket: end of file on that socket no longer tells this thread's death.
        self.start_lazy_helper().await?;
        // A new user namespace gets a one-line mapping of our ids, written from here (the
        // outer namespace) before the child is used: read the ids now.
        let outer_ids = if flags.contains(CLONE::NEWUSER) && options.write_user_mappings {
            Some((task.geteuid().await?, task.getegid().await?))
        } else {
            None
        };
        let (flags, waiter) = self.clone_waiter(flags)?;
        let kernel_parent = waiter
            .as_ref()
            .map_or_else(|| self.duplicate(), Thread::duplicate);

        // 1. The channels, with their remote ends in our table.
        let channels = self.child_channels(flags.contains(CLONE::FILES)).await?;
        // 2. The child's stack.
        let stack = ChildStack::new(
            task,
            channels.ends.server_sock.near(),
            &symbols,
            options.persistent_listen,
        )
        .await?;
        // 3. The clone and the futex helper. Fds whose handles exist now are the ones the
        //    child inherits.
        let generation = task.fd_table().generation();
        let helper_now = flags.contains(CLONE::FILES) || options.persistent_listen.is_some();
        let (pid, monitor, helper_pidfd, lazy) =
            self.clone_child(flags, waiter, stack, helper_now).await?;
        // 4 and 5. The child's task and its sockets; on failure, the child is killed.
        let persistent_listen = options.persistent_listen;
        let (child_task, server_sock, connection, iface, conn) = match self
            .child_task(
                flags,
                pid,
                channels,
                helper_pidfd,
                generation,
                persistent_listen,
            )
            .await
        {
            Ok(parts) => parts,
            Err(e) => {
                monitor.abandon(Signal::SIGKILL, Box::new(()));
                return Err(e);
            }
        };
        let thread = Thread::from_parts(
            child_task,
            connection,
            self.inner.environ.clone(),
            Some(kernel_parent.duplicate()),
            // A persistent server's socket changes at each reconnect: its interface knows.
            iface.is_none().then(|| server_sock.near()),
            Some(symbols),
        );
        let label = child_label(iface.is_some(), pid);
        thread.created(
            label.kind,
            label.pid,
            format_args!("clone from [{}] with flags {flags:?}", self.label()),
        );
        if let Some(iface) = &iface {
            let _ = thread.inner.persistent.set(Arc::clone(iface));
        }
        let plain_conn = conn.clone();
        if let Some(mut lazy) = lazy {
            lazy.conn = conn;
            // A fresh thread: nobody else holds the lock.
            if let Some(mut slot) = thread.inner.lazy_helper.try_lock() {
                *slot = Some(lazy);
            }
        }
        if let Some(host) = self.host() {
            // Same host, and the listening socket at the same number in its table.
            let _ = thread.set_host(host);
        }
        let mut child = ChildThread::new(
            thread,
            kernel_parent,
            monitor,
            server_sock,
            flags.contains(CLONE::SIGHAND),
        );
        child.connection = plain_conn;
        if let Some((uid, gid)) = outer_ids {
            // On failure the child is dropped, which kills it.
            crate::unshare::write_user_mappings(task, pid, uid, gid, uid, gid).await?;
        }
        Ok((child, iface))
    }

    /// The task of the child `pid` cloned with `flags` (its connection over `channels`,
    /// hung up when `helper_pidfd` becomes readable), and its handles to its ends of the
    /// channels. `generation` is our table's, taken just before the clone.
    async fn child_task(
        &self,
        flags: CLONE,
        pid: Pid,
        channels: Channels,
        helper_pidfd: Option<HangupWatch>,
        generation: u64,
        persistent_listen: Option<near::FileDescriptor>,
    ) -> Result<(
        Task,
        FileDescriptor,
        Option<Connection>,
        Option<Arc<Reconnecting>>,
        Weak<SyscallConnection>,
    )> {
        let task = self.task();
        let shares_table = flags.contains(CLONE::FILES);
        let ns = task.namespaces();
        let children_pidns = task.pidns_for_children();
        let child_ns = child_namespaces(&ns, children_pidns, flags, pid);
        let fd_table = if shares_table {
            task.fd_table()
        } else {
            FdTableState::new(child_ns.fd_table)
        };
        let Channels { access, ends } = channels;
        let conn = SyscallConnection::new(access.into(), ends.server_sock.near())
            .map_err(io("registering a connection"))?;
        if let Some(watch) = helper_pidfd {
            conn.hangup_on(watch).map_err(io("registering a pidfd"))?;
        }
        near::SyscallInterface::set_label(&conn, child_label(persistent_listen.is_some(), pid));
        if self.host().is_none() && persistent_listen.is_none() {
            // Its server answers on this socket directly, on this machine.
            conn.spin_for_answers();
        }
        // The child's pid in its own pid namespace: ours for it, unless it is in another.
        let own_pid = if flags.contains(CLONE::NEWPID) {
            Pid::new(1)
        } else if children_pidns.is_some() {
            // A namespace this thread entered with unshare or setns: only the child knows.
            near::getpid(&conn).await.map_err(|source| Error::Syscall {
                syscall: "getpid",
                pid: pid.as_raw(),
                source,
            })?
        } else {
            pid
        };
        let (sysif, iface, weak): (Arc<dyn near::SyscallInterface>, _, _) = match persistent_listen
        {
            None => {
                let conn = Arc::new(conn);
                let weak = Arc::downgrade(&conn);
                (conn, None, weak)
            }
            Some(listen) => {
                let iface = Arc::new(Reconnecting::new(conn, Some(listen)));
                (iface.clone(), Some(iface), Weak::new())
            }
        };
        let memory = match &iface {
            // A persistent child in an address space reached through its creator (a
            // bootstrapped or remote thread) outlives that creator's connection: its
            // memory is reached through its own connection, with an allocator of its own
            // (mapping its own arenas) for the same address space.
            Some(iface)
                if task.memory().space() != rsyscall_handle::local_namespaces().address_space =>
            {
                // SAFETY: `iface` runs syscalls in the child, whose address space is the
                // parent's (`CLONE_VM`), the identity `space` every task of it uses; its
                // transport reads and writes that memory in-band; this allocator only
                // hands out arenas it maps itself.
                unsafe { Memory::new(task.memory().space(), iface.clone(), iface.clone()) }
            }
            _ => task.memory().clone(),
        };
        // SAFETY: `sysif` reaches the child's server (directly, or through the current
        // connection of a persistent one); `own_pid` is its pid in its own pid
        // namespace and `child_ns` its namespaces (ours, renewed for the flags); the table
        // state is ours when it shares our table, else fresh for its copy, made from ours
        // after `generation` was taken; it shares our address space (`CLONE_VM`), which
        // `memory` serves.
        let child_task = unsafe {
            Task::new(
                sysif,
                own_pid,
                child_ns,
                fd_table,
                memory,
                (!shares_table).then_some((ns.fd_table, generation)),
            )
        };
        let (server_sock, connection) = ends.hand_over(shares_table, &child_task).await?;
        let server_sock = if iface.is_some() {
            // The persistent server owns the socket it serves on and closes it itself when
            // the connection ends; a handle of ours closing that number later would close
            // whatever the server got under it next.
            let n = server_sock.near();
            server_sock.leak();
            // SAFETY: the handle never closes the fd, and is never given out: it only
            // keeps the child's handle set complete. Replacing it would only break the
            // thread's own connection, which nothing here does.
            unsafe { FileDescriptor::borrowed(&child_task, n) }
        } else {
            server_sock
        };
        Ok((child_task, server_sock, connection, iface, weak))
    }

    /// The kernel's parent of a child cloned from this thread with `flags`, which is the
    /// thread that waits for it (`None`: this thread), and the flags to clone with.
    ///
    /// `CLONE::PARENT` is added when this thread's own parent is a live thread we drive in
    /// the same pid namespace: that parent can name the child by the pid clone returns
    /// here. Otherwise the child is this thread's; asking for `CLONE::PARENT` then is an
    /// error (from the init of a pid namespace the kernel would refuse it with `EINVAL`).
    fn clone_waiter(&self, flags: CLONE) -> Result<(CLONE, Option<Thread>)> {
        let explicit = flags.contains(CLONE::PARENT);
        if self.host().is_some() {
            // The child's pidfd could not be moved to the grandparent's table.
            if explicit {
                return Err(Error::invalid(
                    "clone",
                    "CLONE_PARENT from a thread on another host: its children are its own",
                ));
            }
            return Ok((flags, None));
        }
        match &self.inner.parent {
            Some(p) if p.task().namespaces().pidns != self.task().namespaces().pidns => {
                if explicit {
                    Err(Error::invalid(
                        "clone",
                        "CLONE_PARENT from a thread in another pid namespace than its parent (a \
                         new pid namespace's init, or a child made after unshare(CLONE_NEWPID)): \
                         the parent could not name the child",
                    ))
                } else {
                    Ok((flags, None))
                }
            }
            Some(p) if p.is_dead() => {
                if explicit {
                    Err(Error::invalid(
                        "clone",
                        "CLONE_PARENT from a thread whose parent thread is gone",
                    ))
                } else {
                    Ok((flags, None))
                }
            }
            Some(p) => Ok((flags | CLONE::PARENT, Some(p.duplicate()))),
            None if explicit => Err(Error::invalid(
                "clone",
                "CLONE_PARENT from a thread whose parent is not ours to drive (the local \
                 process's parent cannot wait for the child)",
            )),
            None => Ok((flags, None)),
        }
    }

    /// The syscall channel, and (unless the child will use the local table) a connection
    /// for passing fds, with their remote ends moved into our table.
    async fn child_channels(&self, shares_table: bool) -> Result<Channels> {
        if self.host().is_some() {
            // One channel through the host's forwarded socket; no fd-passing connection,
            // since no fd can cross to that host.
            let (access, server_sock) = self
                .host_channels(1)
                .await?
                .pop()
                .ok_or_else(|| Error::invalid("clone", "no channel was made"))?;
            return Ok(Channels {
                access: UnixStream::from(access),
                ends: ChildEnds {
                    server_sock,
                    fdpass: None,
                },
            });
        }
        let (access, server_local) = UnixStream::pair().map_err(io("socketpair"))?;
        let mut remote_local: Vec<OwnedFd> = vec![server_local.into()];
        let fdpass_local = if shares_table && self.uses_local_table() {
            None
        } else {
            let (a, b) = UnixStream::pair().map_err(io("socketpair"))?;
            remote_local.push(b.into());
            Some(OwnedFd::from(a))
        };
        let mut remote = self.local_to_thread(remote_local).await?.into_iter();
        let server_sock = remote
            .next()
            .ok_or_else(|| Error::invalid("clone", "lost socket"))?;
        let fdpass = match (fdpass_local, remote.next()) {
            (Some(local), Some(theirs)) => Some((local, theirs)),
            _ => None,
        };
        Ok(Channels {
            access,
            ends: ChildEnds {
                server_sock,
                fdpass,
            },
        })
    }

    /// Clones the child on `stack` and starts its futex helper, then sets up the child's
    /// monitor and hands the stack and the helper to the service thread. Returns the
    /// child's pid (in our namespace), its monitor and a copy of the helper's pidfd. After
    /// a successful clone, any failure kills the child and keeps its stack until it is gone.
    async fn clone_child(
        &self,
        flags: CLONE,
        waiter: Option<Thread>,
        stack: ChildStack,
        helper_now: bool,
    ) -> Result<(
        Pid,
        AsyncChildProcess,
        Option<HangupWatch>,
        Option<LazyHelper>,
    )> {
        let task = self.task();
        if task.memory().space() != rsyscall_handle::local_namespaces().address_space {
            let (pid, monitor, watch) = self.clone_child_remote(flags, waiter, stack).await?;
            return Ok((pid, monitor, Some(watch), None));
        }
        let args = stack.clone_args(flags)?;
        if !helper_now && task.sysif().is_local() {
            // Alone, its helper left for later (see the module documentation).
            let futex = stack.futex()?;
            // SAFETY: `stack` holds the child's image and tid words; from the clone on it
            // is kept until the child is dead (by its monitor, below), or leaked on failure
            // in `monitor_clone`.
            let pid = unsafe { service::clone(args) }.await;
            let (pid, mut monitor, stack) = self.monitor_clone(pid, stack, waiter).await?;
            let stack = Arc::new(stack.mem);
            monitor.keep_until_dead(Box::new(Arc::clone(&stack)));
            let lazy = LazyHelper {
                futex,
                stack,
                conn: Weak::new(),
            };
            return Ok((pid, monitor, None, Some(lazy)));
        }
        let helper_prep = prepare_futex_helper(stack.futex()?).await?;
        let (pid, helper_cloned) = if task.sysif().is_local() {
            // The child, then its futex helper (the order matters: see PROTOCOL.md section
            // 4), in one trip to the service thread.
            // SAFETY: `stack` holds the child's image and tid words, kept until the futex
            // helper reports the child gone (or leaked on failure below); the helper's
            // memory is likewise kept until the helper has exited.
            let mut results = unsafe { service::clone_pair(args, helper_prep.args) }
                .await
                .into_iter();
            let child = results.next();
            // Present only if the child's clone succeeded and the helper's was attempted.
            let helper = results.next();
            let child = child.unwrap_or(Err(SyscallError::NotSent(near::NotSent::Cancelled)));
            (child, helper)
        } else {
            // SAFETY: as above.
            let child = unsafe {
                near::clone(
                    task.sysif(),
                    args.flags,
                    args.exit_signal,
                    args.stack,
                    args.ptid,
                    args.ctid,
                    0,
                )
            }
            .await;
            (child, None)
        };
        let (pid, monitor, stack) = self.monitor_clone(pid, stack, waiter).await?;
        let helper = match helper_cloned {
            Some(Ok(_)) => helper_prep.finish().await,
            Some(Err(source)) => Err(Task::local().error("clone")(source)),
            None => helper_prep.launch().await,
        };
        let helper = match helper {
            Ok(helper) => helper,
            Err(e) => {
                // Killed and reaped in the background with its stack, which is freed only
                // once the child is gone.
                monitor.abandon(Signal::SIGKILL, Box::new(stack.mem));
                return Err(e);
            }
        };
        // The helper exits once the child has exec'd or exited: only then may the child's
        // stack, futex word and the helper's own stack be reused. Handed over now, so that
        // no later failure can free them under the child.
        let watch = helper.pidfd.try_clone();
        service::reap_later(helper.pidfd, Box::new((stack.mem, helper.memory)));
        match watch {
            Ok(fd) => Ok((pid, monitor, Some(HangupWatch::Fd(fd)), None)),
            Err(e) => {
                monitor.abandon(Signal::SIGKILL, Box::new(()));
                Err(io("duplicating a pidfd")(e))
            }
        }
    }

    /// After the clone of a child on `stack` returned `pid`: its pidfd and monitor (waited
    /// for by `waiter`, or us). On any failure once a child may run on `stack`, the stack is
    /// kept for good (the child is killed where it can be named): a child may still run on
    /// it, and the kernel writes its futex word when it exits.
    async fn monitor_clone(
        &self,
        pid: std::result::Result<Pid, SyscallError>,
        stack: ChildStack,
        waiter: Option<Thread>,
    ) -> Result<(Pid, AsyncChildProcess, ChildStack)> {
        let task = self.task();
        let pid = match pid {
            Ok(pid) => pid,
            // The connection was lost with the clone sent: a child may run on `stack`
            // until its parent's death kills it.
            Err(SyscallError::Hangup) => {
                std::mem::forget(stack);
                return Err(task.error("clone")(SyscallError::Hangup));
            }
            Err(e) => return Err(task.error("clone")(e)),
        };
        let pidfd = match stack.pidfd(task).await {
            Ok(fd) => fd,
            Err(e) => {
                // Without its pidfd the child can only be named by pid, which is still
                // ours: it is not reaped yet.
                let _ = task.kill(pid, Signal::SIGKILL).await;
                std::mem::forget(stack);
                return Err(e);
            }
        };
        // From here on the child runs on `stack`.
        match self.monitor_child(waiter, pid, pidfd).await {
            Ok(monitor) => Ok((pid, monitor, stack)),
            Err(Unmonitored { error, reap }) => {
                match reap {
                    // Killed: the stack goes once the child is reaped.
                    Some(process) => reap_killed(process, Box::new(stack.mem)),
                    None => std::mem::forget(stack),
                }
                Err(error)
            }
        }
    }

    /// [`Thread::clone_child`] for a thread whose address space is not ours (a
    /// bootstrapped thread, or one cloned from it): the child runs the trampoline and
    /// server of that address space, and its futex helper is cloned there too, by this
    /// thread, running the helper from the thread's symbol table (PROTOCOL.md section 4).
    async fn clone_child_remote(
        &self,
        flags: CLONE,
        waiter: Option<Thread>,
        stack: ChildStack,
    ) -> Result<(Pid, AsyncChildProcess, HangupWatch)> {
        let task = self.task();
        let args = stack.clone_args(flags)?;
        let helper_waiter = waiter.as_ref().map(Thread::duplicate);
        // SAFETY: `stack` holds the child's image and tid words in the child's address
        // space; it is kept until the futex helper has exited (or leaked on failure).
        let pid = unsafe {
            near::clone(
                task.sysif(),
                args.flags,
                args.exit_signal,
                args.stack,
                args.ptid,
                args.ctid,
                0,
            )
        }
        .await;
        let (pid, monitor, stack) = self.monitor_clone(pid, stack, waiter).await?;
        let futex = match stack.futex() {
            Ok(f) => f,
            Err(e) => {
                monitor.abandon(Signal::SIGKILL, Box::new(stack.mem));
                return Err(e);
            }
        };
        match self
            .remote_futex_helper(flags & CLONE::PARENT, helper_waiter, futex)
            .await
        {
            Ok((helper, watch, helper_mem)) => {
                // The helper exits once the child exec'd or exited; both stacks are
                // freed only after it was reaped.
                helper.reap_when_exits(Box::new((stack.mem, helper_mem)));
                Ok((pid, monitor, watch))
            }
            Err(e) => {
                monitor.abandon(Signal::SIGKILL, Box::new(stack.mem));
                Err(e)
            }
        }
    }

    /// What says that the futex helper `helper` (a child of this thread or its waiter)
    /// exited: a local copy of its pidfd, or on another host a copy of the pidfd in this
    /// thread's table, on its root epoller.
    async fn helper_watch(&self, helper: &AsyncChildProcess) -> Result<HangupWatch> {
        if let Some(fd) = helper.local_pidfd() {
            return fd
                .try_clone_to_owned()
                .map(HangupWatch::Fd)
                .map_err(io("duplicating a pidfd"));
        }
        if self.host().is_none() {
            return Err(Error::invalid("clone", "the futex helper is not monitored"));
        }
        if self.inner.persistent.get().is_some() {
            // No root epoller there: the helper is polled, without reaping it.
            let task = self.task().clone();
            let pidfd = helper.process().pidfd().clone();
            return Ok(HangupWatch::Event(Box::pin(async move {
                loop {
                    let options = W::EXITED | W::NOHANG | W::NOWAIT;
                    match task.waitid(WaitId::PidFd(&pidfd), options).await {
                        Ok(None) => {
                            async_io::Timer::after(crate::monitor::POLL_INTERVAL).await;
                        }
                        // Exited, reaped already, or the thread is gone.
                        Ok(Some(_)) | Err(_) => return,
                    }
                }
            })));
        }
        let copy = helper.process().pidfd().dup().await?;
        let watched = self.make_afd(copy, false).await?;
        Ok(HangupWatch::Event(Box::pin(async move {
            if let Err(e) = watched.wait_readable().await {
                log::debug!("watching a futex helper: {e}");
            }
        })))
    }

    /// Clones, from this thread (in its address space, sharing its table, and with
    /// `parent_flag` the same kernel parent as the child, `waiter`), the protocol's
    /// stopping futex helper watching `futex`; waits for it to stop and continues it.
    /// Returns its monitor, a local copy of its pidfd, and the memory it runs on.
    pub(crate) async fn remote_futex_helper(
        &self,
        parent_flag: CLONE,
        waiter: Option<Thread>,
        futex: Address,
    ) -> Result<(AsyncChildProcess, HangupWatch, Allocation)> {
        let task = self.task();
        let symbols = self
            .inner
            .symbols
            .ok_or_else(|| Error::invalid("clone", "no server code known in this address space"))?;
        let mem = task.alloc(HELPER_STACK_SIZE + 8, 16).await?;
        let image = StackImage::with_trampoline(
            symbols.trampoline,
            symbols.futex_helper,
            [futex.as_u64(), 1, 0, 0, 0, 0],
        );
        let mut head = image.to_bytes().to_vec();
        head.extend_from_slice(&(-1i32).to_ne_bytes());
        mem.write(HelperPrep::IMAGE, &head).await?;
        // SAFETY: `mem` holds the helper's stack image and pidfd slot in this thread's
        // address space; it is kept until the helper was reaped (or leaked on failure).
        let pid = unsafe {
            near::clone(
                task.sysif(),
                CLONE::VM | CLONE::FILES | CLONE::PIDFD | parent_flag,
                Some(Signal::SIGCHLD),
                mem.addr_at(HelperPrep::IMAGE)?,
                mem.addr_at(HelperPrep::PIDFD)?,
                Address::NULL,
                0,
            )
        }
        .await;
        let pid = match pid {
            Ok(pid) => pid,
            Err(e) => {
                if matches!(e, SyscallError::Hangup) {
                    std::mem::forget(mem);
                }
                return Err(task.error("clone")(e));
            }
        };
        let slot = match mem.read(HelperPrep::PIDFD, 4).await {
            Ok(b) => b,
            Err(e) => {
                let _ = task.kill(pid, Signal::SIGKILL).await;
                std::mem::forget(mem);
                return Err(e);
            }
        };
        let n = i32::from_ne_bytes([slot[0], slot[1], slot[2], slot[3]]);
        // SAFETY: clone(CLONE_PIDFD) just created this fd in the task's table for us.
        let pidfd = unsafe { FileDescriptor::from_raw(task, near::FileDescriptor::new(n)) };
        let helper = match self.monitor_child(waiter, pid, pidfd).await {
            Ok(m) => m,
            Err(Unmonitored { error, reap }) => {
                match reap {
                    Some(process) => reap_killed(process, Box::new(mem)),
                    None => std::mem::forget(mem),
                }
                return Err(error);
            }
        };
        // The reference helper stops itself first; continue it once it has.
        let process = helper.process();
        let stopped = process
            .parent()
            .waitid(WaitId::PidFd(process.pidfd()), W::STOPPED)
            .await;
        let continued = match stopped {
            Ok(_) => helper.kill(Signal::SIGCONT).await,
            Err(e) => Err(e),
        };
        let watch = match &continued {
            Ok(()) => self.helper_watch(&helper).await,
            Err(_) => Err(Error::invalid("clone", "the futex helper did not start")),
        };
        match (continued, watch) {
            (Ok(()), Ok(watch)) => Ok((helper, watch, mem)),
            (Err(e), _) | (_, Err(e)) => {
                helper.abandon(Signal::SIGKILL, Box::new(mem));
                Err(e)
            }
        }
    }

    /// The monitor of a just-cloned child `pid` whose pidfd in our table is `pidfd`: waited
    /// for by us, or with `CLONE_PARENT` by `waiter`, which gets its own copy of the pidfd.
    /// On failure the child has been sent `SIGKILL`, and the failure says how to reap it
    /// where it can (these steps fail mostly for want of fds, as in `EMFILE`).
    async fn monitor_child(
        &self,
        waiter: Option<Thread>,
        pid: Pid,
        pidfd: FileDescriptor,
    ) -> std::result::Result<AsyncChildProcess, Unmonitored> {
        let task = self.task();
        if self.host().is_some() {
            // On another host (and so never with a waiter: see `clone_waiter`): the
            // child's exit is seen through the pidfd on this thread's root epoller, or
            // polled from a persistent thread, which can have none.
            if self.inner.persistent.get().is_some() {
                let process = ChildProcess::new(task, pid, pidfd);
                return Ok(AsyncChildProcess::polled(process, "rsyscall thread".into()));
            }
            let watched = match self.make_afd(pidfd.clone(), false).await {
                Ok(afd) => afd,
                Err(error) => {
                    let _ =
                        near::pidfd_send_signal(task.sysif(), pidfd.near(), Signal::SIGKILL).await;
                    return Err(Unmonitored::reap(
                        error,
                        ChildProcess::new(task, pid, pidfd),
                    ));
                }
            };
            let process = ChildProcess::new(task, pid, pidfd);
            return Ok(AsyncChildProcess::on_epoller(
                process,
                watched,
                "rsyscall thread".into(),
            ));
        }
        let local_pidfd = match self.thread_to_local(&pidfd).await {
            Ok(fd) => fd,
            Err(error) => {
                let _ = near::pidfd_send_signal(task.sysif(), pidfd.near(), Signal::SIGKILL).await;
                return Err(match waiter {
                    None => Unmonitored::reap(error, ChildProcess::new(task, pid, pidfd)),
                    // Its parent has no pidfd for it yet.
                    Some(_) => Unmonitored::error(error),
                });
            }
        };
        let process = match waiter {
            None => ChildProcess::new(task, pid, pidfd),
            Some(waiter) => {
                let copy = local_pidfd.try_clone().map_err(io("duplicating a pidfd"));
                let moved = match copy {
                    Ok(copy) => waiter.local_to_thread(vec![copy]).await,
                    Err(e) => Err(e),
                };
                match moved.map(|mut v| v.pop()) {
                    Ok(Some(fd)) => ChildProcess::new(waiter.task(), pid, fd),
                    Ok(None) | Err(_) => {
                        service::pidfd_signal(&local_pidfd, Signal::SIGKILL);
                        let error =
                            Error::invalid("clone", "could not give the pidfd to the parent");
                        // When the parent shares our table, the local pidfd is its own.
                        return Err(if waiter.uses_local_table() {
                            match FileDescriptor::from_owned_fd(waiter.task(), local_pidfd) {
                                Ok(fd) => Unmonitored::reap(
                                    error,
                                    ChildProcess::new(waiter.task(), pid, fd),
                                ),
                                Err(_) => Unmonitored::error(error),
                            }
                        } else {
                            Unmonitored::error(error)
                        });
                    }
                }
            }
        };
        // The child's monitor exists from now on: exec and exit only hand it over.
        match AsyncChildProcess::new(process, local_pidfd, "rsyscall thread".into()) {
            Ok(m) => Ok(m),
            Err((error, process)) => {
                let _ = process.kill(Signal::SIGKILL).await;
                Err(Unmonitored::reap(error, process))
            }
        }
    }
}

/// A just-cloned child that got no monitor: why, and, if it can be reaped, the child as
/// its parent waits for it. The child has been sent `SIGKILL`.
struct Unmonitored {
    error: Error,
    reap: Option<ChildProcess>,
}

impl Unmonitored {
    fn reap(error: Error, process: ChildProcess) -> Unmonitored {
        Unmonitored {
            error,
            reap: Some(process),
        }
    }

    fn error(error: Error) -> Unmonitored {
        Unmonitored { error, reap: None }
    }
}

/// Has `process`, a killed child whose monitor could not be made, reaped in the
/// background, then drops `keep`, the memory it ran on: the monitor's own abandonment,
/// with the child polled (registering anything may need the very fds that ran out).
fn reap_killed(process: ChildProcess, keep: Box<dyn std::any::Any + Send>) {
    AsyncChildProcess::polled(process, "rsyscall thread".into()).abandon(Signal::SIGKILL, keep);
}

/// The namespaces of a child cloned with `flags` from a thread in `ns` whose children go
/// to `children_pidns` (if not its own pid namespace), as pid `pid`: new identities for
/// what `flags` unshares (and for the fd table unless it is shared).
fn child_namespaces(
    ns: &far::Namespaces,
    children_pidns: Option<far::PidNamespace>,
    flags: CLONE,
    pid: Pid,
) -> far::Namespaces {
    // Without NEWPID the child is in the namespace of our children, which may not be ours.
    let ours = far::Namespaces {
        pidns: children_pidns.unwrap_or(ns.pidns),
        ..*ns
    };
    let mut child = ours.renewed(flags, pid);
    if !flags.contains(CLONE::FILES) {
        child.fd_table = far::FdTable::new(pid);
    }
    child
}

/// A child's channels before it exists: our end of the syscall socketpair, and the ends
/// that are the child's.
struct Channels {
    access: UnixStream,
    ends: ChildEnds,
}

/// The child's end of the syscall socketpair in the parent's table, and the fd-passing
/// socketpair (our end, and the child's end in the parent's table).
struct ChildEnds {
    server_sock: FileDescriptor,
    fdpass: Option<(OwnedFd, FileDescriptor)>,
}

impl ChildEnds {
    /// Gives the child its handles to its ends of the channels (the same fds if it shares
    /// the parent's table, else the copies it inherited) and closes the parent's copies.
    async fn hand_over(
        self,
        shares_table: bool,
        child: &Task,
    ) -> Result<(FileDescriptor, Option<Connection>)> {
        if shares_table {
            let sock = self.server_sock.for_task(child)?;
            let conn = match self.fdpass {
                Some((ours, theirs)) => Some(Connection::new(ours, theirs.for_task(child)?)),
                None => None,
            };
            return Ok((sock, conn));
        }
        let sock = self.server_sock.inherit(child)?;
        let conn = match self.fdpass {
            Some((ours, in_parent)) => {
                let theirs = in_parent.inherit(child)?;
                in_parent.close().await?;
                Some(Connection::new(ours, theirs))
            }
            None => None,
        };
        // Close our copy of the child's server socket now, not at some later syscall:
        // while it is open, the child's exec or exit cannot show as EOF on the connection,
        // and only the (slower) futex helper would report it.
        self.server_sock.close().await?;
        Ok((sock, conn))
    }
}

/// One allocation with a clone child's stack (its image at the top), its
/// `CLONE_CHILD_CLEARTID` futex word and the slot the kernel writes its pidfd into.
struct ChildStack {
    mem: Allocation,
}

impl ChildStack {
    const IMAGE: usize = STACK_SIZE - 64;
    const FUTEX: usize = STACK_SIZE;
    const PIDFD: usize = STACK_SIZE + 4;

    /// Allocates it and writes the image (the trampoline calls `server(fd, fd)` with the
    /// child's server socket `server_fd`), the futex word (1) and the pidfd slot (-1).
    /// With `persistent_listen`, it calls `persistent_server(fd, fd, listen)` instead.
    async fn new(
        task: &Task,
        server_fd: near::FileDescriptor,
        symbols: &SymbolTable,
        persistent_listen: Option<near::FileDescriptor>,
    ) -> Result<ChildStack> {
        let mut mem = task.alloc(STACK_SIZE + 16, 16).await?;
        // The next child takes this stack again at once: handing its pages to the kernel
        // between children would only add a madvise and fresh page faults to each spawn.
        mem.keep_pages_when_freed();
        let fd = server_fd.as_raw() as u64;
        // The trampoline and server of the address space the child runs in.
        let image = match persistent_listen {
            None => StackImage::with_trampoline(
                symbols.trampoline,
                symbols.server,
                [fd, fd, 0, 0, 0, 0],
            ),
            Some(listen) => StackImage::with_trampoline(
                symbols.trampoline,
                symbols.persistent_server,
                [fd, fd, listen.as_raw() as u64, 0, 0, 0],
            ),
        };
        let mut head = image.to_bytes().to_vec();
        head.extend_from_slice(&1i32.to_ne_bytes());
        head.extend_from_slice(&(-1i32).to_ne_bytes());
        mem.write(Self::IMAGE, &head).await?;
        Ok(ChildStack { mem })
    }

    fn futex(&self) -> Result<Address> {
        self.mem.addr_at(Self::FUTEX)
    }

    /// The arguments of the clone that runs a child on this stack.
    fn clone_args(&self, flags: CLONE) -> Result<service::CloneArgs> {
        Ok(service::CloneArgs {
            flags: flags | CLONE::VM | CLONE::CHILD_CLEARTID | CLONE::PIDFD,
            exit_signal: Some(Signal::SIGCHLD),
            stack: self.mem.addr_at(Self::IMAGE)?,
            ptid: self.mem.addr_at(Self::PIDFD)?,
            ctid: self.futex()?,
        })
    }

    /// The pidfd the clone wrote into the slot, owned by `task` (the cloning task).
    async fn pidfd(&self, task: &Task) -> Result<FileDescriptor> {
        let b = self.mem.read(Self::PIDFD, 4).await?;
        let n = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        // SAFETY: clone(CLONE_PIDFD) just created this fd in the task's table for us.
        Ok(unsafe { FileDescriptor::from_raw(task, near::FileDescriptor::new(n)) })
    }
}

/// What starting a clone child's futex helper later takes (see the module documentation):
/// kept by the child's thread until something clones from it.
pub(crate) struct LazyHelper {
    /// The child's `CLONE_CHILD_CLEARTID` word.
    futex: Address,
    /// The child's stack, which holds that word: kept until the helper has exited too.
    stack: Arc<Allocation>,
    /// The child's connection, hung up when the helper exits.
    conn: Weak<SyscallConnection>,
}

impl Thread {
    /// Starts this thread's futex helper if it was left for later: before the thread makes
    /// a process, which would hold its server socket.
    async fn start_lazy_helper(&self) -> Result<()> {
        let mut slot = self.inner.lazy_helper.lock().await;
        let Some(futex) = slot.as_ref().map(|lazy| lazy.futex) else {
            return Ok(());
        };
        // Within the clone's critical part: once cloned, the helper is handed over below.
        let helper = prepare_futex_helper(futex).await?.launch().await?;
        let Some(lazy) = slot.take() else {
            return Ok(());
        };
        let watch = helper.pidfd.try_clone();
        service::reap_later(helper.pidfd, Box::new((helper.memory, lazy.stack)));
        match (watch, lazy.conn.upgrade()) {
            (Ok(fd), Some(conn)) => conn
                .hangup_on(HangupWatch::Fd(fd))
                .map_err(io("registering a pidfd")),
            (Ok(_), None) => Ok(()),
            (Err(e), _) => Err(io("duplicating a pidfd")(e)),
        }
    }
}

/// A running futex helper: its pidfd, and the memory it runs on.
struct FutexHelper {
    pidfd: OwnedFd,
    memory: Allocation,
}

/// The memory and clone arguments of a futex helper, before it is cloned: a process that
/// exits once the futex word it watches is no longer 1 (PROTOCOL.md section 4), cloned
/// from the local process, sharing its address space and table.
struct HelperPrep {
    mem: Allocation,
    args: service::CloneArgs,
}

impl HelperPrep {
    const IMAGE: usize = HELPER_STACK_SIZE - 64;
    const PIDFD: usize = HELPER_STACK_SIZE;
}

/// Prepares a futex helper's stack image and pidfd slot in local memory.
async fn prepare_futex_helper(futex: Address) -> Result<HelperPrep> {
    let task = Task::local();
    let mem = task.alloc(HELPER_STACK_SIZE + 8, 16).await?;
    let image = StackImage::new(
        rsyscall_server::futex_helper_nostop as *const () as u64,
        [futex.as_u64(), 1, 0, 0, 0, 0],
    );
    let mut head = image.to_bytes().to_vec();
    head.extend_from_slice(&(-1i32).to_ne_bytes());
    mem.write(HelperPrep::IMAGE, &head).await?;
    let args = service::CloneArgs {
        flags: CLONE::VM | CLONE::FILES | CLONE::PIDFD,
        exit_signal: Some(Signal::SIGCHLD),
        stack: mem.addr_at(HelperPrep::IMAGE)?,
        ptid: mem.addr_at(HelperPrep::PIDFD)?,
        ctid: Address::NULL,
    };
    Ok(HelperPrep { mem, args })
}

impl HelperPrep {
    /// The helper was cloned: take its pidfd.
    async fn finish(self) -> Result<FutexHelper> {
        let b = self.mem.read(Self::PIDFD, 4).await?;
        let n = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        // SAFETY: clone(CLONE_PIDFD) just created this fd in the local table for us.
        let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) };
        Ok(FutexHelper {
            pidfd,
            memory: self.mem,
        })
    }

    /// Clones the helper on its own (when the child was cloned by a remote thread).
    async fn launch(self) -> Result<FutexHelper> {
        let args = self.args;
        // SAFETY: `mem` holds the helper's stack image and pidfd slot; it is handed to the
        // service thread with the helper's pidfd and freed only after the helper exited.
        unsafe { service::clone(args) }
            .await
            .map_err(Task::local().error("clone"))?;
        self.finish().await
    }
}

/// The label in logs of a child cloned with pid `pid` (as clone returned it).
fn child_label(persistent: bool, pid: Pid) -> near::ThreadLabel {
    let kind = if persistent {
        near::ThreadKind::Persistent
    } else {
        near::ThreadKind::CloneChild
    };
    near::ThreadLabel::new(kind, pid.as_raw())
}
