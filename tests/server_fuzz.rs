//! Fuzzing the `rsyscall-server` binary: 100 000 random requests, pipelined in random
//! batches and written in random pieces, restricted to syscalls that cannot hurt the server
//! (identity queries, `umask`, calls on fds that cannot be open) and to numbers that are no
//! syscall at all. Each answer is checked against what the kernel must return, and the
//! server must still serve afterwards and exit cleanly at EOF.
//!
//! The random numbers come from a seeded generator; the seed is printed when the test
//! fails, and `RSYSCALL_FUZZ_SEED=<seed>` replays a run.

use std::io::{Read, Write};
use std::time::Duration;

use rsyscall_server::proto::{RESPONSE_SIZE, Request};
use rsyscall_tests::rng::{Rng, SEED_ENV, seed};
use rsyscall_tests::server::ServerProcess;

/// Requests in all.
const REQUESTS: usize = 100_000;
/// The most requests sent before their responses are read.
const MAX_BATCH: usize = 512;
/// What the server sees of this process and itself, for checking answers.
struct Facts {
    server_pid: i64,
    /// The test process, the server's parent.
    parent_pid: i64,
    uid: i64,
    euid: i64,
    gid: i64,
    egid: i64,
    pgrp: i64,
    sid: i64,
}

/// A syscall taking an fd first, which fails with `EBADF` before looking at any other
/// argument when the fd is not open.
const BAD_FD_SYSCALLS: &[(i64, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_close, "close"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_dup, "dup"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_fsync, "fsync"),
    (libc::SYS_fdatasync, "fdatasync"),
    (libc::SYS_getdents64, "getdents64"),
    (libc::SYS_fchdir, "fchdir"),
    (libc::SYS_fchmod, "fchmod"),
    (libc::SYS_fstatfs, "fstatfs"),
];

/// An fd argument that names no open fd of the server: the kernel takes the low 32 bits
/// as the fd, so those are negative or at least 1000 (the server has a handful of fds);
/// the high bits are random.
fn bad_fd(rng: &mut Rng) -> i64 {
    let low: u32 = if rng.below(2) == 0 {
        // 1000..=i32::MAX
        1000 + rng.below(i32::MAX as u64 - 999) as u32
    } else {
        // Negative as an int.
        0x8000_0000 | rng.next_u64() as u32
    };
    ((rng.next_u64() & 0xffff_ffff_0000_0000) | u64::from(low)) as i64
}

/// A syscall number that is no syscall: the kernel looks at the low 32 bits only (as an
/// int), and those are at least 1024 (beyond the x86-64 table) and outside the x32 range
/// (bit 30 set, then a table index), or negative. The high bits are random.
fn bad_number(rng: &mut Rng) -> i64 {
    let low: u32 = match rng.below(4) {
        0 => 1024 + rng.below(0x4000_0000 - 1024) as u32,
        1 => 0x4000_0000 + 1024 + rng.below(0x4000_0000 - 1024) as u32,
        2 => 0x8000_0000 | rng.next_u64() as u32,
        _ => u32::MAX,
    };
    let high = if rng.below(2) == 0 {
        0
    } else {
        rng.next_u64() & 0xffff_ffff_0000_0000
    };
    (high | u64::from(low)) as i64
}

/// One random request and the answer it must get. `umask` is the server's umask now, which
/// a `umask` request changes.
fn pick(rng: &mut Rng, facts: &Facts, umask: &mut i64) -> (Request, i64, String) {
    let mut args = [0i64; 6];
    for a in &mut args {
        *a = rng.next_u64() as i64;
    }
    let ebadf = -(libc::EBADF as i64);
    let enosys = -(libc::ENOSYS as i64);
    match rng.below(16) {
        0 => (
            Request::new(libc::SYS_getpid, args),
            facts.server_pid,
            "getpid".into(),
        ),
        1 => (
            Request::new(libc::SYS_gettid, args),
            facts.server_pid,
            "gettid".into(),
        ),
        2 => (
            Request::new(libc::SYS_getppid, args),
            facts.parent_pid,
            "getppid".into(),
        ),
        3 => {
            let (nr, want, name) = match rng.below(4) {
                0 => (libc::SYS_getuid, facts.uid, "getuid"),
                1 => (libc::SYS_geteuid, facts.euid, "geteuid"),
                2 => (libc::SYS_getgid, facts.gid, "getgid"),
                _ => (libc::SYS_getegid, facts.egid, "getegid"),
            };
            (Request::new(nr, args), want, name.into())
        }
        4 => (
            Request::new(libc::SYS_getpgrp, args),
            facts.pgrp,
            "getpgrp".into(),
        ),
        5 => {
            args[0] = 0;
            (
                Request::new(libc::SYS_getsid, args),
                facts.sid,
                "getsid(0)".into(),
            )
        }
        6 => {
            args[0] = 0;
            (
                Request::new(libc::SYS_getpgid, args),
                facts.pgrp,
                "getpgid(0)".into(),
            )
        }
        7 => (
            Request::new(libc::SYS_sched_yield, args),
            0,
            "sched_yield".into(),
        ),
        8 => {
            // umask takes the low 9 bits of its argument and returns the old mask.
            let old = *umask;
            *umask = args[0] & 0o777;
            (
                Request::new(libc::SYS_umask, args),
                old,
                format!("umask({:#o})", args[0] & 0o777),
            )
        }
        9..=12 => {
            let (nr, name) = BAD_FD_SYSCALLS[rng.below(BAD_FD_SYSCALLS.len() as u64) as usize];
            args[0] = bad_fd(rng);
            (
                Request::new(nr, args),
                ebadf,
                format!("{name}(bad fd {:#x})", args[0]),
            )
        }
        _ => {
            let nr = bad_number(rng);
            (
                Request::new(nr, args),
                enosys,
                format!("syscall number {nr:#x}"),
            )
        }
    }
}

/// Prints the seed if the test fails (the harness shows what a failed test printed).
struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "server fuzz failed with seed {0}: rerun with {SEED_ENV}={0}",
                self.0
            );
        }
    }
}

/// The umask of process `pid`, from `/proc/<pid>/status`.
fn umask_of(pid: i64) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("an Umask line");
    i64::from_str_radix(line.trim(), 8).expect("an octal umask")
}

#[test]
fn random_harmless_and_invalid_requests_get_the_right_answers() {
    let seed = seed();
    let _report = SeedReport(seed);
    eprintln!("server fuzz seed {seed}");
    let mut rng = Rng::new(seed);

    let mut server = ServerProcess::start(&[]);
    let server_pid = i64::from(server.child.id());
    // SAFETY: these calls only return ids.
    let facts = unsafe {
        Facts {
            server_pid,
            parent_pid: i64::from(std::process::id()),
            uid: i64::from(libc::getuid()),
            euid: i64::from(libc::geteuid()),
            gid: i64::from(libc::getgid()),
            egid: i64::from(libc::getegid()),
            pgrp: i64::from(libc::getpgrp()),
            sid: i64::from(libc::getsid(0)),
        }
    };
    let mut umask = umask_of(server_pid);
    server
        .sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("SO_RCVTIMEO");

    let mut done = 0;
    let mut batches = 0;
    while done < REQUESTS {
        let n = (1 + rng.below(MAX_BATCH as u64) as usize).min(REQUESTS - done);
        let mut bytes = Vec::with_capacity(n * Request::SIZE);
        let mut want = Vec::with_capacity(n);
        for _ in 0..n {
            let (req, answer, what) = pick(&mut rng, &facts, &mut umask);
            bytes.extend_from_slice(&req.to_bytes());
            want.push((answer, what, req));
        }
        // The batch goes out in random pieces, cut anywhere (inside requests too).
        let mut at = 0;
        while at < bytes.len() {
            let piece = (1 + rng.below(4 * Request::SIZE as u64) as usize).min(bytes.len() - at);
            server
                .sock
                .write_all(&bytes[at..at + piece])
                .unwrap_or_else(|e| panic!("request {}: writing: {e}", done));
            at += piece;
        }
        let mut responses = vec![0u8; n * RESPONSE_SIZE];
        server.sock.read_exact(&mut responses).unwrap_or_else(|e| {
            panic!(
                "batch {batches} (requests {done}..{}): no full answer from the server: {e}",
                done + n
            )
        });
        for (i, (chunk, (answer, what, req))) in
            responses.chunks_exact(RESPONSE_SIZE).zip(&want).enumerate()
        {
            let got = i64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            assert_eq!(
                got,
                *answer,
                "request {} ({what}, {req:?}): wrong answer",
                done + i
            );
        }
        done += n;
        batches += 1;
    }

    // Still serving, and clean at EOF.
    assert_eq!(server.call(libc::SYS_getpid, [0; 6]), server_pid);
    server
        .sock
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let (status, stderr) = server.wait();
    assert_eq!(status.code(), Some(0), "server exit; stderr: {stderr}");
    assert!(stderr.is_empty(), "server stderr: {stderr}");
    eprintln!("{REQUESTS} requests in {batches} batches");
}
