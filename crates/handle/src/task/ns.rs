//! Namespace and mount syscalls: unshare, setns, mount, umount2, pivot_root, chroot.
//!
//! The strings of one call are written in one allocation.

use rsyscall_near::{
    self as near, Address, CLONE, MNT, MS, SETNS_TYPES, SyscallError, UNSHARE_FLAGS,
};

use rsyscall_far as far;

use super::Task;
use crate::error::{Error, Result};
use crate::fd::{FdTableState, FileDescriptor};
use crate::pointer::WrittenPointer;
use crate::structs::PathArg;

impl Task {
    /// Like [`Task::error`], naming the syscall `with_cap` (which says what capability is
    /// missing) when it failed with `EPERM`.
    fn error_needing(
        &self,
        syscall: &'static str,
        with_cap: &'static str,
    ) -> impl Fn(SyscallError) -> Error + '_ {
        move |e| {
            if e.errno() == Some(near::Errno::EPERM) {
                self.error(with_cap)(e)
            } else {
                self.error(syscall)(e)
            }
        }
    }

    /// Writes `strings` (those present) NUL-terminated in one allocation; returns it and
    /// each string's address (null for `None`).
    pub(crate) async fn cstrings(
        &self,
        what: &'static str,
        strings: &[Option<&[u8]>],
    ) -> Result<(WrittenPointer<[u8]>, Vec<Address>)> {
        let mut total = 0usize;
        for s in strings.iter().flatten() {
            if s.contains(&0) {
                return Err(Error::invalid(
                    what,
                    format!("{:?} contains a NUL byte", String::from_utf8_lossy(s)),
                ));
            }
            total = total
                .checked_add(s.len() + 1)
                .ok_or_else(|| Error::invalid(what, "the strings' total size overflows"))?;
        }
        let mem = self.malloc_bytes(total.max(1)).await?;
        let base = self.check_ptr(&mem)?.as_u64();
        let mut bytes = Vec::with_capacity(total);
        let mut addrs = Vec::with_capacity(strings.len());
        for s in strings {
            match s {
                Some(s) => {
                    addrs.push(Address::new(base + bytes.len() as u64));
                    bytes.extend_from_slice(s);
                    bytes.push(0);
                }
                None => addrs.push(Address::NULL),
            }
        }
        if bytes.is_empty() {
            bytes.push(0);
        }
        Ok((mem.write(&bytes[..]).await?, addrs))
    }

    /// Records that the task created or joined namespaces of the `kinds` (`CLONE::NEW*`):
    /// fresh identities for its mount and network namespaces, and for the pid namespace of
    /// its future children (a new pid namespace takes the children made afterwards, not the
    /// task).
    fn renew_namespaces(&self, kinds: CLONE) {
        let pid = self.pid();
        let mut children = None;
        self.update_namespaces(|ns| {
            let new = ns.renewed(kinds, pid);
            if kinds.contains(CLONE::NEWPID) {
                children = Some(new.pidns);
            }
            *ns = far::Namespaces {
                pidns: ns.pidns,
                ..new
            };
        });
        if let Some(pidns) = children {
            self.set_pidns_for_children(pidns);
        }
    }

    /// `unshare(flags)` — gives this task's process its own new namespaces (and with
    /// `CLONE::FS`, its own root and working directory).
    ///
    /// The task's recorded mount and network namespaces become fresh identities. Its pid
    /// namespace stays: `CLONE::NEWPID` moves only children made afterwards, which
    /// [`Task::pidns_for_children`] records.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for flags outside [`UNSHARE_FLAGS`]; `EPERM` without
    /// `CAP_SYS_ADMIN` (the error message names it), `EINVAL` (`CLONE::NEWUSER` in a
    /// multithreaded process), `ENOSPC`, `EUSERS`. See unshare(2).
    pub async fn unshare(&self, flags: CLONE) -> Result<()> {
        let bad = flags.difference(UNSHARE_FLAGS);
        if !bad.is_empty() {
            return Err(Error::invalid(
                "unshare",
                format!("unsupported flags {bad:?}; allowed: {UNSHARE_FLAGS:?}"),
            ));
        }
        self.prepare().await;
        let needs_admin = !flags
            .difference(CLONE::NEWUSER | CLONE::FS | CLONE::SYSVSEM)
            .is_empty();
        let name = if needs_admin {
            "unshare (EPERM: needs CAP_SYS_ADMIN)"
        } else {
            "unshare"
        };
        near::unshare(self.sysif(), flags)
            .await
            .map_err(self.error_needing("unshare", name))?;
        self.renew_namespaces(flags);
        Ok(())
    }

    /// `unshare(CLONE_FILES)` — gives this task its own copy of its fd table. Handles made
    /// before the call keep naming the old table (still used by the tasks that share it);
    /// [`FileDescriptor::inherit`] gives handles to the copies in the new one.
    ///
    /// # Errors
    /// `ENOMEM`, `EMFILE`. See unshare(2).
    pub async fn unshare_files(&self) -> Result<()> {
        self.prepare_to_copy().await;
        let old = self.fd_table();
        let generation = old.generation();
        near::unshare(self.sysif(), CLONE::FILES)
            .await
            .map_err(self.error("unshare"))?;
        let new = FdTableState::new(far::FdTable::new(self.pid()));
        self.replace_fd_table(new, (old.id(), generation));
        Ok(())
    }

    /// `setns(fd, nstype)` — moves this task into the namespace `fd` refers to (a
    /// `/proc/<pid>/ns/*` file, or a pidfd with several `CLONE::NEW*` kinds); `nstype`
    /// (one kind, or empty for any) checks what it is.
    ///
    /// The task's recorded mount and network namespaces are updated (to fresh identities,
    /// as the target's identity is not known here).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for kinds outside [`SETNS_TYPES`]; `EBADF`, `EINVAL`
    /// (wrong kind), `EPERM` (needs `CAP_SYS_ADMIN`). See setns(2). An fd of another table
    /// is refused before sending.
    pub async fn setns(&self, fd: &FileDescriptor, nstype: CLONE) -> Result<()> {
        let nfd = self.check_fd(fd)?;
        let bad = nstype.difference(SETNS_TYPES);
        if !bad.is_empty() {
            return Err(Error::invalid(
                "setns",
                format!("{bad:?} is not a namespace kind"),
            ));
        }
        self.prepare().await;
        near::setns(self.sysif(), nfd, nstype)
            .await
            .map_err(self.error_needing("setns", "setns (EPERM: needs CAP_SYS_ADMIN)"))?;
        // Which namespace the fd named is not known here: record fresh identities, which
        // never compare equal to another namespace's (possibly a false mismatch with the
        // namespace's other users, never a false match). An empty `nstype` may be any kind.
        self.renew_namespaces(if nstype.is_empty() {
            SETNS_TYPES
        } else {
            nstype
        });
        Ok(())
    }

    /// `mount(source, target, fstype, flags, data)` — mounts a filesystem at `target` (or
    /// with `MS::BIND`, `MS::MOVE`, `MS::REMOUNT`, propagation flags, changes mounts);
    /// `None` for arguments the operation ignores. `target` is a path like every path
    /// argument ([`PathArg`]); `source` (a path, a device, or a name such as `"proc"`),
    /// `fstype` and `data` are optional strings, NULL when `None`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a string with a NUL byte; `EPERM` (needs
    /// `CAP_SYS_ADMIN`), `ENODEV`, `ENOENT`, `ENOTDIR`, `EBUSY`, `EINVAL`. See mount(2).
    pub async fn mount(
        &self,
        source: Option<&[u8]>,
        target: impl PathArg,
        fstype: Option<&[u8]>,
        flags: MS,
        data: Option<&[u8]>,
    ) -> Result<()> {
        let target = target.path_bytes();
        let (buf, a) = self
            .cstrings("mount", &[source, Some(target), fstype, data])
            .await?;
        let call = near::mount(self.sysif(), a[0], a[1], a[2], flags, a[3]);
        let error = self.error_needing("mount", "mount (EPERM: needs CAP_SYS_ADMIN)");
        self.lent_mapped(buf, call, error).await?;
        Ok(())
    }

    /// `umount2(target, flags)` — unmounts the filesystem at `target`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with a NUL byte; `EBUSY`, `EINVAL` (not a
    /// mount point), `ENOENT`, `EPERM`. See umount(2).
    pub async fn umount2(&self, target: impl PathArg, flags: MNT) -> Result<()> {
        let target = target.path_bytes();
        let (buf, a) = self.cstrings("umount2", &[Some(target)]).await?;
        let call = near::umount2(self.sysif(), a[0], flags);
        let error = self.error_needing("umount2", "umount2 (EPERM: needs CAP_SYS_ADMIN)");
        self.lent_mapped(buf, call, error).await?;
        Ok(())
    }

    /// `pivot_root(new_root, put_old)` — makes the mount at `new_root` the root of this
    /// task's mount namespace, moving the old root to `put_old` (under `new_root`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with a NUL byte; `EBUSY`, `EINVAL`, `ENOTDIR`,
    /// `EPERM`. See pivot_root(2).
    pub async fn pivot_root(&self, new_root: impl PathArg, put_old: impl PathArg) -> Result<()> {
        let (new_root, put_old) = (new_root.path_bytes(), put_old.path_bytes());
        let (buf, a) = self
            .cstrings("pivot_root", &[Some(new_root), Some(put_old)])
            .await?;
        let call = near::pivot_root(self.sysif(), a[0], a[1]);
        let error = self.error_needing("pivot_root", "pivot_root (EPERM: needs CAP_SYS_ADMIN)");
        self.lent_mapped(buf, call, error).await?;
        Ok(())
    }

    /// `chroot(path)` — changes the root directory of this task's fs context (shared with
    /// every process cloned with `CLONE::FS`; on the local task, the whole program's).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with a NUL byte; `EACCES`, `ENOENT`, `ENOTDIR`,
    /// `EPERM` (needs `CAP_SYS_CHROOT`). See chroot(2).
    pub async fn chroot(&self, path: impl PathArg) -> Result<()> {
        let path = path.path_bytes();
        let (buf, a) = self.cstrings("chroot", &[Some(path)]).await?;
        let call = near::chroot(self.sysif(), a[0]);
        let error = self.error_needing("chroot", "chroot (EPERM: needs CAP_SYS_CHROOT)");
        self.lent_mapped(buf, call, error).await?;
        Ok(())
    }
}
