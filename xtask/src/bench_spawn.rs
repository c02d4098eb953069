//! The bench's spawning and transport figures of issue 11: spawn with setup (namespaces,
//! dup2, chdir) against std's `pre_exec`, spawn from a big parent against fork and
//! posix_spawn, many spawns in flight against a thread per core, 1 MiB through a remote
//! thread's memory against a socketpair, the context switches one spawn makes.

use super::Plan;
use super::Runner;
use super::block_on;
use super::env_path;
use super::join_all;
use super::spawn_true;
use rsyscall::AsyncChildProcess;
use rsyscall::CLONE;
use rsyscall::CloneOptions;
use rsyscall::Thread;
use rsyscall::local_thread;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The namespaces of the "spawn with setup" figure.
fn setup_clone_flags() -> CLONE {
    CLONE::NEWUSER | CLONE::NEWNS | CLONE::NEWPID
}

/// The directory both sides of "spawn with setup" change to.
fn setup_dir() -> PathBuf {
    std::env::temp_dir()
}

/// Ours for "spawn with setup": a clone child in new user, mount and pid namespaces (no id
/// mappings written, as the baseline writes none), stdin, stdout and stderr dup2'd from two
/// pipes, a chdir, then exec of `/bin/true`, waited for.
pub(crate) fn ours_spawn_setup() -> Result<Runner, String> {
    let parent = local_thread();
    let (input, output) = block_on(async {
        let input = parent.pipe().await.map_err(|e| format!("pipe: {e}"))?;
        let output = parent.pipe().await.map_err(|e| format!("pipe: {e}"))?;
        Ok::<_, String>((input, output))
    })?;
    let dir = setup_dir();
    Ok(Box::new(move |n| {
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let child = parent
                    .clone_with(
                        setup_clone_flags(),
                        CloneOptions::new().automatically_write_user_mappings(false),
                    )
                    .await
                    .map_err(|e| format!("clone: {e}"))?;
                let r = child
                    .inherit_fd(&input.read)
                    .map_err(|e| format!("inherit_fd: {e}"))?;
                let w = child
                    .inherit_fd(&output.write)
                    .map_err(|e| format!("inherit_fd: {e}"))?;
                let task = child.task();
                task.dup2(&r, &child.stdin())
                    .await
                    .map_err(|e| format!("dup2: {e}"))?;
                task.dup2(&w, &child.stdout())
                    .await
                    .map_err(|e| format!("dup2: {e}"))?;
                task.dup2(&w, &child.stderr())
                    .await
                    .map_err(|e| format!("dup2: {e}"))?;
                task.chdir(dir.as_path())
                    .await
                    .map_err(|e| format!("chdir: {e}"))?;
                drop((r, w));
                let process = child
                    .exec(rsyscall::Command::new("/bin/true", "true"))
                    .await
                    .map_err(|e| format!("exec /bin/true: {e}"))?;
                process
                    .check()
                    .await
                    .map_err(|e| format!("/bin/true: {e}"))?;
            }
            Ok(start.elapsed())
        })
    }))
}

/// Baseline for "spawn with setup": `std::process::Command` with an `unsafe pre_exec`
/// doing `unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)`, the three `dup2`s and the
/// `chdir` (std's fork path), waited for.
pub(crate) fn baseline_spawn_setup() -> Result<Runner, String> {
    let (in_read, in_write) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (out_read, out_write) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let in_fd: RawFd = in_read.into_raw_fd();
    let out_fd: RawFd = out_write.into_raw_fd();
    let dir = CString::new(setup_dir().into_os_string().into_encoded_bytes())
        .map_err(|e| format!("temporary directory: {e}"))?;
    let flags = setup_clone_flags().bits() as libc::c_int;
    // The other ends stay open as long as the runner.
    let keep = (in_write, out_read, KeptFd(in_fd), KeptFd(out_fd));
    Ok(Box::new(move |n| {
        let _keep = &keep;
        record_setup_memory();
        let start = Instant::now();
        for _ in 0..n {
            let mut command = std::process::Command::new("/bin/true");
            let dir = dir.clone();
            // SAFETY: the closure runs in the forked child before exec and makes only
            // async-signal-safe syscalls (unshare, dup2, chdir) on fds and a string that
            // were made before the fork; it allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    if libc::unshare(flags) != 0
                        || libc::dup2(in_fd, 0) < 0
                        || libc::dup2(out_fd, 1) < 0
                        || libc::dup2(out_fd, 2) < 0
                        || libc::chdir(dir.as_ptr()) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let status = command
                .status()
                .map_err(|e| format!("spawning /bin/true: {e}"))?;
            if !status.success() {
                return Err(format!("/bin/true: {status}"));
            }
        }
        Ok(start.elapsed())
    }))
}

/// This process's resident memory and page tables (KiB) when "spawn with setup" was last
/// measured: every fork of its baseline copies those page tables.
static SETUP_MEMORY: std::sync::Mutex<Option<(u64, u64)>> = std::sync::Mutex::new(None);

/// A field of `/proc/self/status` in KiB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn record_setup_memory() {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let (Some(rss), Some(pte)) =
            (status_kib(&status, "VmRSS:"), status_kib(&status, "VmPTE:"))
    {
        *SETUP_MEMORY.lock().unwrap_or_else(|e| e.into_inner()) = Some((rss, pte));
    }
}

/// The notes of "spawn with setup": the memory the forking baseline had to copy.
pub(crate) fn setup_notes(_plan: Plan) -> Result<Vec<String>, String> {
    let Some((rss, pte)) = *SETUP_MEMORY.lock().unwrap_or_else(|e| e.into_inner()) else {
        return Err("the baseline never ran".to_string());
    };
    Ok(vec![format!(
        "while it was measured this process had {} MiB resident and {pte} KiB of page tables \
         (VmRSS, VmPTE), which every fork of the baseline copies and tears down: the \
         baseline costs more the more memory the process holds (in a full run, what the \
         figures before this one left mapped; run alone with `--only spawn-setup`, much \
         less), while ours copies no page table",
        rss >> 10
    )])
}

/// An fd owned by a runner, closed when it is dropped (the baseline hands its number to
/// `pre_exec` closures, which need a plain `RawFd`).
struct KeptFd(RawFd);

impl Drop for KeptFd {
    fn drop(&mut self) {
        // SAFETY: the fd was taken out of its owner by `into_raw_fd` and is owned by this
        // value alone.
        unsafe { libc::close(self.0) };
    }
}

/// The most memory "spawn from a big parent" maps: 4 GiB.
const BIG_MAX: usize = 4 << 30;

/// The size of the last big mapping made, for the figure's note.
static BIG_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Anonymous private memory mapped and touched page by page (4 KiB pages: the mapping asks
/// for no huge pages), so that a fork must copy a page-table entry for each page. Shared by
/// both sides of a figure while either is set up; unmapped when the last drops it.
struct BigMapping {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is only unmapped in `drop` and never read or written through `addr`
// after it was touched in `make`; sharing the address between threads is harmless.
unsafe impl Send for BigMapping {}
// SAFETY: as for `Send`: nothing reads or writes through `addr` after `make`.
unsafe impl Sync for BigMapping {}

impl BigMapping {
    /// The mapping both sides share, made if none is alive: half of `MemAvailable`, at most
    /// [`BIG_MAX`].
    fn shared() -> Result<Arc<BigMapping>, String> {
        static SHARED: Mutex<Weak<BigMapping>> = Mutex::new(Weak::new());
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mapping) = shared.upgrade() {
            return Ok(mapping);
        }
        let mapping = Arc::new(BigMapping::make(big_size()?)?);
        *shared = Arc::downgrade(&mapping);
        Ok(mapping)
    }

    fn make(len: usize) -> Result<BigMapping, String> {
        // SAFETY: a new anonymous private mapping at an address the kernel picks; it
        // overlaps nothing of ours.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the range is the mapping just made.
        unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) };
        let page = 4096;
        for offset in (0..len).step_by(page) {
            // SAFETY: `offset` is inside the mapping, which is readable and writable and
            // used by nothing else.
            unsafe { addr.cast::<u8>().add(offset).write_volatile(1) };
        }
        BIG_SIZE.store(len, Ordering::Relaxed);
        Ok(BigMapping { addr, len })
    }
}

impl Drop for BigMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `make` and nothing uses it any more.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// Half of `MemAvailable`, at most [`BIG_MAX`], in whole MiB.
fn big_size() -> Result<usize, String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| format!("reading /proc/meminfo: {e}"))?;
    let kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or("no MemAvailable in /proc/meminfo")?;
    Ok((kib * 1024 / 2).min(BIG_MAX) & !((1 << 20) - 1))
}

/// Ours for "spawn from a big parent": [`spawn_true`] with the big mapping alive.
pub(crate) fn ours_spawn_big() -> Result<Runner, String> {
    let mapping = BigMapping::shared()?;
    let parent = local_thread();
    Ok(Box::new(move |n| {
        let _mapping = &mapping;
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                spawn_true(&parent).await?;
            }
            Ok(start.elapsed())
        })
    }))
}

/// Baseline for "spawn from a big parent": `Command` with a `pre_exec` that does nothing,
/// which makes std fork.
pub(crate) fn baseline_spawn_big_fork() -> Result<Runner, String> {
    let mapping = BigMapping::shared()?;
    Ok(Box::new(move |n| {
        let _mapping = &mapping;
        let start = Instant::now();
        for _ in 0..n {
            let mut command = std::process::Command::new("/bin/true");
            // SAFETY: the closure does nothing.
            unsafe { command.pre_exec(|| Ok(())) };
            let status = command
                .status()
                .map_err(|e| format!("spawning /bin/true: {e}"))?;
            if !status.success() {
                return Err(format!("/bin/true: {status}"));
            }
        }
        Ok(start.elapsed())
    }))
}

/// Baseline for "spawn from a big parent, vs posix_spawn": plain `Command::status()`.
pub(crate) fn baseline_spawn_big_vfork() -> Result<Runner, String> {
    let mapping = BigMapping::shared()?;
    let mut plain = super::baseline_spawn()?;
    Ok(Box::new(move |n| {
        let _mapping = &mapping;
        plain(n)
    }))
}

/// The note of the big-parent figures: how much memory the parent had.
pub(crate) fn big_parent_notes(_plan: Plan) -> Result<Vec<String>, String> {
    let len = BIG_SIZE.load(Ordering::Relaxed);
    if len == 0 {
        return Err("the memory was never mapped".to_string());
    }
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    Ok(vec![format!(
        "the parent mapped and touched {} MiB of anonymous private memory (half of \
         MemAvailable, at most 4096 MiB) in 4 KiB pages (`MADV_NOHUGEPAGE`; transparent \
         huge pages here: {thp}) before both sides, and unmapped it after",
        len >> 20
    )])
}

/// Spawns in flight at once in "many spawns".
pub(crate) const IN_FLIGHT: u32 = 64;

/// Ours for "many spawns": [`IN_FLIGHT`] [`spawn_true`] futures polled together by one
/// task.
pub(crate) fn ours_spawn_many() -> Result<Runner, String> {
    let parent = local_thread();
    Ok(Box::new(move |n| {
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                let spawns: Vec<_> = (0..IN_FLIGHT).map(|_| spawn_true(&parent)).collect();
                for result in join_all(spawns).await {
                    result?;
                }
            }
            Ok(start.elapsed())
        })
    }))
}

/// Baseline for "many spawns": as many OS threads as cores calling
/// `Command::new("/bin/true").status()` until [`IN_FLIGHT`] are done.
pub(crate) fn baseline_spawn_many() -> Result<Runner, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            let left = AtomicU32::new(IN_FLIGHT);
            let result: Result<(), String> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            while left
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| {
                                    k.checked_sub(1)
                                })
                                .is_ok()
                            {
                                let status = std::process::Command::new("/bin/true")
                                    .status()
                                    .map_err(|e| format!("spawning /bin/true: {e}"))?;
                                if !status.success() {
                                    return Err(format!("/bin/true: {status}"));
                                }
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for worker in workers {
                    worker
                        .join()
                        .map_err(|_| "a spawning thread panicked".to_string())??;
                }
                Ok(())
            });
            result?;
        }
        Ok(start.elapsed())
    }))
}

/// Bytes moved each way in "in-band memory".
const INBAND_BYTES: usize = 1 << 20;

/// The bytes both sides of "in-band memory" send.
fn inband_data() -> Vec<u8> {
    (0..INBAND_BYTES).map(|i| (i % 251) as u8).collect()
}

/// A stdin-bootstrapped thread (through `env`), exited and its launcher waited for when
/// dropped.
struct Bootstrapped {
    launcher: Option<AsyncChildProcess>,
    thread: Option<Thread>,
}

impl Drop for Bootstrapped {
    fn drop(&mut self) {
        if let (Some(launcher), Some(thread)) = (self.launcher.take(), self.thread.take()) {
            let ended = block_on(async {
                thread.exit(0).await.map_err(|e| format!("exit: {e}"))?;
                drop(thread);
                launcher.check().await.map_err(|e| format!("wait: {e}"))
            });
            if let Err(e) = ended {
                eprintln!("warning: ending the bootstrapped thread: {e}");
            }
        }
    }
}

/// Ours for "in-band memory": 1 MiB written into an allocation of a stdin-bootstrapped
/// thread's address space, then read back, through the library's memory transport.
pub(crate) fn ours_inband_memory() -> Result<Runner, String> {
    let env = env_path()?;
    let (launcher, thread) = block_on(rsyscall::stdin_bootstrap(&local_thread(), env))
        .map_err(|e| format!("stdin_bootstrap: {e}"))?;
    let held = Bootstrapped {
        launcher: Some(launcher),
        thread: Some(thread),
    };
    let thread = held.thread.as_ref().ok_or("no thread")?;
    let buffer =
        block_on(thread.malloc_bytes(INBAND_BYTES)).map_err(|e| format!("malloc_bytes: {e}"))?;
    let data = inband_data();
    // `buffer` is dropped before `held`: the closure's captures drop in this order.
    let state = (buffer, held);
    Ok(Box::new(move |n| {
        let (buffer, _held) = &state;
        let allocation = buffer.allocation();
        block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                allocation
                    .write(0, &data)
                    .await
                    .map_err(|e| format!("memory write: {e}"))?;
                let back = allocation
                    .read(0, INBAND_BYTES)
                    .await
                    .map_err(|e| format!("memory read: {e}"))?;
                if back != data {
                    return Err("the memory read back other bytes".to_string());
                }
            }
            Ok(start.elapsed())
        })
    }))
}

/// A `UnixStream` pair whose far end a `std::thread` serves: it reads 1 MiB, then writes
/// it back. Dropping it closes the near end (the thread reads EOF) and joins the thread.
struct EchoSocket {
    near: Option<UnixStream>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EchoSocket {
    fn drop(&mut self) {
        drop(self.near.take());
        if let Some(server) = self.server.take()
            && server.join().is_err()
        {
            eprintln!("warning: the echo thread panicked");
        }
    }
}

/// Baseline for "in-band memory": 1 MiB written into a socketpair, read whole by a thread
/// that then writes it back, and read back.
pub(crate) fn baseline_socketpair_bandwidth() -> Result<Runner, String> {
    let (near, mut far) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let server = std::thread::Builder::new()
        .name("echo".to_string())
        .spawn(move || {
            let mut buffer = vec![0u8; INBAND_BYTES];
            while far.read_exact(&mut buffer).is_ok() && far.write_all(&buffer).is_ok() {}
        })
        .map_err(|e| format!("spawning the echo thread: {e}"))?;
    let mut echo = EchoSocket {
        near: Some(near),
        server: Some(server),
    };
    let data = inband_data();
    let mut back = vec![0u8; INBAND_BYTES];
    Ok(Box::new(move |n| {
        let near = echo.near.as_mut().ok_or("the socket is closed")?;
        let start = Instant::now();
        for _ in 0..n {
            near.write_all(&data).map_err(|e| format!("write: {e}"))?;
            near.read_exact(&mut back)
                .map_err(|e| format!("read: {e}"))?;
            if back != data {
                return Err("the echo sent other bytes".to_string());
            }
        }
        Ok(start.elapsed())
    }))
}

/// Context switches so far, each as (voluntary, involuntary): of this process's live
/// threads by name (`voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` in
/// `/proc/self/task/*/status`, summed over threads of one name), of all its threads
/// including those that ended (`getrusage(RUSAGE_SELF)`), and of its reaped children
/// (`getrusage(RUSAGE_CHILDREN)`).
struct Switches {
    threads: BTreeMap<String, [u64; 2]>,
    all_threads: [u64; 2],
    children: [u64; 2],
}

fn context_switches() -> Result<Switches, String> {
    let mut threads = BTreeMap::new();
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    for task in tasks {
        let task = task.map_err(|e| format!("/proc/self/task: {e}"))?;
        // A thread may end between the listing and the read: it is skipped.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let mut name = String::new();
        let mut count = [0u64; 2];
        for line in status.lines() {
            let field = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|rest| rest.trim().parse::<u64>().ok())
            };
            if let Some(rest) = line.strip_prefix("Name:") {
                name = rest.trim().to_string();
            } else if let Some(v) = field("voluntary_ctxt_switches:") {
                count[0] = v;
            } else if let Some(v) = field("nonvoluntary_ctxt_switches:") {
                count[1] = v;
            }
        }
        let entry = threads.entry(name).or_insert([0, 0]);
        entry[0] += count[0];
        entry[1] += count[1];
    }
    let usage = |who| -> Result<[u64; 2], String> {
        // SAFETY: an all-zero rusage is a valid value of the plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable rusage.
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return Err(format!("getrusage: {}", std::io::Error::last_os_error()));
        }
        Ok([usage.ru_nvcsw as u64, usage.ru_nivcsw as u64])
    };
    Ok(Switches {
        threads,
        all_threads: usage(libc::RUSAGE_SELF)?,
        children: usage(libc::RUSAGE_CHILDREN)?,
    })
}

/// The context switches per operation of `n` operations of a runner, as a sentence.
fn switches_per_op(runner: &mut Runner, n: u32) -> Result<String, String> {
    let before = context_switches()?;
    runner(n)?;
    let after = context_switches()?;
    let per = |a: [u64; 2], b: [u64; 2]| {
        [0, 1].map(|i| a[i].saturating_sub(b[i]) as f64 / f64::from(n.max(1)))
    };
    let show = |[v, i]: [f64; 2]| format!("{:.2} ({v:.2} + {i:.2})", v + i);
    let mut live = [0.0; 2];
    let mut by_name = Vec::new();
    for (name, count) in &after.threads {
        let d = per(*count, before.threads.get(name).copied().unwrap_or([0, 0]));
        live[0] += d[0];
        live[1] += d[1];
        by_name.push(format!("`{name}` {}", show(d)));
    }
    let children = per(after.children, before.children);
    Ok(format!(
        "{} in all: {} in this process's live threads ({}), {} in all its threads by \
         getrusage(RUSAGE_SELF) (ended ones included), {} in children",
        show([live[0] + children[0], live[1] + children[1]]),
        show(live),
        by_name.join(", "),
        show(per(after.all_threads, before.all_threads)),
        show(children),
    ))
}

/// The note of "spawn /bin/true": context switches (wakeups) per spawn of each side.
pub(crate) fn spawn_wakeup_notes(plan: Plan) -> Result<Vec<String>, String> {
    let n = plan.iterations.max(10);
    let mut ours = super::ours_spawn()?;
    let mut baseline = super::baseline_spawn()?;
    ours(plan.warmup.max(1))?;
    baseline(plan.warmup.max(1))?;
    let ours = switches_per_op(&mut ours, n)?;
    let baseline = switches_per_op(&mut baseline, n)?;
    Ok(vec![format!(
        "context switches per spawn over {n} spawns, each as total (voluntary + \
         involuntary; the voluntary ones are the wakeups, the involuntary ones preemption \
         by the machine's other load): a thread's from /proc/self/task/*/status, children's \
         from getrusage(RUSAGE_CHILDREN), which counts reaped children, /bin/true after its \
         exec included. Ours: {ours}. Baseline: {baseline}"
    )])
}
