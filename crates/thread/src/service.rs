//! The local service thread: issues the local process's clones and reaps children nobody
//! waits for any more.
//!
//! It sleeps in `epoll_wait` on an eventfd (commands: the clones) and on the pidfds of the
//! children it is to reap. [`reap_later`] adds a pidfd to that epoll instance from the
//! caller's thread, without waking the service thread: it wakes once, when the child
//! exits. (Each spawn hands over one futex helper, so this saves a wakeup per spawn.)
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that created a child exits. Executors run
//! futures on threads that come and go, so clones of the local process are issued here, on
//! one thread that lives as long as the process: children then die with the process, not
//! with whichever executor thread happened to ask.
//!
//! The syscalls it makes for threads (the clones, the reaping `waitid`, the
//! `pidfd_send_signal` of a dropped local child) go through
//! [`LocalSyscall::syscall_sync`](near::LocalSyscall::syscall_sync), so they are traced as run
//! in the local process like every other syscall of the library; its own plumbing (the
//! eventfd, `epoll_wait`, `epoll_ctl`) is not.
//!
//! # Safety
//! This module runs raw `clone` and a few local syscalls. Each clone's stack image and tid
//! pointers are prepared by the caller of [`clone`], which owns them and keeps them
//! allocated until the child is gone (see its `# Safety`). The other calls pass only
//! buffers owned by this thread's stack frame.
#![allow(unsafe_code)]

use std::any::Any;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

use slab::Slab;

use rsyscall_near::{self as near, Address, CLONE, Pid, Signal, SyscallError};

use crate::oneshot;

/// Arguments of one local clone.
#[derive(Clone, Copy)]
pub(crate) struct CloneArgs {
    pub flags: CLONE,
    pub exit_signal: Option<Signal>,
    pub stack: Address,
    pub ptid: Address,
    pub ctid: Address,
}

enum Command {
    Clone(CloneArgs, oneshot::Sender<Result<Pid, SyscallError>>),
    /// Two clones in order; the second only if the first succeeded.
    ClonePair(
        CloneArgs,
        CloneArgs,
        oneshot::Sender<Vec<Result<Pid, SyscallError>>>,
    ),
    /// A child to reap, whose pidfd could not be added to the epoll instance from the
    /// caller's thread.
    Reap(Watched),
}

/// A child to reap: its pidfd, and what to drop once it is reaped.
type Watched = (OwnedFd, Box<dyn Any + Send>);

/// The epoll data of the eventfd; children's pidfds get other tokens ([`token`]).
const WAKE_TOKEN: u64 = 0;

struct Service {
    queue: Mutex<Vec<Command>>,
    wake: OwnedFd,
    epfd: OwnedFd,
    /// Children to reap.
    watched: Mutex<Watching>,
}

/// The children to reap whose pidfd is in the epoll instance.
#[derive(Default)]
struct Watching {
    /// By slab key, with the epoll data their pidfd was added with ([`token`]). A key is
    /// free again once its child is reaped.
    children: Slab<(u64, Watched)>,
    /// Bumped at each addition, the high 32 bits of the epoll data: an event still queued
    /// for a reaped child whose key was reused does not match the new child.
    generation: u32,
}

/// The epoll data of the child with slab key `key` added at `generation`: the generation in
/// the high 32 bits, the key plus one in the low ones, so it is never [`WAKE_TOKEN`].
/// `None` for a key beyond 32 bits.
fn token(key: usize, generation: u32) -> Option<u64> {
    let low = u32::try_from(key).ok()?.checked_add(1)?;
    Some(u64::from(generation) << 32 | u64::from(low))
}

/// The slab key in the epoll data `token` (which is not [`WAKE_TOKEN`]).
fn key_of(token: u64) -> usize {
    ((token & u64::from(u32::MAX)) as usize).wrapping_sub(1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `epoll_ctl(epfd, op, fd, EPOLLIN with data token)`.
fn epoll_ctl(epfd: &OwnedFd, op: i32, fd: i32, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    let r = unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd, &raw mut ev) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn service() -> Result<&'static Service, std::io::Error> {
    static SERVICE: OnceLock<Result<&'static Service, i32>> = OnceLock::new();
    let s = SERVICE.get_or_init(|| {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        // SAFETY: eventfd just returned this fd, which nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: epoll_create1 takes no pointers; the result is checked before use.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        // SAFETY: epoll_create1 just returned this fd, which nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
        epoll_ctl(&epfd, libc::EPOLL_CTL_ADD, wake.as_raw_fd(), WAKE_TOKEN)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let svc: &'static Service = Box::leak(Box::new(Service {
            queue: Mutex::new(Vec::new()),
            wake,
            epfd,
            watched: Mutex::new(Watching::default()),
        }));
        std::thread::Builder::new()
            .name("rsyscall-service".into())
            .spawn(move || run(svc))
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EAGAIN))?;
        Ok(svc)
    });
    s.map_err(std::io::Error::from_raw_os_error)
}

impl Service {
    fn push(&self, cmd: Command) {
        lock(&self.queue).push(cmd);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local u64 to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// Issues `clone` from the service thread.
///
/// # Safety
/// `args.stack` must point at a stack image (PROTOCOL.md section 2) in memory of the local
/// address space that stays allocated, and is used by nothing else, until the child has
/// exec'd or exited; `ptid` and `ctid` must be valid for the kernel's writes for as long.
pub(crate) async unsafe fn clone(args: CloneArgs) -> Result<Pid, SyscallError> {
    let svc = match service() {
        Ok(s) => s,
        Err(e) => {
            return Err(SyscallError::Errno(
                near::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN))
                    .unwrap_or(near::Errno::EAGAIN),
            ));
        }
    };
    let (tx, rx) = oneshot::channel();
    svc.push(Command::Clone(args, tx));
    rx.await
}

/// Issues two clones from the service thread in one trip: `first`, then (only if it
/// succeeded) `second`. Returns one result per clone attempted.
///
/// # Safety
/// As for [`clone`], for both.
pub(crate) async unsafe fn clone_pair(
    first: CloneArgs,
    second: CloneArgs,
) -> Vec<Result<Pid, SyscallError>> {
    let svc = match service() {
        Ok(s) => s,
        Err(e) => {
            let errno = near::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN))
                .unwrap_or(near::Errno::EAGAIN);
            return vec![Err(SyscallError::Errno(errno))];
        }
    };
    let (tx, rx) = oneshot::channel();
    svc.push(Command::ClonePair(first, second, tx));
    rx.await
}

/// Hands a local child's pidfd to the service thread, which reaps the child when it exits
/// and then drops `keep` (for example the memory the child ran on). The pidfd joins the
/// service thread's epoll instance from here, so the thread is not woken until the child
/// exits.
pub(crate) fn reap_later(pidfd: OwnedFd, keep: Box<dyn Any + Send>) {
    match service() {
        Ok(svc) => svc.watch((pidfd, keep)),
        Err(e) => {
            // Without the service thread nothing can reap: leak what the child may use.
            log::error!("rsyscall service thread unavailable ({e}); leaking a child's resources");
            std::mem::forget(keep);
        }
    }
}

impl Service {
    /// Adds `w` to the children to reap; if its pidfd cannot join the epoll instance, the
    /// service thread is told, and looks at it on a timer.
    fn watch(&self, w: Watched) {
        let fd = w.0.as_raw_fd();
        // In the table first: the event may come before `epoll_ctl` returns.
        let (key, token) = {
            let mut watched = lock(&self.watched);
            watched.generation = watched.generation.wrapping_add(1);
            let generation = watched.generation;
            let entry = watched.children.vacant_entry();
            let key = entry.key();
            let Some(token) = token(key, generation) else {
                drop(watched);
                log::debug!("rsyscall service: 2^32 children to reap; polling this one");
                self.push(Command::Reap(w));
                return;
            };
            entry.insert((token, w));
            (key, token)
        };
        if let Err(e) = epoll_ctl(&self.epfd, libc::EPOLL_CTL_ADD, fd, token) {
            log::debug!("rsyscall service: watching a pidfd failed ({e}); polling it");
            let w = {
                let mut watched = lock(&self.watched);
                match watched.children.get(key) {
                    Some((t, _)) if *t == token => Some(watched.children.remove(key).1),
                    _ => None,
                }
            };
            if let Some(w) = w {
                self.push(Command::Reap(w));
            }
        }
    }

    /// Reaps the child of `token` if it exited: removes its pidfd from the epoll instance
    /// (before closing it: a copy of the pidfd may keep its file open) and drops what was
    /// kept for it.
    fn reap_token(&self, token: u64) {
        let key = key_of(token);
        let done = {
            let mut watched = lock(&self.watched);
            match watched.children.get(key) {
                Some((t, (fd, _))) if *t == token && reaped(fd) => {
                    Some(watched.children.remove(key).1)
                }
                _ => None,
            }
        };
        if let Some((fd, keep)) = done {
            let _ = epoll_ctl(&self.epfd, libc::EPOLL_CTL_DEL, fd.as_raw_fd(), token);
            drop((fd, keep));
        }
    }
}

/// The clone syscall for `a`, from this thread.
///
/// # Safety
/// As for [`clone`].
unsafe fn raw_clone(a: &CloneArgs) -> Result<Pid, SyscallError> {
    // SAFETY: forwarded from the caller.
    let r = unsafe {
        near::LocalSyscall.syscall_sync(near::Request::new(
            libc::SYS_clone,
            [
                a.flags.bits() as i64 | a.exit_signal.map(|s| s.as_raw() as i64).unwrap_or(0),
                a.stack.arg(),
                a.ptid.arg(),
                a.ctid.arg(),
                0,
                0,
            ],
        ))
    };
    r.map(|pid| Pid::new(pid as i32))
}

fn run(svc: &'static Service) {
    crate::reaper::block_all_signals("service");
    // Children whose pidfd could not join the epoll instance: looked at every 100 ms.
    let mut unwatched: Vec<Watched> = Vec::new();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        let timeout = if unwatched.is_empty() { -1 } else { 100 };
        // SAFETY: `events` is a valid array of the length passed.
        let n = unsafe {
            libc::epoll_wait(
                svc.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout,
            )
        };
        // EINTR; nothing else can fail with valid arguments.
        let n = usize::try_from(n).unwrap_or(0);
        for ev in &events[..n] {
            let token = ev.u64;
            if token != WAKE_TOKEN {
                svc.reap_token(token);
                continue;
            }
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a local u64 from our eventfd.
            unsafe { libc::read(svc.wake.as_raw_fd(), (&raw mut count).cast(), 8) };
            let cmds = std::mem::take(&mut *lock(&svc.queue));
            for cmd in cmds {
                match cmd {
                    Command::ClonePair(a, b, reply) => {
                        // SAFETY: the caller of `clone_pair` guarantees both.
                        let first = unsafe { raw_clone(&a) };
                        let mut out = vec![first];
                        if out[0].is_ok() {
                            // SAFETY: as above.
                            out.push(unsafe { raw_clone(&b) });
                        }
                        reply.send(out);
                    }
                    Command::Clone(a, reply) => {
                        // SAFETY: the caller of `clone` guarantees the stack image and the
                        // tid pointers (see its `# Safety`).
                        reply.send(unsafe { raw_clone(&a) });
                    }
                    Command::Reap(w) => unwatched.push(w),
                }
            }
        }
        unwatched.retain(|(fd, _)| !reaped(fd));
    }
}

/// Reaps the exited child behind `pidfd`; true once it is gone.
fn reaped(pidfd: &OwnedFd) -> bool {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let request = near::Request::new(
        libc::SYS_waitid,
        [
            libc::P_PIDFD as i64,
            pidfd.as_raw_fd() as i64,
            (&raw mut info) as i64,
            (libc::WEXITED | libc::WNOHANG) as i64,
            0,
            0,
        ],
    );
    // SAFETY: waitid writes one siginfo_t into `info`, a live local.
    let r = unsafe { near::LocalSyscall.syscall_sync(request) };
    // ECHILD: already reaped by someone else; anything else: give up on it rather than spin.
    r != Ok(0) || {
        // SAFETY: reading the pid field of a siginfo filled (or left zeroed) by waitid.
        unsafe { info.si_pid() != 0 }
    }
}

/// `pidfd_send_signal(pidfd, sig)` on a local pidfd, ignoring errors (the process may be
/// gone already).
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: Signal) {
    let request = near::Request::new(
        libc::SYS_pidfd_send_signal,
        [pidfd.as_raw_fd() as i64, sig.as_raw() as i64, 0, 0, 0, 0],
    );
    // SAFETY: no siginfo pointer is passed; signalling touches no memory or fd of ours.
    let _ = unsafe { near::LocalSyscall.syscall_sync(request) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_the_wake_token_and_carry_key_and_generation() {
        for (key, generation) in [(0, 0), (0, 1), (5, 7), (u32::MAX as usize - 1, u32::MAX)] {
            let t = token(key, generation).expect("a 32-bit key");
            assert_ne!(t, WAKE_TOKEN);
            assert_eq!(key_of(t), key);
            assert_eq!((t >> 32) as u32, generation);
        }
        // The same key at another generation is another token.
        assert_ne!(token(3, 1), token(3, 2));
        assert_eq!(token(u32::MAX as usize, 0), None);
    }
}
