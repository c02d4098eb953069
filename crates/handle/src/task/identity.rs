//! Identity and limit syscalls: uids, gids, groups, capabilities, rlimits, affinity.

use rsyscall_near::{self as near, Address, NGROUPS_MAX, RLIMIT};

use super::Task;
use crate::error::{Error, Result};
use crate::structs::{CAPABILITY_VERSION_3, CapBuffer, CapHeader, Capabilities, CpuSet, Rlimit};

impl Task {
    /// `getuid()` — the real user id.
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn getuid(&self) -> Result<u32> {
        near::getuid(self.sysif())
            .await
            .map_err(self.error("getuid"))
    }

    /// `geteuid()` — the effective user id.
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn geteuid(&self) -> Result<u32> {
        near::geteuid(self.sysif())
            .await
            .map_err(self.error("geteuid"))
    }

    /// `getgid()` — the real group id.
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn getgid(&self) -> Result<u32> {
        near::getgid(self.sysif())
            .await
            .map_err(self.error("getgid"))
    }

    /// `getegid()` — the effective group id.
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn getegid(&self) -> Result<u32> {
        near::getegid(self.sysif())
            .await
            .map_err(self.error("getegid"))
    }

    /// `setuid(uid)` — sets the user ids of the thread running this task's syscalls (all
    /// three with `CAP_SETUID`, else the effective one). Unlike libc's wrapper, this does
    /// not change the other threads of the process.
    ///
    /// # Errors
    /// `EINVAL`, `EPERM`, `EAGAIN`. See setuid(2).
    pub async fn setuid(&self, uid: u32) -> Result<()> {
        self.prepare().await;
        near::setuid(self.sysif(), uid)
            .await
            .map_err(self.error("setuid"))
    }

    /// `setgid(gid)` — sets the group ids, like [`Task::setuid`].
    ///
    /// # Errors
    /// `EINVAL`, `EPERM`. See setgid(2).
    pub async fn setgid(&self, gid: u32) -> Result<()> {
        self.prepare().await;
        near::setgid(self.sysif(), gid)
            .await
            .map_err(self.error("setgid"))
    }

    /// `setresuid(ruid, euid, suid)` — sets the real, effective and saved user ids;
    /// `None` leaves one unchanged.
    ///
    /// # Errors
    /// `EAGAIN`, `EINVAL`, `EPERM`. See setresuid(2).
    pub async fn setresuid(
        &self,
        ruid: Option<u32>,
        euid: Option<u32>,
        suid: Option<u32>,
    ) -> Result<()> {
        if [ruid, euid, suid].contains(&Some(u32::MAX)) {
            return Err(Error::invalid(
                "setresuid",
                "uid 4294967295 means \"unchanged\" to the kernel; use None",
            ));
        }
        self.prepare().await;
        near::setresuid(self.sysif(), ruid, euid, suid)
            .await
            .map_err(self.error("setresuid"))
    }

    /// `setresgid(rgid, egid, sgid)` — sets the real, effective and saved group ids;
    /// `None` leaves one unchanged.
    ///
    /// # Errors
    /// `EINVAL`, `EPERM`. See setresgid(2).
    pub async fn setresgid(
        &self,
        rgid: Option<u32>,
        egid: Option<u32>,
        sgid: Option<u32>,
    ) -> Result<()> {
        if [rgid, egid, sgid].contains(&Some(u32::MAX)) {
            return Err(Error::invalid(
                "setresgid",
                "gid 4294967295 means \"unchanged\" to the kernel; use None",
            ));
        }
        self.prepare().await;
        near::setresgid(self.sysif(), rgid, egid, sgid)
            .await
            .map_err(self.error("setresgid"))
    }

    /// `getgroups(size, list)` — the supplementary group ids.
    ///
    /// # Errors
    /// `EINVAL` if the groups keep changing under us. See getgroups(2).
    pub async fn getgroups(&self) -> Result<Vec<u32>> {
        self.prepare().await;
        let mut attempts = 0;
        loop {
            // SAFETY: with size 0 the kernel writes nothing.
            let n = unsafe { near::getgroups(self.sysif(), 0, Address::NULL) }
                .await
                .map_err(self.error("getgroups"))?;
            if n == 0 {
                return Ok(Vec::new());
            }
            let buf = self.malloc_array::<u32>(n).await?;
            let addr = self.check_ptr(&buf)?;
            let buf = self.lend(buf);
            // SAFETY: `addr` holds `n` u32s of the task's memory, lent until completion.
            let r = unsafe { near::getgroups(self.sysif(), n, addr) }.await;
            match buf.settle(r) {
                Ok((got, buf)) => return buf.filled(got.min(n) * 4)?.0.read().await,
                // The list grew between the two calls: try again.
                Err(e) if e.errno() == Some(near::Errno::EINVAL) && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(self.error("getgroups")(e)),
            }
        }
    }

    /// `setgroups(size, list)` — sets the supplementary group ids of the thread running
    /// this task's syscalls.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for more than [`NGROUPS_MAX`] groups; `EPERM` without
    /// `CAP_SETGID` (or after `setgroups` was denied in a user namespace). See setgroups(2).
    pub async fn setgroups(&self, groups: &[u32]) -> Result<()> {
        if groups.len() > NGROUPS_MAX {
            return Err(Error::invalid(
                "setgroups",
                format!("{} groups; at most {NGROUPS_MAX}", groups.len()),
            ));
        }
        if groups.is_empty() {
            self.prepare().await;
            return near::setgroups(self.sysif(), 0, Address::NULL)
                .await
                .map_err(self.error("setgroups"));
        }
        let (buf, addr) = self.ptr_at(groups).await?;
        let call = near::setgroups(self.sysif(), groups.len(), addr);
        self.lent("setgroups", buf, call).await?;
        Ok(())
    }

    /// `capget(hdr, data)` — the capability sets of thread `tid` (`None`: the thread
    /// running this task's syscalls), with a version 3 header.
    ///
    /// # Errors
    /// `ESRCH`, `EINVAL` (if the kernel does not know version 3). See capget(2).
    pub async fn capget(&self, tid: Option<near::Pid>) -> Result<Capabilities> {
        let header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: tid.map_or(0, near::Pid::as_raw),
        };
        let (buf, addr) = self
            .ptr_at(&CapBuffer {
                header,
                data: Default::default(),
            })
            .await?;
        let data = cap_data(addr);
        // SAFETY: the lent buffer holds the header and two data structs.
        let call = unsafe { near::capget(self.sysif(), addr, data) };
        let ((), buf) = self.lent("capget", buf, call).await?;
        let got = buf.into_readable().read().await?;
        Ok(Capabilities::from_data(got.data))
    }

    /// `capset(hdr, data)` — sets the capability sets of the thread running this task's
    /// syscalls (version 3).
    ///
    /// # Errors
    /// `EPERM` (raising beyond the permitted set, or adding to it). See capset(2).
    pub async fn capset(&self, caps: &Capabilities) -> Result<()> {
        let (buf, addr) = self
            .ptr_at(&CapBuffer {
                header: CapHeader {
                    version: CAPABILITY_VERSION_3,
                    pid: 0,
                },
                data: caps.to_data(),
            })
            .await?;
        let data = cap_data(addr);
        // SAFETY: the lent buffer holds the header (which the kernel may rewrite) and two
        // data structs.
        let call = unsafe { near::capset(self.sysif(), addr, data) };
        self.lent("capset", buf, call).await?;
        Ok(())
    }

    /// `prlimit64(pid, resource, new, old)` — sets (unless `new` is `None`) and returns the
    /// previous limit of `resource` for process `pid` (0: this task).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a soft limit above the hard one; `EPERM` (raising
    /// the hard limit without `CAP_SYS_RESOURCE`, or another user's process), `ESRCH`. See
    /// prlimit(2).
    pub async fn prlimit(
        &self,
        pid: near::Pid,
        resource: RLIMIT,
        new: Option<Rlimit>,
    ) -> Result<Rlimit> {
        if let Some(n) = &new {
            n.validate("prlimit64")?;
        }
        self.new_old("prlimit64", new, |new, old| {
            // SAFETY: `new` and `old` are the two rlimits of the lent buffer.
            unsafe { near::prlimit64(self.sysif(), pid, resource, new, old) }
        })
        .await
    }

    /// `getrlimit(resource)` — the limit of `resource` for this task (through
    /// `prlimit64`).
    ///
    /// # Errors
    /// As [`Task::prlimit`].
    pub async fn getrlimit(&self, resource: RLIMIT) -> Result<Rlimit> {
        self.prlimit(near::Pid::new(0), resource, None).await
    }

    /// `setrlimit(resource, limit)` — sets the limit of `resource` for this task (through
    /// `prlimit64`).
    ///
    /// # Errors
    /// As [`Task::prlimit`].
    pub async fn setrlimit(&self, resource: RLIMIT, limit: Rlimit) -> Result<()> {
        self.prlimit(near::Pid::new(0), resource, Some(limit))
            .await?;
        Ok(())
    }

    /// `sched_getaffinity(tid, 128, mask)` — the CPUs thread `tid` (0: the thread running
    /// this task's syscalls) may run on.
    ///
    /// # Errors
    /// `EINVAL` on a machine with more than 1024 possible CPUs, `ESRCH`. See
    /// sched_getaffinity(2).
    pub async fn sched_getaffinity(&self, tid: near::Pid) -> Result<CpuSet> {
        let (buf, addr) = self.ptr_at(&CpuSet::empty()).await?;
        // SAFETY: `addr` is 128 bytes of the lent buffer.
        let call = unsafe { near::sched_getaffinity(self.sysif(), tid, CpuSet::SIZE, addr) };
        let (n, buf) = self.lent("sched_getaffinity", buf, call).await?;
        if n > CpuSet::SIZE {
            return Err(Error::invalid(
                "sched_getaffinity",
                format!("the kernel reports writing {n} bytes into {}", CpuSet::SIZE),
            ));
        }
        // The kernel wrote `n` bytes; the rest is still the zeros we wrote.
        buf.into_readable().read().await
    }

    /// `sched_setaffinity(tid, 128, mask)` — restricts thread `tid` (0: the thread running
    /// this task's syscalls) to the CPUs of `set`.
    ///
    /// # Errors
    /// `EINVAL` if no CPU of the set is usable (an empty set included), `EPERM`, `ESRCH`.
    /// See sched_setaffinity(2). (A set naming CPUs past 1023 cannot be built: see
    /// [`CpuSet::insert`].)
    pub async fn sched_setaffinity(&self, tid: near::Pid, set: &CpuSet) -> Result<()> {
        let (buf, addr) = self.ptr_at(set).await?;
        let call = near::sched_setaffinity(self.sysif(), tid, CpuSet::SIZE, addr);
        self.lent("sched_setaffinity", buf, call).await?;
        Ok(())
    }
}

/// The address of the data structs of a [`CapBuffer`] at `buf`: right after the header,
/// inside the buffer's live allocation, so the sum cannot wrap.
fn cap_data(buf: Address) -> Address {
    Address::new(buf.as_u64() + std::mem::size_of::<CapHeader>() as u64)
}
