//! Unsharing from a thread: [`Thread::unshare`] (new namespaces, a private fs context, a
//! private fd table), user namespaces with automatic id mappings, and
//! [`Thread::do_cloexec_except`] (and [`Thread::mark_cloexec_except`]).
//!
//! Each unshare is a critical part ([`crate::background`]): dropped once started, it is
//! finished in the background, so the thread's task always records what its process did.
//!
//! User namespace id mappings are written the unprivileged way, which also works with
//! privileges: `setgroups` is set to `deny` first (the kernel requires it before an
//! unprivileged `gid_map`), then one line `inner outer 1` to `uid_map` and to `gid_map`.
//!
//! # Safety
//! `do_cloexec_except` closes fds by number, and reads and sets fd flags by number. It
//! does so only in a table that is not this program's, and closes only numbers that no
//! handle names (the fd table's registry of live handles, checked just before each close):
//! no fd that Rust code of ours owns is closed.
#![allow(unsafe_code)]

use rsyscall_handle::{Error, FileDescriptor, Result, Task};
use rsyscall_near::{self as near, CLONE, Errno, FD, O, Pid};

use crate::background::Critical;
use crate::thread::Thread;

/// The flags [`Thread::unshare`] accepts.
pub const THREAD_UNSHARE_FLAGS: CLONE = CLONE::FILES
    .union(CLONE::FS)
    .union(CLONE::NEWUSER)
    .union(CLONE::NEWNS)
    .union(CLONE::NEWNET)
    .union(CLONE::NEWUTS)
    .union(CLONE::NEWIPC);

/// Refuses an id the kernel reads as "none" (`(uid_t)-1`).
fn check_id(what: &'static str, id: u32) -> Result<()> {
    if id == u32::MAX {
        return Err(Error::invalid(
            what,
            "id 4294967295 is (uid_t)-1, which cannot be mapped",
        ));
    }
    Ok(())
}

/// Opens `path` for writing through `task` and writes `data` in one `write`, as the
/// `/proc` id-map files require.
async fn write_proc_file(task: &Task, path: &[u8], data: &[u8]) -> Result<()> {
    let fd = task.open(path, O::WRONLY, 0).await?;
    let written = task.write_bytes(&fd, data).await;
    let closed = fd.close().await;
    let n = written?;
    closed?;
    if n != data.len() {
        return Err(Error::invalid(
            "write_user_mappings",
            format!(
                "{} took {n} of {} bytes",
                String::from_utf8_lossy(path),
                data.len()
            ),
        ));
    }
    Ok(())
}

/// Writes `setgroups` ("deny"), `uid_map` and `gid_map` under `proc_dir` through `task`.
async fn write_mappings(
    task: &Task,
    proc_dir: &str,
    outer: (u32, u32),
    inner: (u32, u32),
) -> Result<()> {
    for id in [outer.0, outer.1, inner.0, inner.1] {
        check_id("write_user_mappings", id)?;
    }
    match write_proc_file(task, format!("{proc_dir}/setgroups").as_bytes(), b"deny").await {
        // Kernels before 3.19 have no setgroups file, and need no "deny".
        Err(e) if e.errno() == Some(Errno::ENOENT) => {}
        other => other?,
    }
    let uid_line = format!("{} {} 1\n", inner.0, outer.0);
    write_proc_file(
        task,
        format!("{proc_dir}/uid_map").as_bytes(),
        uid_line.as_bytes(),
    )
    .await?;
    let gid_line = format!("{} {} 1\n", inner.1, outer.1);
    write_proc_file(
        task,
        format!("{proc_dir}/gid_map").as_bytes(),
        gid_line.as_bytes(),
    )
    .await
}

/// Writes the id mappings of a process in a new user namespace from outside it: through
/// `parent_task` (which must be in the parent user namespace, and see `child` under its
/// `/proc`), "deny" to `/proc/<child>/setgroups`, then `inner_uid outer_uid 1` to its
/// `uid_map` and `inner_gid outer_gid 1` to its `gid_map`. The outer ids are ids of the
/// parent namespace, normally the creator's effective ids read before the namespace was
/// made (an unprivileged writer may map only those).
///
/// # Errors
/// [`Error::InvalidArgument`] for an id of `u32::MAX`; `ENOENT` (no such process),
/// `EPERM` (the maps were already written, or the writer lacks `CAP_SETUID`/`CAP_SETGID`
/// for other ids than its own), `EINVAL` (an id out of range). See user_namespaces(7).
pub async fn write_user_mappings(
    parent_task: &Task,
    child_pid_in_parent_ns: Pid,
    outer_uid: u32,
    outer_gid: u32,
    inner_uid: u32,
    inner_gid: u32,
) -> Result<()> {
    let pid = child_pid_in_parent_ns.as_raw();
    if pid <= 0 {
        return Err(Error::invalid(
            "write_user_mappings",
            format!("pid {pid} names no single process"),
        ));
    }
    write_mappings(
        parent_task,
        &format!("/proc/{pid}"),
        (outer_uid, outer_gid),
        (inner_uid, inner_gid),
    )
    .await
}

impl Thread {
    /// Refuses to unshare on a thread whose syscalls run in the local process: they run on
    /// whichever OS thread polls the future, and unshare changes only that OS thread.
    fn check_can_unshare(&self, what: &'static str) -> Result<()> {
        if self.task().sysif().is_local() {
            return Err(Error::invalid(
                what,
                "the local thread's syscalls run on whichever OS thread polls them, and \
                 unshare would change only that one; unshare in a child thread instead",
            ));
        }
        Ok(())
    }

    /// `unshare(flags)` with this thread's bookkeeping kept right. `flags` may contain:
    /// - `FILES`: see [`Thread::unshare_files`] (called with `going_to_exec = true`);
    /// - `NEWUSER`: see [`Thread::unshare_user`] (ids mapped to themselves; implies `FS`);
    /// - `FS`, `NEWNS`, `NEWNET`, `NEWUTS`, `NEWIPC`: passed to [`Task::unshare`], which
    ///   records the new mount and network namespaces.
    ///
    /// The namespaces are unshared in one call, after the fd table.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for other flags, or on the local thread (unshare there
    /// would change only one OS thread of this program); the errors of the steps (`EPERM`
    /// without the needed capability, `EINVAL` for `NEWUSER` in a multithreaded
    /// process...).
    pub async fn unshare(&self, flags: CLONE) -> Result<()> {
        let this = self.duplicate();
        Critical::new(async move { this.unshare_now(flags).await }).await
    }

    /// [`Thread::unshare`]'s work: a critical part ([`crate::background`]), as an unshare
    /// that reached the thread must be recorded in its task and, for `FILES`, given its
    /// connection.
    async fn unshare_now(&self, flags: CLONE) -> Result<()> {
        let bad = flags.difference(THREAD_UNSHARE_FLAGS);
        if !bad.is_empty() {
            return Err(Error::invalid(
                "Thread::unshare",
                format!("unsupported flags {bad:?}; allowed: {THREAD_UNSHARE_FLAGS:?}"),
            ));
        }
        self.check_can_unshare("Thread::unshare")?;
        if flags.contains(CLONE::FILES) {
            self.unshare_files_now(true).await?;
        }
        let rest = flags.difference(CLONE::FILES);
        if rest.contains(CLONE::NEWUSER) {
            self.unshare_user_with(None, None, rest.difference(CLONE::NEWUSER))
                .await
        } else if !rest.is_empty() {
            self.task().unshare(rest).await
        } else {
            Ok(())
        }
    }

    /// Moves this thread into a new user namespace (and gives it its own fs context, which
    /// that requires), mapping its effective uid and gid, read just before, to
    /// `in_namespace_uid` and `in_namespace_gid` inside (`None`: the same ids). The thread
    /// has every capability inside the namespace until it execs a program as a uid other
    /// than 0 there.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on the local thread, or for an id of `u32::MAX`;
    /// `EINVAL` (a multithreaded process), `EPERM` (in a chroot, nesting too deep, or the
    /// namespace limit), `ENOSPC`; the errors of writing the maps.
    pub async fn unshare_user(
        &self,
        in_namespace_uid: Option<u32>,
        in_namespace_gid: Option<u32>,
    ) -> Result<()> {
        let this = self.duplicate();
        Critical::new(async move {
            this.unshare_user_with(in_namespace_uid, in_namespace_gid, CLONE::empty())
                .await
        })
        .await
    }

    /// [`Thread::unshare_user`], unsharing `extra` namespaces in the same call.
    async fn unshare_user_with(
        &self,
        inner_uid: Option<u32>,
        inner_gid: Option<u32>,
        extra: CLONE,
    ) -> Result<()> {
        self.check_can_unshare("Thread::unshare_user")?;
        for id in [inner_uid, inner_gid].into_iter().flatten() {
            check_id("Thread::unshare_user", id)?;
        }
        let task = self.task();
        let outer_uid = task.geteuid().await?;
        let outer_gid = task.getegid().await?;
        task.unshare(CLONE::NEWUSER | CLONE::FS | extra).await?;
        write_mappings(
            task,
            "/proc/self",
            (outer_uid, outer_gid),
            (
                inner_uid.unwrap_or(outer_uid),
                inner_gid.unwrap_or(outer_gid),
            ),
        )
        .await
    }

    /// Gives this thread its own copy of its fd table (`unshare(CLONE_FILES)`). Fds made
    /// in the old table afterwards are not in the new one; handles made before keep naming
    /// the old table ([`FileDescriptor::inherit`] gives handles to the copies). A root
    /// epoller follows the thread into the new table (a fresh epoll fd there, see
    /// [`Thread::root_epoller_now`]).
    ///
    /// The copy holds every fd of the old table, including fds of other code in that
    /// process that this thread knows nothing about. With `going_to_exec` they are left
    /// alone (close-on-exec fds go at the exec anyway); without it, every close-on-exec fd
    /// of the copy that no handle names, in the old table or the new one, is closed, except
    /// the thread's own ([`Thread::reserved_fds`]): what the original does with
    /// `do_cloexec_except` and the fds it has handles for. Fds with handles stay
    /// inheritable.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on the local thread; `ENOMEM`, `EMFILE`; the errors of
    /// listing `/proc/self/fd` and closing (see [`Thread::do_cloexec_except`]).
    pub async fn unshare_files(&self, going_to_exec: bool) -> Result<()> {
        let this = self.duplicate();
        Critical::new(async move { this.unshare_files_now(going_to_exec).await }).await
    }

    /// [`Thread::unshare_files`]'s work: a critical part ([`crate::background`]).
    async fn unshare_files_now(&self, going_to_exec: bool) -> Result<()> {
        self.check_can_unshare("Thread::unshare_files")?;
        // A thread that used the local table reached it directly; once it has a table of its
        // own it needs a connection to move fds. Make the socketpair now, so the thread's
        // new table starts with a copy of its end.
        let pending = if self.connection().is_none() && self.host().is_none() {
            let (ours, theirs) =
                std::os::unix::net::UnixStream::pair().map_err(|source| Error::Io {
                    what: "socketpair",
                    source,
                })?;
            let theirs = FileDescriptor::from_owned_fd(self.task(), theirs.into())?;
            Some((std::os::fd::OwnedFd::from(ours), theirs))
        } else {
            None
        };
        let old_table = self.task().fd_table();
        self.task().unshare_files().await?;
        if let Some((ours, theirs)) = pending {
            // `theirs` (in the old, local table) is closed when dropped; the thread keeps its
            // copy, owned through the connection.
            let remote = theirs.inherit(self.task())?;
            let _ = self
                .inner
                .connection
                .set(crate::connection::Connection::new(ours, remote));
        }
        // The epoller moves now, while the old epoll fd's copy can still be named.
        self.root_epoller_now().await?;
        if !going_to_exec {
            let keep = self.reserved_fds();
            close_cloexec(
                self.task(),
                &keep,
                Handled::Keep(&old_table),
                "Thread::unshare_files",
            )
            .await?;
        }
        Ok(())
    }

    /// The fd numbers this thread itself relies on and [`Thread::do_cloexec_except`]
    /// always keeps (with, for a thread on another host, that host's listening socket,
    /// through which its channels are made): its stdin, stdout and stderr, its end of the connection that passes
    /// fds to it, the socket its syscall server reads, and the epoll fd of its root
    /// epoller (if it has one in its current table).
    pub fn reserved_fds(&self) -> Vec<near::FileDescriptor> {
        let mut fds = vec![
            self.stdin().near(),
            self.stdout().near(),
            self.stderr().near(),
        ];
        if let Some(conn) = self.connection() {
            fds.push(conn.remote().near());
        }
        if let Some(server) = self.inner.server_fd {
            fds.push(server);
        }
        if let Some(persistent) = self.inner.persistent.get() {
            fds.extend(persistent.server_fds());
        }
        if let Some(ep) = self.root_epoller() {
            fds.push(ep.epfd().near());
        }
        if let Some(host) = self.host() {
            fds.push(host.listener);
        }
        fds
    }

    /// Does now to this thread's fd table what an exec would: closes every fd marked
    /// close-on-exec, except `keep` and the thread's own ([`Thread::reserved_fds`]), as the
    /// original's `do_cloexec_except` does. Fds open across exec (without `FD_CLOEXEC`)
    /// stay, as they would through an exec. The fds are found by listing `/proc/self/fd`
    /// through the thread, so `/proc` must be mounted where the thread sees it.
    ///
    /// Meant for a thread with a table of its own (a child cloned without `CLONE::FILES`,
    /// or after [`Thread::unshare_files`]), to drop the fds its table copied. Such copies
    /// have no handles; after this call [`FileDescriptor::inherit`] into this thread is
    /// refused, since the copy it would name may be gone.
    ///
    /// An fd that a live handle of this table names (owned or borrowed) and that is not in
    /// `keep` is never closed under that handle: the call is refused before anything is
    /// closed. Keep it, or drop (or close) the handle first. Do not make fds on this thread
    /// concurrently with this call: one whose handle is not made yet when its number is
    /// checked would be closed.
    ///
    /// To only mark fds close-on-exec, closing nothing, use
    /// [`Thread::mark_cloexec_except`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a thread using the local fd table (the local thread,
    /// or a child sharing its table: the program's own fds would go), or for a live handle
    /// not kept (listed in the message; nothing is closed then), or when fds made by
    /// dropped `pipe2`/`socketpair` calls could not be read and closed first (see
    /// [`FdTableState::has_unknown_fds`](rsyscall_handle::FdTableState::has_unknown_fds);
    /// closing stops there); [`Error::Mismatch`] if a kept fd is of another table
    /// (nothing is closed then); the errors of opening and
    /// listing `/proc/self/fd` (`ENOENT` without `/proc`), of `fcntl` and of `close` (an fd
    /// closed meanwhile is skipped).
    pub async fn do_cloexec_except(&self, keep: &[&FileDescriptor]) -> Result<()> {
        let mut nums = self.reserved_fds();
        for fd in keep {
            nums.push(self.task().check_fd(fd)?);
        }
        close_cloexec(
            self.task(),
            &nums,
            Handled::Refuse,
            "Thread::do_cloexec_except",
        )
        .await
    }

    /// Marks every fd of this thread's table close-on-exec except `keep` and the
    /// thread's own ([`Thread::reserved_fds`]), closing nothing: the fds a later exec would
    /// pass on are then only those kept. The fds are found by listing `/proc/self/fd`
    /// through the thread.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if a kept fd is of another table (nothing is changed then);
    /// the errors of opening and listing `/proc/self/fd` (`ENOENT` without `/proc`) and of
    /// `fcntl` (an fd closed meanwhile is skipped).
    pub async fn mark_cloexec_except(&self, keep: &[&FileDescriptor]) -> Result<()> {
        let mut nums = self.reserved_fds();
        for fd in keep {
            nums.push(self.task().check_fd(fd)?);
        }
        mark_cloexec(self.task(), &nums).await
    }
}

impl Thread {
    /// Closes the close-on-exec fds this fresh clone child inherited that no handle of
    /// `parent_table` (the table it was copied from) names, except its own
    /// ([`Thread::reserved_fds`]): its copies of the program's own fds, such as the access
    /// ends of syscall sockets (its own included, which would keep its server from ever
    /// seeing our end close). A persistent thread must not hold those once we are gone.
    pub(crate) async fn close_unnamed_inherited(
        &self,
        parent_table: &std::sync::Arc<rsyscall_handle::FdTableState>,
    ) -> Result<()> {
        let keep = self.reserved_fds();
        close_cloexec(
            self.task(),
            &keep,
            Handled::Keep(parent_table),
            "Thread::clone_persistent",
        )
        .await
    }
}

/// The fd numbers listed in `task`'s `/proc/self/fd`, without the listing's own fd.
pub(crate) async fn list_fds(task: &Task) -> Result<Vec<near::FileDescriptor>> {
    let dir = task
        .open(b"/proc/self/fd", O::RDONLY | O::DIRECTORY, 0)
        .await?;
    let listed = dir.getdents_all().await;
    let dir_n = dir.near().as_raw();
    let closed = dir.close().await;
    let fds = listed?
        .into_iter()
        .filter_map(|entry| {
            // "." and ".." parse as no number.
            let n: i32 = std::str::from_utf8(&entry.name).ok()?.parse().ok()?;
            (n != dir_n).then(|| near::FileDescriptor::new(n))
        })
        .collect();
    closed?;
    Ok(fds)
}

/// Marks every fd of `task`'s table close-on-exec except `keep`.
async fn mark_cloexec(task: &Task, keep: &[near::FileDescriptor]) -> Result<()> {
    for n in list_fds(task).await? {
        if keep.contains(&n) {
            continue;
        }
        match fd_flags(task, n).await {
            Ok(Some(flags)) if flags.contains(FD::CLOEXEC) => {}
            Ok(Some(flags)) => set_fd_flags(task, n, flags | FD::CLOEXEC).await?,
            Ok(None) => {} // closed meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What [`close_cloexec`] does with an fd a live handle names.
enum Handled<'a> {
    /// Refuse the whole call, closing nothing.
    Refuse,
    /// Leave it, and also every fd a handle of this (older) table names.
    Keep(&'a std::sync::Arc<rsyscall_handle::FdTableState>),
}

/// Closes every close-on-exec fd of `task`'s table except `keep` and those live handles
/// name (see [`Handled`]).
async fn close_cloexec(
    task: &Task,
    keep: &[near::FileDescriptor],
    handled: Handled<'_>,
    what: &'static str,
) -> Result<()> {
    let table = task.fd_table();
    if table.id() == rsyscall_handle::local_namespaces().fd_table {
        return Err(Error::invalid(
            what,
            "the thread uses this program's own fd table, whose fds belong to code that \
             closing them by number would break; use it on a thread with a table of its own",
        ));
    }
    let mut doomed = Vec::new();
    for n in list_fds(task).await? {
        if keep.contains(&n) {
            continue;
        }
        if let Handled::Keep(old) = handled
            && old.has_handle(n)
        {
            continue;
        }
        match fd_flags(task, n).await? {
            Some(flags) if flags.contains(FD::CLOEXEC) => doomed.push(n),
            _ => {}
        }
    }
    let owned: Vec<i32> = doomed
        .iter()
        .filter(|n| table.has_handle(**n))
        .map(|n| n.as_raw())
        .collect();
    match handled {
        Handled::Refuse if !owned.is_empty() => {
            return Err(Error::invalid(
                what,
                format!(
                    "fds {owned:?} are named by live handles of this table and not kept; \
                     keep them, or drop their handles first (nothing was closed)"
                ),
            ));
        }
        Handled::Refuse => {
            // Copies whose originals' handles are still alive may go: inherit must no
            // longer vouch for them.
            task.forget_inherited_from();
        }
        Handled::Keep(_) => {}
    }
    for n in doomed {
        // Fds of dropped pipe2/socketpair calls whose numbers no one has read yet may be
        // among the doomed: the flush reads and closes them first, so that a number is
        // never closed twice.
        if table.has_unknown_fds() {
            // A failed close of another fd is not this call's failure.
            if let Err(e) = task.flush_closes().await {
                log::debug!("{what}: a queued close failed: {e}");
            }
            if table.has_unknown_fds() {
                return Err(Error::invalid(
                    what,
                    "fds of dropped pipe2/socketpair calls could not be read and closed \
                     yet (their task cannot send now); closing by number stopped there",
                ));
            }
        }
        // Checked again just before the close: a handle made meanwhile wins.
        if table.has_handle(n) {
            continue;
        }
        match close_unowned(task, n).await {
            Err(e) if e.errno() == Some(Errno::EBADF) => {}
            other => other?,
        }
    }
    Ok(())
}

/// `fcntl(n, F_GETFD)`, `None` if `n` is not open.
async fn fd_flags(task: &Task, n: near::FileDescriptor) -> Result<Option<FD>> {
    task.prepare().await;
    // SAFETY: F_GETFD takes no pointer and changes nothing.
    let r = unsafe { near::fcntl(task.sysif(), n, libc::F_GETFD, 0) }.await;
    match r {
        Ok(v) => Ok(Some(FD::from_bits_retain(v as i32))),
        Err(near::SyscallError::Errno(Errno::EBADF)) => Ok(None),
        Err(e) => Err(task.error("fcntl(F_GETFD)")(e)),
    }
}

/// `fcntl(n, F_SETFD, flags)`; an fd closed meanwhile is skipped.
async fn set_fd_flags(task: &Task, n: near::FileDescriptor, flags: FD) -> Result<()> {
    // SAFETY: F_SETFD takes an integer and changes only the fd's close-on-exec flag.
    let r = unsafe { near::fcntl(task.sysif(), n, libc::F_SETFD, flags.bits() as i64) }.await;
    match r {
        Ok(_) | Err(near::SyscallError::Errno(Errno::EBADF)) => Ok(()),
        Err(e) => Err(task.error("fcntl(F_SETFD)")(e)),
    }
}

/// Closes fd `n` of `task`'s table, which is not the local table and which no handle
/// names.
async fn close_unowned(task: &Task, n: near::FileDescriptor) -> Result<()> {
    // SAFETY: the table is not this program's (checked by the caller), so no Rust object of
    // ours owns its fds except through handles, and no handle names `n` (checked just
    // before): closing it breaks no ownership of ours.
    unsafe { near::close(task.sysif(), n) }
        .await
        .map_err(task.error("close"))
}
