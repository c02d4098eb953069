//! A server that lies or dies: the client gets errors, never a panic or a hang.
//!
//! The test plays the server itself, on a thread at the other end of a socketpair: it reads
//! the client's 56-byte requests and answers as each test scripts it (values no syscall
//! returns, responses cut short, bytes nobody asked for, wrong lengths for in-band memory
//! transfers, EOF anywhere). Unscripted requests get honest-looking answers: `mmap` a fresh
//! address, in-band transfers move bytes to and from a pretend memory, other calls 0.
//!
//! `SyscallConnection` is driven directly, and so is a [`Task`] over it (with an address
//! space and fd table of its own, which are the pretend server's). The companion tests in
//! `crates/thread/tests/syscall_connection.rs` cover a real server that dies or shuts down.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rsyscall::far;
use rsyscall::handle::{FdTableState, Memory};
use rsyscall::near::{self, Address, Request, SyscallError, SyscallInterface};
use rsyscall::thread::SyscallConnection;
use rsyscall::{Errno, FileDescriptor, O, RLIMIT, Task};
use rsyscall_server::proto::RESPONSE_SIZE;
use rsyscall_tests::rng::{Rng, SEED_ENV, seed};
use rsyscall_tests::tasks::{join_all, run};

/// The number the pretend server's socket has in its pretend fd table.
const SERVER_FD: i64 = 100;
/// How long the pretend server waits for a request before giving up.
const IDLE: Duration = Duration::from_secs(30);
/// The pid the pretend server claims.
const FAKE_PID: i64 = 4242;
/// The largest in-band transfer the pretend server serves; it hangs up on larger ones.
const MAX_TRANSFER: i64 = 1 << 20;
/// The largest mapping the pretend server makes; larger ones fail with `ENOMEM`.
const MAX_MAPPING: i64 = 1 << 30;

/// What the pretend server does with one request.
#[derive(Debug, Clone)]
enum Answer {
    /// The honest-looking default (see the module doc).
    Honest,
    /// This response.
    Value(i64),
    /// These bytes instead of a response (several responses, or garbage of a multiple of
    /// 8 bytes: never fewer bytes than a response, which would leave the client waiting).
    Bytes(Vec<u8>),
    /// These bytes, then EOF (a short response, garbage, a cut in-band transfer).
    BytesThenClose(Vec<u8>),
    /// Closes the connection without answering.
    Close,
}

/// The pretend server's state for the honest answers.
struct Pretend {
    memory: HashMap<u64, u8>,
    next_map: u64,
}

impl Pretend {
    fn new() -> Pretend {
        Pretend {
            memory: HashMap::new(),
            next_map: 0x1000_0000,
        }
    }

    /// The honest answer to `req`, reading or writing in-band data on `sock`. `false` if
    /// the connection is gone.
    fn answer(&mut self, req: &Request, sock: &mut UnixStream) -> bool {
        let [a0, a1, a2, ..] = req.args;
        let is_ours = a0 == SERVER_FD;
        if in_band(req) && !(0..=MAX_TRANSFER).contains(&a2) {
            // More than a pretend memory holds: the pretend server gives up.
            return false;
        }
        if req.number == libc::SYS_recvfrom && is_ours {
            // An in-band write: the data follows the request.
            let mut data = vec![0u8; a2 as usize];
            if sock.read_exact(&mut data).is_err() {
                return false;
            }
            for (i, b) in data.iter().enumerate() {
                self.memory.insert(a1 as u64 + i as u64, *b);
            }
            return respond(sock, a2);
        }
        if req.number == libc::SYS_sendto && is_ours {
            // An in-band read: the data precedes the response.
            let data: Vec<u8> = (0..a2 as u64)
                .map(|i| self.memory.get(&(a1 as u64 + i)).copied().unwrap_or(0))
                .collect();
            if sock.write_all(&data).is_err() {
                return false;
            }
            return respond(sock, a2);
        }
        let value = match req.number {
            libc::SYS_mmap if (0..=MAX_MAPPING).contains(&a1) => {
                let addr = self.next_map;
                self.next_map += (a1 as u64).div_ceil(4096) * 4096 + 4096;
                addr as i64
            }
            libc::SYS_mmap => -(libc::ENOMEM as i64),
            libc::SYS_getpid | libc::SYS_gettid => FAKE_PID,
            _ => 0,
        };
        respond(sock, value)
    }
}

fn respond(sock: &mut UnixStream, value: i64) -> bool {
    sock.write_all(&value.to_le_bytes()).is_ok()
}

/// The script of a pretend server: the answer to the `n`th request (from 0).
type Script = Box<dyn FnMut(usize, &Request) -> Answer + Send>;

/// Runs a pretend server on `sock` until EOF, an error, or a scripted close; returns the
/// requests it got.
fn pretend_server(mut sock: UnixStream, mut script: Script) -> Vec<Request> {
    sock.set_read_timeout(Some(IDLE)).expect("SO_RCVTIMEO");
    let mut pretend = Pretend::new();
    let mut seen = Vec::new();
    loop {
        let mut buf = [0u8; Request::SIZE];
        if sock.read_exact(&mut buf).is_err() {
            return seen;
        }
        let req = Request::from_bytes(&buf);
        let answer = script(seen.len(), &req);
        seen.push(req);
        let alive = match answer {
            Answer::Honest => pretend.answer(&req, &mut sock),
            Answer::Value(v) => respond(&mut sock, v),
            Answer::Bytes(b) => sock.write_all(&b).is_ok(),
            Answer::BytesThenClose(b) => {
                let _ = sock.write_all(&b);
                false
            }
            Answer::Close => false,
        };
        if !alive {
            return seen;
        }
    }
}

/// A connection to a pretend server following `script`.
struct Fake {
    conn: Arc<SyscallConnection>,
    server: Option<JoinHandle<Vec<Request>>>,
}

impl Fake {
    fn new(script: impl FnMut(usize, &Request) -> Answer + Send + 'static) -> Fake {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let server = std::thread::spawn(move || pretend_server(theirs, Box::new(script)));
        let conn = SyscallConnection::new(
            OwnedFd::from(ours),
            near::FileDescriptor::new(SERVER_FD as i32),
        )
        .expect("a connection");
        Fake {
            conn: Arc::new(conn),
            server: Some(server),
        }
    }

    /// A task over the connection, with an address space and fd table of its own.
    fn task(&self) -> Task {
        let pid = near::Pid::new(FAKE_PID as i32);
        let ns = far::Namespaces {
            fd_table: far::FdTable::new(pid),
            address_space: far::AddressSpace::new(pid),
            pidns: far::PidNamespace::new(pid),
            mountns: far::MountNamespace::new(pid),
            netns: far::NetNamespace::new(pid),
        };
        let sysif: Arc<dyn SyscallInterface> = self.conn.clone();
        // SAFETY: the contracts ask for an interface that answers what the kernel would;
        // this one lies on purpose, and the lies can reach only the pretend process. Its
        // namespaces are fresh identities (not this process's fd table or address space),
        // the interface is not local, and the allocator serves only that pretend address
        // space, so no memory or fd of this process is ever handed to it or trusted to it.
        unsafe {
            let memory = Memory::new(ns.address_space, self.conn.clone(), sysif.clone());
            Task::new(sysif, pid, ns, FdTableState::new(ns.fd_table), memory, None)
        }
    }

    /// Drops the connection and returns the requests the server got.
    fn finish(mut self) -> Vec<Request> {
        let server = self.server.take().expect("a server thread");
        drop(self);
        server.join().expect("the pretend server panicked")
    }
}

/// `getpid` through the connection.
fn getpid(conn: &SyscallConnection) -> near::SyscallFuture<'_> {
    // SAFETY: getpid touches no memory and no fds.
    unsafe { conn.syscall(Request::new(libc::SYS_getpid, [0; 6])) }
}

/// The 8 bytes of a response.
fn response(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Whether `req` is an in-band memory transfer on the server's socket.
fn in_band(req: &Request) -> bool {
    (req.number == libc::SYS_recvfrom || req.number == libc::SYS_sendto) && req.args[0] == SERVER_FD
}

const HANGUP: Result<i64, SyscallError> = Err(SyscallError::Hangup);

#[test]
fn short_response_then_eof_is_a_hangup() {
    for cut in 1..RESPONSE_SIZE {
        let fake = Fake::new(move |_, _| Answer::BytesThenClose(vec![0x55; cut]));
        let conn = &*fake.conn;
        // Behind it, a request the server never reads.
        let both = run(futures_lite::future::zip(getpid(conn), getpid(conn)));
        assert_eq!(both, (HANGUP, HANGUP), "response cut after {cut} bytes");
        assert!(conn.is_hung_up());
        assert_eq!(run(getpid(conn)), HANGUP);
        assert_eq!(fake.finish().len(), 1, "the server read one request");
    }
}

#[test]
fn eof_midway_through_a_pipelined_batch() {
    let fake = Fake::new(|n, _| if n < 4 { Answer::Honest } else { Answer::Close });
    let results = run(join_all((0..10).map(|_| getpid(&fake.conn)).collect()));
    let mut want = vec![Ok(FAKE_PID); 4];
    want.extend([HANGUP; 6]);
    assert_eq!(results, want);
    assert!(fake.conn.is_hung_up());
    fake.finish();
}

#[test]
fn bytes_no_request_expects_hang_up_the_connection() {
    // Two responses to one request, in one write, so they arrive together.
    let fake = Fake::new(|n, _| {
        if n == 0 {
            Answer::Bytes([response(7), response(8)].concat())
        } else {
            Answer::Honest
        }
    });
    assert_eq!(run(getpid(&fake.conn)), Ok(7));
    assert_eq!(run(getpid(&fake.conn)), HANGUP, "the stream is out of sync");
    assert!(fake.conn.is_hung_up());
    fake.finish();
}

#[test]
fn values_no_syscall_returns_are_decoded_without_panicking() {
    let values = [
        i64::MIN,
        i64::MIN + 1,
        -1_000_000,
        -4097,
        -4096,
        -4095,
        -1,
        0,
        1 << 31,
        1 << 32,
        1 << 40,
        i64::MAX,
    ];
    for v in values {
        let fake = Fake::new(move |_, _| Answer::Value(v));
        let want = Errno::from_ret(v).map_err(SyscallError::Errno);
        assert_eq!(run(getpid(&fake.conn)), want, "response {v}");
        let task = fake.task();
        let pid = run(task.getpid());
        match Errno::from_ret(v) {
            Err(e) => assert_eq!(pid.expect_err("an errno").errno(), Some(e), "{v}"),
            // A pid is a non-negative int: anything else is an impossible answer, reported
            // as such rather than truncated into some other pid.
            Ok(_) if (0..=i64::from(i32::MAX)).contains(&v) => {
                let pid = pid.unwrap_or_else(|e| panic!("response {v}: {e}"));
                assert_eq!(i64::from(pid.as_raw()), v, "response {v}");
            }
            Ok(_) => match pid {
                Err(rsyscall_handle::Error::Syscall {
                    source: SyscallError::OutOfRange(got),
                    ..
                }) => assert_eq!(got, v),
                other => panic!("response {v}: expected OutOfRange, got {other:?}"),
            },
        }
        drop(task);
        fake.finish();
    }
}

#[test]
fn arena_addresses_no_kernel_returns_are_refused() {
    // Near the top of the address space (the end overflows), unaligned, null, and beyond
    // every user address: each would make the allocator's arithmetic overflow or hand out
    // memory that is not there.
    for lie in [-4096i64, 0x1000_0001, 0, 1 << 60] {
        let fake = Fake::new(move |_, req| {
            if req.number == libc::SYS_mmap {
                Answer::Value(lie)
            } else {
                Answer::Honest
            }
        });
        let task = fake.task();
        match run(task.malloc_bytes(5000)) {
            Err(rsyscall_handle::Error::OutOfMemory { .. }) => {}
            other => panic!("mmap answering {lie:#x}: expected OutOfMemory, got {other:?}"),
        }
        drop(task);
        fake.finish();
    }
}

#[test]
fn in_band_reads_that_lie_are_hangups() {
    let len = 100usize;
    let lies: Vec<(&str, Answer)> = vec![
        (
            "half the bytes, then EOF",
            Answer::BytesThenClose(vec![1; len / 2]),
        ),
        (
            "no bytes, an error, then EOF",
            Answer::BytesThenClose(response(-14)),
        ),
        (
            "all the bytes, the wrong length",
            Answer::Bytes([vec![1; len], response(len as i64 - 1)].concat()),
        ),
        (
            "all the bytes, an error",
            Answer::Bytes([vec![1; len], response(-14)].concat()),
        ),
    ];
    for (what, lie) in lies {
        let fake = Fake::new(move |_, req| {
            if in_band(req) {
                lie.clone()
            } else {
                Answer::Honest
            }
        });
        // SAFETY: the address is in the pretend server's address space, not ours.
        let r = run(unsafe { fake.conn.read_memory(Address::new(0x1000_0000), len) });
        assert_eq!(r, Err(SyscallError::Hangup), "{what}");
        assert!(fake.conn.is_hung_up(), "{what}");
        assert_eq!(run(getpid(&fake.conn)), HANGUP, "{what}");
        fake.finish();
    }
}

#[test]
fn in_band_writes_that_lie_are_hangups() {
    let data = vec![0u8; 4 * Request::SIZE];
    for lie in [data.len() as i64 - 1, data.len() as i64 + 1, 0, -14] {
        // The server answers without reading the data, and then reads it as requests
        // (all zeros: read(0, NULL, 0)), which it answers honestly.
        let fake = Fake::new(move |n, req| {
            if n == 0 && in_band(req) {
                Answer::Value(lie)
            } else {
                Answer::Honest
            }
        });
        // SAFETY: the address is in the pretend server's address space, not ours.
        let r = run(unsafe { fake.conn.write_memory(Address::new(0x1000_0000), &data) });
        assert_eq!(r, Err(SyscallError::Hangup), "response {lie}");
        assert!(fake.conn.is_hung_up(), "response {lie}");
        fake.finish();
    }
}

/// A value a lying server might answer: a random one, or one near a boundary.
fn lie(rng: &mut Rng) -> i64 {
    const EDGES: [i64; 12] = [
        i64::MIN,
        -4096,
        -4095,
        -14,
        -1,
        0,
        1,
        4096,
        1 << 31,
        1 << 40,
        i64::MAX - 4095,
        i64::MAX,
    ];
    if rng.below(2) == 0 {
        EDGES[rng.below(EDGES.len() as u64) as usize]
    } else {
        rng.next_u64() as i64
    }
}

/// Whether `mmap` gets lies too: the allocator refuses arena addresses no kernel returns.
const MMAP_LIES: bool = true;

/// Requests after which a lying server always closes: every call ends.
const MAX_REQUESTS: usize = 40;

/// A script that answers at random: mostly honestly, else a random value, garbage, extra
/// responses, or EOF. Answers that send fewer bytes than the client waits for are followed
/// by EOF, so that the client is never left waiting on a server that waits too.
fn random_script(seed: u64) -> impl FnMut(usize, &Request) -> Answer + Send + 'static {
    let mut rng = Rng::new(seed);
    move |n, req| {
        if n >= MAX_REQUESTS {
            return Answer::Close;
        }
        let roll = rng.below(100);
        if req.number == libc::SYS_mmap && !MMAP_LIES {
            return Answer::Honest;
        }
        if in_band(req) {
            return match roll {
                0..70 => Answer::Honest,
                70..90 => {
                    let len = rng.below(req.args[2].clamp(0, 1 << 16) as u64 + 16) as usize;
                    Answer::BytesThenClose(rng.bytes(len))
                }
                _ => Answer::Close,
            };
        }
        match roll {
            0..55 => Answer::Honest,
            55..80 => Answer::Value(lie(&mut rng)),
            80..88 => {
                let responses = 2 + rng.below(3) as usize;
                Answer::Bytes(rng.bytes(responses * RESPONSE_SIZE))
            }
            88..95 => {
                let len = rng.below(3 * RESPONSE_SIZE as u64) as usize;
                Answer::BytesThenClose(rng.bytes(len))
            }
            _ => Answer::Close,
        }
    }
}

/// The task calls tried against lying servers, by name. Each is an ordinary use of a task;
/// the fd is fd 5 of the pretend table.
const OPS: &[&str] = &[
    "getpid",
    "getppid",
    "getuid",
    "pipe",
    "read",
    "write",
    "fstat",
    "getdents",
    "getcwd",
    "getgroups",
    "getrlimit",
    "sched_getaffinity",
    "open",
    "malloc",
];

/// Runs task call `op` on `task`, whose fd table holds `fd`; returns whether it succeeded.
async fn task_call(op: &str, task: &Task, fd: &FileDescriptor) -> bool {
    match op {
        "getpid" => task.getpid().await.is_ok(),
        "getppid" => task.getppid().await.is_ok(),
        "getuid" => task.getuid().await.is_ok(),
        "pipe" => task.pipe().await.is_ok(),
        "read" => match task.read_bytes(fd, 100).await {
            Ok(data) => {
                assert!(data.len() <= 100, "read gave {} bytes for 100", data.len());
                true
            }
            Err(_) => false,
        },
        "write" => match task.write_bytes(fd, b"some bytes").await {
            Ok(n) => {
                assert!(n <= 10, "write reports {n} bytes written of 10");
                true
            }
            Err(_) => false,
        },
        "fstat" => fd.fstat().await.is_ok(),
        "getdents" => fd.getdents().await.is_ok(),
        "getcwd" => task.getcwd().await.is_ok(),
        "getgroups" => task.getgroups().await.is_ok(),
        "getrlimit" => task.getrlimit(RLIMIT::NOFILE).await.is_ok(),
        "sched_getaffinity" => task.sched_getaffinity(near::Pid::new(0)).await.is_ok(),
        "open" => task.open("/etc/passwd", O::RDONLY, 0).await.is_ok(),
        "malloc" => task.malloc_bytes(5000).await.is_ok(),
        other => panic!("no task call {other}"),
    }
}

/// How long one call against a lying server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn task_calls_against_random_lies_end_in_errors_not_panics_or_hangs() {
    const ROUNDS: usize = 40;
    let seed = seed();
    eprintln!("lying server seed {seed}");
    let mut rng = Rng::new(seed);
    let mut failures = Vec::new();
    let (mut oks, mut errs) = (0, 0);
    for round in 0..ROUNDS {
        for op in OPS {
            let script_seed = rng.next_u64();
            let fake = Fake::new(random_script(script_seed));
            let task = fake.task();
            // SAFETY: fd 5 of the pretend table is ours alone: nothing else names it.
            let fd = unsafe { FileDescriptor::from_raw(&task, near::FileDescriptor::new(5)) };
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                async_io::block_on(futures_lite::future::or(
                    async { Some(task_call(op, &task, &fd).await) },
                    async {
                        async_io::Timer::after(CALL_TIMEOUT).await;
                        None
                    },
                ))
            }));
            let what = format!("round {round}, {op}, script seed {script_seed}");
            match outcome {
                Ok(Some(true)) => oks += 1,
                Ok(Some(false)) => errs += 1,
                Ok(None) => failures.push(format!("{what}: hung for {CALL_TIMEOUT:?}")),
                Err(_) => failures.push(format!("{what}: panicked (message above)")),
            }
            drop(fd);
            drop(task);
            let requests = fake.finish();
            assert!(
                requests.len() <= MAX_REQUESTS + 1,
                "{what}: {} requests",
                requests.len()
            );
        }
    }
    eprintln!("{oks} calls succeeded, {errs} failed with an error");
    assert!(
        failures.is_empty(),
        "seed {seed} (rerun with {SEED_ENV}={seed}):\n{}",
        failures.join("\n")
    );
}
