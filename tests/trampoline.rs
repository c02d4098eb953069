//! The raw syscall routine, the trampoline and the futex helpers, in-process: clone
//! children (sharing our address space) are started through `raw_syscall` with a stack
//! image, exactly as a client does (PROTOCOL.md sections 2 and 4).
//!
//! Code that runs in the children is `no_std`-style: no allocation, no printing, no panics;
//! it reports through atomics in shared memory.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rsyscall_server::proto::StackImage;
use rsyscall_server::raw_syscall;
use rsyscall_tests::server::{TIMEOUT, call};

const STACK_SIZE: usize = 64 * 1024;

/// A 64 KiB anonymous mapping, unmapped on drop (only after the child using it is reaped).
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize, shared: bool) -> Mapping {
        let kind = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                kind | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            base,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Mapping {
            base: base.cast(),
            len,
        }
    }

    /// A futex word at the start of the mapping.
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the mapping is page-aligned, at least 4 bytes, zero-filled, and lives as
        // long as the returned reference; it is only accessed atomically.
        unsafe { AtomicU32::from_ptr(self.base.cast()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing uses it any more.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Clones a child with `flags` (plus the exit signal SIGCHLD) that runs `function(args)`
/// on `stack` through the trampoline; `ctid` is the `CLONE_CHILD_CLEARTID` word, if any.
/// Returns the child's pid.
fn clone_child(
    flags: i32,
    stack: &Mapping,
    function: extern "C" fn(u64, u64, u64, u64, u64, u64) -> i64,
    args: [u64; 6],
    ctid: Option<&AtomicU32>,
) -> i32 {
    let image = StackImage::new(function as usize as u64, args);
    let top = stack.base as usize + stack.len - StackImage::SIZE;
    assert_eq!(top % 16, 0);
    // SAFETY: `top` is the last 64 bytes of the stack mapping, 16-byte aligned.
    unsafe { std::ptr::write(top as *mut StackImage, image) };
    let ctid_ptr = ctid.map_or(0, |w| w.as_ptr() as i64);
    // SAFETY: the child gets its own stack (the mapping outlives it: every test reaps the
    // child before dropping the mapping) and runs only the trampoline and a function that
    // does not allocate, panic or touch TLS. The ctid word outlives the child too.
    let ret = unsafe {
        raw_syscall(
            (flags | libc::SIGCHLD) as i64,
            top as i64,
            0,
            ctid_ptr,
            0,
            0,
            libc::SYS_clone,
        )
    };
    assert!(ret > 0, "clone failed: {ret}");
    ret as i32
}

/// `waitpid(pid, options)`: the raw status, or None if `WNOHANG` found nothing.
fn waitpid(pid: i32, options: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only `status`.
        let ret = unsafe { libc::waitpid(pid, &mut status, options) };
        if ret == pid {
            return Some(status);
        }
        if ret == 0 {
            return None;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EINTR),
            "waitpid({pid}): {err}"
        );
    }
}

/// Waits (polling, at most [`TIMEOUT`]) for a status change of `pid` matching `options`
/// (`WUNTRACED` for stops); kills and reaps the child and panics on a timeout.
fn wait_status(pid: i32, options: i32) -> i32 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = waitpid(pid, options | libc::WNOHANG) {
            return status;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: pid is our unreaped child, so the number cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            waitpid(pid, 0);
            panic!("child {pid} did not change state within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for `pid` to exit and returns its exit status (panics if it was killed).
fn wait_exit(pid: i32) -> i32 {
    let status = wait_status(pid, 0);
    assert!(
        libc::WIFEXITED(status),
        "child {pid} did not exit normally: {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

/// Whether `pid` is still running after a moment.
fn still_running(pid: i32) -> bool {
    std::thread::sleep(Duration::from_millis(100));
    waitpid(pid, libc::WNOHANG).is_none()
}

/// `FUTEX_WAKE` (shared, as the kernel's own wake on exit) on `word`.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only looks up waiters on the address; it reads no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        )
    };
}

static RECORDED: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
static RECORDED_RSP: AtomicU64 = AtomicU64::new(0);

/// Runs in the child: records its six arguments and roughly where its stack is.
extern "C" fn record_args(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> i64 {
    for (slot, v) in RECORDED.iter().zip([a, b, c, d, e, f]) {
        slot.store(v, Ordering::SeqCst);
    }
    let local = 0u8;
    RECORDED_RSP.store(&local as *const u8 as u64, Ordering::SeqCst);
    // The trampoline exits 0 whatever this returns.
    77
}

#[test]
fn trampoline_calls_the_function_with_six_arguments_then_exits_0() {
    let stack = Mapping::new(STACK_SIZE, false);
    let ctid_page = Mapping::new(4096, true);
    let ctid = ctid_page.word();
    ctid.store(1, Ordering::SeqCst);
    let args = [
        1,
        0xffff_ffff_ffff_fffe,
        0x1234_5678_9abc_def0,
        4,
        5 << 40,
        6,
    ];
    let pid = clone_child(
        libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_CHILD_CLEARTID,
        &stack,
        record_args,
        args,
        Some(ctid),
    );
    assert_eq!(wait_exit(pid), 0);
    let got: Vec<u64> = RECORDED.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    assert_eq!(got, args);
    let rsp = RECORDED_RSP.load(Ordering::SeqCst) as usize;
    let base = stack.base as usize;
    assert!(
        (base..base + STACK_SIZE).contains(&rsp),
        "the function did not run on the given stack"
    );
    // CLONE_CHILD_CLEARTID: the kernel zeroed the word when the child exited.
    assert_eq!(ctid.load(Ordering::SeqCst), 0);
}

/// Runs in the child: `futex_helper(word, value)` through the C ABI.
extern "C" fn run_futex_helper(word: u64, value: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    rsyscall_server::futex_helper(word as *const u32, value as u32)
}

/// Runs in the child: `futex_helper_nostop(word, value)`.
extern "C" fn run_futex_helper_nostop(
    word: u64,
    value: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
) -> i64 {
    rsyscall_server::futex_helper_nostop(word as *const u32, value as u32)
}

#[test]
fn futex_helper_stops_then_exits_when_the_word_changes() {
    let stack = Mapping::new(STACK_SIZE, false);
    let page = Mapping::new(4096, true);
    let word = page.word();
    word.store(1, Ordering::SeqCst);
    let pid = clone_child(
        libc::CLONE_VM | libc::CLONE_FILES,
        &stack,
        run_futex_helper,
        [word.as_ptr() as u64, 1, 0, 0, 0, 0],
        None,
    );
    // It stops itself with SIGSTOP first.
    let status = wait_status(pid, libc::WUNTRACED);
    assert!(libc::WIFSTOPPED(status), "expected a stop, got {status:#x}");
    assert_eq!(libc::WSTOPSIG(status), libc::SIGSTOP);
    // Continued, it waits on the word.
    // SAFETY: pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert!(
        still_running(pid),
        "the helper exited while the word was unchanged"
    );
    // A wakeup without a change is spurious: it keeps waiting.
    futex_wake(word);
    assert!(still_running(pid), "the helper exited on a spurious wakeup");
    word.store(0, Ordering::SeqCst);
    futex_wake(word);
    assert_eq!(wait_exit(pid), 0);
}

#[test]
fn futex_helper_nostop_exits_when_the_word_changes() {
    let stack = Mapping::new(STACK_SIZE, false);
    let page = Mapping::new(4096, true);
    let word = page.word();
    word.store(1, Ordering::SeqCst);
    let pid = clone_child(
        libc::CLONE_VM | libc::CLONE_FILES,
        &stack,
        run_futex_helper_nostop,
        [word.as_ptr() as u64, 1, 0, 0, 0, 0],
        None,
    );
    assert!(
        still_running(pid),
        "the helper exited while the word was unchanged"
    );
    word.store(2, Ordering::SeqCst);
    futex_wake(word);
    assert_eq!(wait_exit(pid), 0);
}

#[test]
fn futex_helper_nostop_returns_at_once_if_the_word_already_changed() {
    let stack = Mapping::new(STACK_SIZE, false);
    let page = Mapping::new(4096, true);
    let word = page.word();
    word.store(0, Ordering::SeqCst);
    let pid = clone_child(
        libc::CLONE_VM | libc::CLONE_FILES,
        &stack,
        run_futex_helper_nostop,
        [word.as_ptr() as u64, 1, 0, 0, 0, 0],
        None,
    );
    assert_eq!(wait_exit(pid), 0);
}

/// Runs in the child: `server(fd, fd)`.
extern "C" fn run_server(fd: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    rsyscall_server::server(fd as i32, fd as i32)
}

#[test]
fn clone_child_serves_and_the_futex_helper_sees_it_exit() {
    // The whole of PROTOCOL.md section 4: a server child sharing our address space and fd
    // table, cloned with CLONE_CHILD_CLEARTID on a word in shared memory, and a helper
    // that waits on that word.
    let server_stack = Mapping::new(STACK_SIZE, false);
    let helper_stack = Mapping::new(STACK_SIZE, false);
    let page = Mapping::new(4096, true);
    let word = page.word();
    word.store(1, Ordering::SeqCst);
    let (mut client, server_end) = UnixStream::pair().unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let child = clone_child(
        libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_CHILD_CLEARTID,
        &server_stack,
        run_server,
        [server_end.as_raw_fd() as u64, 0, 0, 0, 0, 0],
        Some(word),
    );
    let helper = clone_child(
        libc::CLONE_VM | libc::CLONE_FILES,
        &helper_stack,
        run_futex_helper_nostop,
        [word.as_ptr() as u64, 1, 0, 0, 0, 0],
        None,
    );
    // The child runs our requests as itself.
    assert_eq!(call(&mut client, libc::SYS_getpid, [0; 6]), child as i64);
    assert_eq!(
        call(&mut client, libc::SYS_write, [-1, 0, 0, 0, 0, 0]),
        -(libc::EBADF as i64)
    );
    assert!(
        still_running(helper),
        "the helper exited while the child runs"
    );
    // Ask the child to exit (the thread exit: no response), as a client would.
    rsyscall_tests::server::send_request(&mut client, libc::SYS_exit, [3, 0, 0, 0, 0, 0]);
    assert_eq!(wait_exit(child), 3);
    // The kernel cleared the word and woke the helper.
    assert_eq!(wait_exit(helper), 0);
    assert_eq!(word.load(Ordering::SeqCst), 0);
}
