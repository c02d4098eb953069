//! The local service thread: issues the local process's clones and reaps children nobody
//! waits for any more.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that created a child exits. Executors run
//! futures on threads that come and go, so clones of the local process are issued here, on
//! one thread that lives as long as the process: children then die with the process, not
//! with whichever executor thread happened to ask.
//!
//! # Safety
//! This module runs raw `clone` and a few local syscalls. Each clone's stack image and tid
//! pointers are prepared by the caller of [`clone`], which owns them and keeps them
//! allocated until the child is gone (see its `# Safety`). The other calls pass only
//! buffers owned by this thread's stack frame.
#![allow(unsafe_code)]

use std::any::Any;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

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
    Reap {
        pidfd: OwnedFd,
        keep: Box<dyn Any + Send>,
    },
}

struct Service {
    queue: Mutex<Vec<Command>>,
    wake: OwnedFd,
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
        let svc: &'static Service = Box::leak(Box::new(Service {
            queue: Mutex::new(Vec::new()),
            wake,
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
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd);
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
/// and then drops `keep` (for example the memory the child ran on).
pub(crate) fn reap_later(pidfd: OwnedFd, keep: Box<dyn Any + Send>) {
    match service() {
        Ok(svc) => svc.push(Command::Reap { pidfd, keep }),
        Err(e) => {
            // Without the service thread nothing can reap: leak what the child may use.
            log::error!("rsyscall service thread unavailable ({e}); leaking a child's resources");
            std::mem::forget(keep);
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
    // Block every signal in this thread, so process-directed signals go to the program's
    // own threads. Children cloned here inherit the full mask; exec resets it.
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask write only `set` and
    // this thread's own mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    let mut watched: Vec<(OwnedFd, Box<dyn Any + Send>)> = Vec::new();
    loop {
        let mut pollfds: Vec<libc::pollfd> = Vec::with_capacity(watched.len() + 1);
        pollfds.push(libc::pollfd {
            fd: svc.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        pollfds.extend(watched.iter().map(|(fd, _)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: pollfds is a valid array of the length passed.
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR; nothing else can fail with valid arguments.
        }
        if pollfds[0].revents != 0 {
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a local u64 from our eventfd.
            unsafe { libc::read(svc.wake.as_raw_fd(), (&raw mut count).cast(), 8) };
            let cmds = std::mem::take(&mut *svc.queue.lock().unwrap_or_else(|e| e.into_inner()));
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
                    Command::Reap { pidfd, keep } => watched.push((pidfd, keep)),
                }
            }
        }
        let ready: Vec<bool> = pollfds[1..].iter().map(|p| p.revents != 0).collect();
        let mut i = 0;
        watched.retain(|(fd, _)| {
            let r = ready.get(i).copied().unwrap_or(false);
            i += 1;
            !(r && reaped(fd))
        });
    }
}

/// Reaps the exited child behind `pidfd`; true once it is gone.
fn reaped(pidfd: &OwnedFd) -> bool {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes one siginfo_t into `info`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            libc::P_PIDFD,
            pidfd.as_raw_fd(),
            &raw mut info,
            libc::WEXITED | libc::WNOHANG,
            0,
        )
    };
    // ECHILD: already reaped by someone else; anything else: give up on it rather than spin.
    r != 0 || {
        // SAFETY: reading the pid field of a siginfo filled (or left zeroed) by waitid.
        unsafe { info.si_pid() != 0 }
    }
}

/// `pidfd_send_signal(pidfd, sig)` on a local pidfd, ignoring errors (the process may be
/// gone already).
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: Signal) {
    // SAFETY: no siginfo pointer is passed.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig.as_raw(),
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}
