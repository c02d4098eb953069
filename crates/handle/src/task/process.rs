//! Process syscalls: ids, signals, waiting, signal masks and dispositions, prctl, sessions
//! and process groups, priorities, exec, robust futex lists.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rsyscall_near::{
    self as near, Address, Capability, EXECVEAT, IdType, PrioWho, Signal, SigprocmaskHow,
    TASK_COMM_MAX, W,
};

use super::Task;
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::pointer::WrittenPointer;
use crate::structs::{ArgvEnvp, PathArg, RobustListHead, Sigaction, Siginfo, Sigset, WaitId};

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

    /// `kill(pid, sig)` — signals a process by pid. `sig` is a [`Signal`], or `None` for
    /// the null signal 0, which sends nothing and only checks that the process exists and
    /// may be signalled (the original's `kill(pid, 0)`). Racy unless the pid is an
    /// unreaped child: prefer [`ChildProcess::kill`](crate::ChildProcess::kill) and
    /// [`ChildProcess::exists`](crate::ChildProcess::exists).
    ///
    /// # Errors
    /// `ESRCH`, `EPERM`. See kill(2).
    pub async fn kill(&self, pid: near::Pid, sig: impl Into<Option<Signal>>) -> Result<()> {
        near::kill(self.sysif(), pid, sig)
            .await
            .map_err(self.error("kill"))
    }

    /// `gettid()` — the id of the thread that runs this task's syscalls, in its pid
    /// namespace (equal to [`Task::getpid`] for a single-threaded process).
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn gettid(&self) -> Result<near::Pid> {
        near::gettid(self.sysif())
            .await
            .map_err(self.error("gettid"))
    }

    /// `tgkill(tgid, tid, sig)` — signals one thread; with `sig` `None`, only checks that
    /// it exists and may be signalled. Racy like [`Task::kill`].
    ///
    /// # Errors
    /// `ESRCH`, `EPERM`. See tgkill(2).
    pub async fn tgkill(
        &self,
        tgid: near::Pid,
        tid: near::Pid,
        sig: impl Into<Option<Signal>>,
    ) -> Result<()> {
        near::tgkill(self.sysif(), tgid, tid, sig)
            .await
            .map_err(self.error("tgkill"))
    }

    /// `waitid(idtype, id, infop, options, NULL)` — waits for (or with `W::NOHANG`, polls
    /// for) a state change of a child of this task; `None` means `W::NOHANG` found none.
    /// Without `W::NOWAIT`, a death reaps the child: a [`ChildProcess`](crate::ChildProcess)
    /// for it will not see it.
    ///
    /// # Errors
    /// `ECHILD` (no such child), `EINTR`, `EINVAL` (no event kind in `options`),
    /// `EAGAIN` (a non-blocking pidfd whose process has nothing to report yet). See
    /// waitid(2). A pidfd of another fd table is refused before sending.
    pub async fn waitid(&self, id: WaitId<'_>, options: W) -> Result<Option<Siginfo>> {
        let id = match id {
            WaitId::All => IdType::All,
            WaitId::Pid(p) => IdType::Pid(p),
            WaitId::Pgid(p) => IdType::Pgid(p),
            WaitId::PidFd(fd) => IdType::PidFd(self.check_fd(fd)?),
        };
        let (buf, addr) = self.ptr_at(&Siginfo::default()).await?;
        // SAFETY: `addr` is a zeroed 128-byte siginfo of the task's memory, lent until the
        // syscall completed; no rusage is asked for.
        let call = unsafe { near::waitid(self.sysif(), id, addr, options, Address::NULL) };
        let ((), buf) = self.lent("waitid", buf, call).await?;
        let info = buf.into_readable().read().await?;
        Ok((info.pid != 0).then_some(info))
    }

    /// `rt_sigprocmask(how, set, oldset, 8)` — changes (unless `set` is `None`) and returns
    /// the previous signal mask of the thread running this task's syscalls.
    ///
    /// On the local task this changes the mask of the calling thread of this program.
    ///
    /// # Errors
    /// Only a lost connection in practice. See sigprocmask(2).
    pub async fn rt_sigprocmask(&self, how: SigprocmaskHow, set: Option<Sigset>) -> Result<Sigset> {
        self.new_old("rt_sigprocmask", set, |new, old| {
            // SAFETY: `new` and `old` are the two 8-byte sets of the lent buffer.
            unsafe { near::rt_sigprocmask(self.sysif(), how, new, old) }
        })
        .await
    }

    /// `rt_sigaction(sig, act, oldact, 8)` — changes (unless `act` is `None`) and returns
    /// the previous disposition of `sig`. Only `SIG_DFL` and `SIG_IGN` can be installed
    /// here; see [`Task::rt_sigaction_unchecked`] for handlers.
    ///
    /// On the local task this changes this program's disposition.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a handler address; `EINVAL` for `SIGKILL` and
    /// `SIGSTOP`. See sigaction(2).
    pub async fn rt_sigaction(&self, sig: Signal, act: Option<&Sigaction>) -> Result<Sigaction> {
        if let Some(a) = act
            && !a.is_default_or_ignore()
        {
            return Err(Error::invalid(
                "rt_sigaction",
                format!(
                    "handler {:#x} for {sig}: only SIG_DFL and SIG_IGN are safe to install",
                    a.handler
                ),
            ));
        }
        // SAFETY: the action (if any) is SIG_DFL or SIG_IGN: no code runs.
        unsafe { self.rt_sigaction_unchecked(sig, act) }.await
    }

    /// `rt_sigaction(sig, act, oldact, 8)` — like [`Task::rt_sigaction`], with any handler.
    ///
    /// # Safety
    /// A handler in `act` is code the kernel runs in the target when `sig` arrives: it must
    /// be valid there as a signal handler, with a restorer (`SA::RESTORER`) that performs
    /// `rt_sigreturn`.
    ///
    /// # Errors
    /// As [`Task::rt_sigaction`], without the handler check.
    pub async unsafe fn rt_sigaction_unchecked(
        &self,
        sig: Signal,
        act: Option<&Sigaction>,
    ) -> Result<Sigaction> {
        self.new_old("rt_sigaction", act.copied(), |new, old| {
            // SAFETY: `new` and `old` are the two 32-byte actions of the lent buffer; the
            // caller vouches for the handler.
            unsafe { near::rt_sigaction(self.sysif(), sig, new, old) }
        })
        .await
    }

    /// Runs a `prctl` option that only takes integers.
    async fn prctl_int(&self, option: i32, args: [i64; 4]) -> Result<i64> {
        self.prepare().await;
        // SAFETY: callers pass options whose arguments are integers, not addresses.
        unsafe { near::prctl(self.sysif(), option, args) }
            .await
            .map_err(self.error("prctl"))
    }

    /// Runs a `prctl` option that writes an `int` at its second argument.
    async fn prctl_get_int(&self, option: i32) -> Result<i32> {
        let (buf, addr) = self.ptr_at(&0i32).await?;
        // SAFETY: the option writes one int at `addr`, 4 bytes of the lent buffer.
        let call = unsafe { near::prctl(self.sysif(), option, [addr.arg(), 0, 0, 0]) };
        let (_, buf) = self.lent("prctl", buf, call).await?;
        buf.into_readable().read().await
    }

    /// `prctl(PR_SET_PDEATHSIG, sig)` — the signal this task gets when the thread that
    /// created it exits (`None`: none).
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn set_pdeathsig(&self, sig: Option<Signal>) -> Result<()> {
        let n = sig.map_or(0, |s| s.as_raw() as i64);
        self.prctl_int(libc::PR_SET_PDEATHSIG, [n, 0, 0, 0]).await?;
        Ok(())
    }

    /// `prctl(PR_GET_PDEATHSIG, &sig)` — the parent-death signal (`None`: none).
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn get_pdeathsig(&self) -> Result<Option<Signal>> {
        Ok(Signal::new(
            self.prctl_get_int(libc::PR_GET_PDEATHSIG).await?,
        ))
    }

    /// `prctl(PR_SET_NAME, name)` — sets the name of the thread running this task's
    /// syscalls (shown as `comm` in `/proc`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name longer than [`TASK_COMM_MAX`] bytes (the
    /// kernel would silently cut it) or with a NUL byte. See prctl(2).
    pub async fn set_name(&self, name: &[u8]) -> Result<()> {
        if name.len() > TASK_COMM_MAX {
            return Err(Error::invalid(
                "prctl(PR_SET_NAME)",
                format!(
                    "name of {} bytes; the kernel keeps at most {TASK_COMM_MAX}",
                    name.len()
                ),
            ));
        }
        let buf = self.ptr_cstr("prctl(PR_SET_NAME)", name).await?;
        let addr = self.check_ptr(buf.pointer())?;
        // SAFETY: PR_SET_NAME only reads the NUL-terminated string at `addr`, lent until
        // the syscall completed.
        let call = unsafe { near::prctl(self.sysif(), libc::PR_SET_NAME, [addr.arg(), 0, 0, 0]) };
        self.lent("prctl", buf, call).await?;
        Ok(())
    }

    /// `prctl(PR_GET_NAME, buf)` — the name of the thread running this task's syscalls
    /// (at most [`TASK_COMM_MAX`] bytes).
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn get_name(&self) -> Result<Vec<u8>> {
        let (buf, addr) = self.ptr_at(&[0u8; TASK_COMM_MAX + 1]).await?;
        // SAFETY: PR_GET_NAME writes 16 bytes at `addr`, the lent buffer.
        let call = unsafe { near::prctl(self.sysif(), libc::PR_GET_NAME, [addr.arg(), 0, 0, 0]) };
        let (_, buf) = self.lent("prctl", buf, call).await?;
        let raw = buf.into_readable().read().await?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(raw[..end].to_vec())
    }

    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)` — adds `cap` to the ambient set
    /// (it must be permitted and inheritable).
    ///
    /// # Errors
    /// `EPERM`, `EINVAL`. See prctl(2).
    pub async fn cap_ambient_raise(&self, cap: Capability) -> Result<()> {
        let args = [
            libc::PR_CAP_AMBIENT_RAISE as i64,
            i64::from(cap.as_raw()),
            0,
            0,
        ];
        self.prctl_int(libc::PR_CAP_AMBIENT, args).await?;
        Ok(())
    }

    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap)` — removes `cap` from the ambient
    /// set.
    ///
    /// # Errors
    /// `EINVAL`. See prctl(2).
    pub async fn cap_ambient_lower(&self, cap: Capability) -> Result<()> {
        let args = [
            libc::PR_CAP_AMBIENT_LOWER as i64,
            i64::from(cap.as_raw()),
            0,
            0,
        ];
        self.prctl_int(libc::PR_CAP_AMBIENT, args).await?;
        Ok(())
    }

    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap)` — whether `cap` is ambient.
    ///
    /// # Errors
    /// `EINVAL` for an unknown capability. See prctl(2).
    pub async fn cap_ambient_is_set(&self, cap: Capability) -> Result<bool> {
        let args = [
            libc::PR_CAP_AMBIENT_IS_SET as i64,
            i64::from(cap.as_raw()),
            0,
            0,
        ];
        Ok(self.prctl_int(libc::PR_CAP_AMBIENT, args).await? == 1)
    }

    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)` — empties the ambient set.
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn cap_ambient_clear_all(&self) -> Result<()> {
        let args = [libc::PR_CAP_AMBIENT_CLEAR_ALL as i64, 0, 0, 0];
        self.prctl_int(libc::PR_CAP_AMBIENT, args).await?;
        Ok(())
    }

    /// `prctl(PR_SET_CHILD_SUBREAPER, on)` — makes this task's process (not) a subreaper:
    /// orphaned descendants are reparented to it instead of to init.
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn set_child_subreaper(&self, on: bool) -> Result<()> {
        self.prctl_int(libc::PR_SET_CHILD_SUBREAPER, [i64::from(on), 0, 0, 0])
            .await?;
        Ok(())
    }

    /// `prctl(PR_GET_CHILD_SUBREAPER, &on)` — whether this task's process is a subreaper.
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn get_child_subreaper(&self) -> Result<bool> {
        Ok(self.prctl_get_int(libc::PR_GET_CHILD_SUBREAPER).await? != 0)
    }

    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)` — from now on, exec never grants privileges (setuid
    /// bits and file capabilities are ignored). Cannot be undone.
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn set_no_new_privs(&self) -> Result<()> {
        self.prctl_int(libc::PR_SET_NO_NEW_PRIVS, [1, 0, 0, 0])
            .await?;
        Ok(())
    }

    /// `prctl(PR_GET_NO_NEW_PRIVS)` — whether no-new-privs is set.
    ///
    /// # Errors
    /// Only a lost connection in practice. See prctl(2).
    pub async fn get_no_new_privs(&self) -> Result<bool> {
        Ok(self
            .prctl_int(libc::PR_GET_NO_NEW_PRIVS, [0, 0, 0, 0])
            .await?
            == 1)
    }

    /// `setsid()` — makes this task's process the leader of a new session and process
    /// group; returns the session id.
    ///
    /// # Errors
    /// `EPERM` if it already leads a process group. See setsid(2).
    pub async fn setsid(&self) -> Result<near::Pid> {
        self.prepare().await;
        near::setsid(self.sysif())
            .await
            .map_err(self.error("setsid"))
    }

    /// `setpgid(pid, pgid)` — moves process `pid` (0: this task) into process group `pgid`
    /// (0: the group whose id is that process's pid, making it a leader).
    ///
    /// # Errors
    /// `EACCES` (a child that has exec'd), `EINVAL`, `EPERM`, `ESRCH`. See setpgid(2).
    pub async fn setpgid(&self, pid: near::Pid, pgid: near::Pid) -> Result<()> {
        self.prepare().await;
        near::setpgid(self.sysif(), pid, pgid)
            .await
            .map_err(self.error("setpgid"))
    }

    /// `getpgid(pid)` — the process group of process `pid` (0: this task).
    ///
    /// # Errors
    /// `ESRCH`. See getpgid(2).
    pub async fn getpgid(&self, pid: near::Pid) -> Result<near::Pid> {
        self.prepare().await;
        near::getpgid(self.sysif(), pid)
            .await
            .map_err(self.error("getpgid"))
    }

    /// `getpriority(which, who)` — the lowest nice value (highest priority) among the
    /// processes named, converted from the kernel's `20 - nice` to a nice value.
    ///
    /// # Errors
    /// `EINVAL`, `ESRCH`. See getpriority(2).
    pub async fn getpriority(&self, who: PrioWho) -> Result<i32> {
        self.prepare().await;
        let raw = near::getpriority(self.sysif(), who)
            .await
            .map_err(self.error("getpriority"))?;
        Ok(20 - raw)
    }

    /// `setpriority(which, who, nice)` — sets the nice value of the processes named.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a nice value outside `-20..=19` (the kernel would
    /// silently clamp it); `EACCES` (lowering nice without `CAP_SYS_NICE`), `EPERM`,
    /// `ESRCH`. See setpriority(2).
    pub async fn setpriority(&self, who: PrioWho, nice: i32) -> Result<()> {
        if !(-20..=19).contains(&nice) {
            return Err(Error::invalid(
                "setpriority",
                format!("nice value {nice} is outside -20..=19"),
            ));
        }
        self.prepare().await;
        near::setpriority(self.sysif(), who, nice)
            .await
            .map_err(self.error("setpriority"))
    }

    /// Builds the path, argv and envp of an exec in this task's memory, with one
    /// allocation and one write (see [`ArgvEnvp`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a string contains a NUL byte or the total size
    /// overflows; allocation and transport errors.
    pub async fn argv_envp<P, A, E>(&self, path: P, argv: &[A], envp: &[E]) -> Result<ArgvEnvp>
    where
        P: PathArg,
        A: AsRef<OsStr>,
        E: AsRef<OsStr>,
    {
        self.exec_image(&[], path, argv, envp).await
    }

    /// Like [`Task::argv_envp`], with `prefix` written first in the same allocation (8-byte
    /// aligned; [`ArgvEnvp::prefix`] gives its address), for other data an exec needs, such
    /// as the `sigaction` and signal mask it resets first.
    ///
    /// # Errors
    /// As [`Task::argv_envp`].
    pub async fn exec_image<P, A, E>(
        &self,
        prefix: &[u8],
        path: P,
        argv: &[A],
        envp: &[E],
    ) -> Result<ArgvEnvp>
    where
        P: PathArg,
        A: AsRef<OsStr>,
        E: AsRef<OsStr>,
    {
        let path = path.path_bytes();
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_ref().as_bytes()).collect();
        let envp: Vec<&[u8]> = envp.iter().map(|e| e.as_ref().as_bytes()).collect();
        let overflow = || Error::invalid("argv_envp", "the total size overflows");
        let mut strings = 0usize;
        for s in std::iter::once(path)
            .chain(argv.iter().copied())
            .chain(envp.iter().copied())
        {
            if s.contains(&0) {
                return Err(Error::invalid(
                    "argv_envp",
                    format!("{:?} contains a NUL byte", String::from_utf8_lossy(s)),
                ));
            }
            strings = strings
                .checked_add(s.len())
                .and_then(|n| n.checked_add(1))
                .ok_or_else(overflow)?;
        }
        let head = prefix.len().checked_add(7).ok_or_else(overflow)? & !7;
        let ptrs = argv
            .len()
            .checked_add(envp.len())
            .and_then(|n| n.checked_add(2))
            .and_then(|n| n.checked_mul(8))
            .and_then(|n| n.checked_add(head))
            .ok_or_else(overflow)?;
        let total = ptrs.checked_add(strings).ok_or_else(overflow)?;
        let mem = self.malloc_bytes(total).await?;
        let base = self.check_ptr(&mem)?.as_u64();
        let mut bytes = vec![0u8; total];
        bytes[..prefix.len()].copy_from_slice(prefix);
        let mut str_off = ptrs;
        let mut put = |bytes: &mut Vec<u8>, s: &[u8]| {
            bytes[str_off..str_off + s.len()].copy_from_slice(s);
            let at = base + str_off as u64;
            str_off += s.len() + 1;
            at
        };
        let path_addr = put(&mut bytes, path);
        let mut ptr_off = head;
        for s in &argv {
            let a = put(&mut bytes, s);
            bytes[ptr_off..ptr_off + 8].copy_from_slice(&a.to_ne_bytes());
            ptr_off += 8;
        }
        ptr_off += 8;
        let envp_off = ptr_off;
        for s in &envp {
            let a = put(&mut bytes, s);
            bytes[ptr_off..ptr_off + 8].copy_from_slice(&a.to_ne_bytes());
            ptr_off += 8;
        }
        let mem = mem.write(&bytes[..]).await?;
        Ok(ArgvEnvp {
            mem,
            prefix: Address::new(base),
            path: Address::new(path_addr),
            argv: Address::new(base + head as u64),
            envp: Address::new(base + envp_off as u64),
        })
    }

    /// `execve(path, argv, envp)` — replaces this task's program with `image`'s. On a
    /// remote task, success shows as the end of the connection and returns `Ok(())`; on
    /// the local task, success does not return. A task whose connection was already lost
    /// gets a hangup error (nothing was sent). A death while the request was in flight
    /// also ends the connection and cannot be told from success at this level:
    /// `ChildThread::exec` in the thread layer tells them apart.
    ///
    /// # Errors
    /// `ENOENT`, `EACCES`, `ENOEXEC`, `E2BIG` and others (the task keeps running). See
    /// execve(2). An image built in another address space is refused before sending.
    pub async fn execve(&self, image: ArgvEnvp) -> Result<()> {
        self.exec_common(None, image, None).await
    }

    /// `execveat(dirfd, path, argv, envp, flags)` — like [`Task::execve`] with the path
    /// relative to `dirfd` (`None`: the working directory), or executing `dirfd` itself
    /// with an empty path and `EXECVEAT::EMPTY_PATH`.
    ///
    /// # Errors
    /// As [`Task::execve`], and `EBADF`, `ENOTDIR`, `ELOOP`. See execveat(2).
    pub async fn execveat(
        &self,
        dirfd: Option<&FileDescriptor>,
        image: ArgvEnvp,
        flags: EXECVEAT,
    ) -> Result<()> {
        let dirfd = dirfd.map(|fd| self.check_fd(fd)).transpose()?;
        self.exec_common(Some(dirfd), image, Some(flags)).await
    }

    async fn exec_common(
        &self,
        at: Option<Option<near::FileDescriptor>>,
        image: ArgvEnvp,
        flags: Option<EXECVEAT>,
    ) -> Result<()> {
        self.check_ptr(image.mem.pointer())?;
        let (path, argv, envp) = (image.path, image.argv, image.envp);
        let name = if at.is_some() { "execveat" } else { "execve" };
        let call = async {
            match at {
                // SAFETY: path, argv and envp were laid out by `argv_envp` in this task's
                // address space, NUL- and NULL-terminated, and are lent until completion.
                None => unsafe { near::execve(self.sysif(), path, argv, envp) }.await,
                Some(dirfd) => {
                    let flags = flags.unwrap_or_default();
                    // SAFETY: as above.
                    unsafe { near::execveat(self.sysif(), dirfd, path, argv, envp, flags) }.await
                }
            }
        };
        // `Ok` also stands for the connection closing at exec: by then the kernel has
        // copied the strings and moved the task to a new address space, so the block is
        // free either way.
        self.lent(name, image, call).await?;
        Ok(())
    }

    /// `set_robust_list(head, 24)` — registers `head` as the robust futex list of the
    /// thread running this task's syscalls.
    ///
    /// # Safety
    /// The kernel keeps the address: `head` (do not free it) and every entry of its list
    /// must stay valid and unchanged in meaning until that thread exits or registers
    /// another list, as the kernel updates the futex words of the list when the thread
    /// exits. On the local task this replaces the list libc registered for the calling
    /// thread.
    ///
    /// # Errors
    /// `EINVAL`. See set_robust_list(2). A pointer of another address space is refused
    /// before sending.
    pub async unsafe fn set_robust_list(
        &self,
        head: &WrittenPointer<RobustListHead>,
    ) -> Result<()> {
        let addr = self.check_ptr(head.pointer())?;
        self.prepare().await;
        // SAFETY: the caller keeps the list valid for as long as the kernel uses it.
        unsafe { near::set_robust_list(self.sysif(), addr, RobustListHead::SIZE) }
            .await
            .map_err(self.error("set_robust_list"))
    }
}
