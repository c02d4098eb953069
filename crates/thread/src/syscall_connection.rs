//! [`SyscallConnection`]: the pipelined client of the rsyscall wire protocol (PROTOCOL.md
//! sections 1 and 5), which runs syscalls in another process through its syscall server.
//!
//! # How it works
//!
//! Requests from any number of tasks are appended to one write buffer under a
//! [`std::sync::Mutex`] (never held across an `.await`) and answered in FIFO order: each
//! request gets a slot in a queue, and the n-th response on the stream belongs to the n-th
//! slot still expecting one.
//!
//! Exactly one request future at a time is the *driver*: it flushes the write buffer,
//! reads every response available, fills the slots of the other requests and wakes them,
//! and is the only one that registers the socket with async-io (whose
//! `poll_readable`/`poll_writable` keep a single waker per direction). The first request
//! polled while there is no driver becomes the driver; when the driver completes or is
//! dropped it wakes the oldest request still waiting, which takes over on its next poll.
//! Other requests flush the buffer themselves when they find it empty (so a lone request
//! costs one `send`), and wake the driver when they leave bytes unsent.
//!
//! A `Cork` (`SyscallConnection::cork`, crate-private) holds sends back while requests
//! made together are enqueued (exec's signal resets and `execve`), so that they go out in
//! one `send` and wake the server once. A driver checks the socket on its own core for a
//! short while before it sleeps ([`set_spin_wait`]).
//!
//! Reading and writing interleave: the driver keeps reading responses while a large
//! in-band memory write is only partly flushed, because the server may itself be blocked
//! writing a response.
//!
//! # Invariants
//! - Responses are matched to requests strictly in the order their bytes were written.
//! - A request none of whose bytes were written when its future is dropped is removed
//!   from the buffer and never runs; a request already (partly) written stays in the queue,
//!   its remaining bytes are still sent and its response (and raw data) is read and
//!   discarded.
//! - Memory lent to a dropped request ([`SyscallInterface::keep_until_answered`]) is
//!   attached to the last request still expecting a response when it is handed over, and
//!   dropped (outside the locks) once that request is answered: responses come in order,
//!   so every earlier request is over then. A cancelled request passes what it kept to the
//!   last earlier one. Once the connection is lost (or dropped), or the answer that was to
//!   free it comes out of sync, what is still kept is leaked.
//! - A request sent through [`SyscallInterface::syscall_new_fd`] whose future is dropped
//!   without taking its result gets its fd closed: a `close` request nobody waits for is
//!   queued when the result is read (or when the future is dropped, if it was read
//!   already) and sent at once.
//! - A request sent through [`SyscallInterface::syscall_recorded`] has its result recorded
//!   as soon as it is read, whether or not its future is still there: before any memory
//!   kept until then is freed.
//! - Writes use `send(MSG_NOSIGNAL)`: a vanished server never raises `SIGPIPE` here.
//! - Once the connection is lost every pending request fails with
//!   [`SyscallError::Hangup`] after the responses already received are delivered; no
//!   request waits forever for a response that cannot come.
//! - A request future that has been polled and not dropped must keep being polled when
//!   woken (the usual contract of futures): while it is the driver, the other requests on
//!   the connection depend on it.
//!
//! # Safety
//! The unsafe code here is one `send(2)` of a slice we hold, and the unsafe methods of the
//! interface (`syscall`, the in-band `write_memory` and `read_memory`), which only send
//! requests: the duty of making those requests sound is their callers', as their
//! `# Safety` sections say.
#![allow(unsafe_code)]

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Async;
use rsyscall_near::{
    Address, Errno, FileDescriptor, NotSent, Request, ResultCell, SyscallError, SyscallFuture,
    SyscallInterface, SyscallResult, ThreadLabel, trace,
};
use rsyscall_server::proto::RESPONSE_SIZE;

/// Size of the buffer the driver first reads the stream into: enough for hundreds of
/// responses, and cheap for a connection that only ever sees a few (a child about to exec).
const READ_START: usize = 4 * 1024;
/// Size the buffer grows to once a read fills it (large in-band memory reads).
const READ_CHUNK: usize = 64 * 1024;
/// Capacity the write buffer keeps after a large transfer has been flushed.
const KEEP_WRITE_CAPACITY: usize = 64 * 1024;

/// How long a driver waits for a response on its own core before it sleeps, in
/// nanoseconds; `u64::MAX` until first read (then the default, see [`set_spin_wait`]).
static SPIN_NS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The default of [`set_spin_wait`]: about two cross-core wakeups on the machines we measured.
const DEFAULT_SPIN: Duration = Duration::from_micros(40);

/// Sets how long a request waiting for its response checks the socket on its own core
/// (a non-blocking `recv` with `MSG_PEEK`, again and again) before it sleeps until the
/// reactor reports the socket readable. A response that arrives within that time is
/// taken without any thread being woken here: a syscall in a clone child then costs one
/// wakeup (the child's) instead of three (the child's, the reactor thread's and this
/// thread's). The time is spent once per wait, so a request that takes longer pays it
/// on top. `Duration::ZERO` turns it off.
///
/// A driver spins only when no other connection of the process has a request waiting
/// asleep (so many children driven at once never spin), never for a syscall that waits
/// for something else or ends the server (`execve`, `exit`, `wait4`, `epoll_wait`,
/// `poll`, `nanosleep`, `futex`, `accept`...), and never in a request's first poll, after
/// which the request wakes itself: the other requests of its task are then sent before
/// it spins.
///
/// Only connections to clone children made on this host spin: a bootstrapped thread, a
/// persistent one or one on another host sleeps at once.
///
/// The default is 40 µs on a machine with more than one CPU, and zero on one CPU (where
/// the loop would only delay the server it waits for), unless the environment variable
/// `RSYSCALL_SPIN_WAIT_US` gives it in microseconds when it is first needed. It applies
/// to every connection of the process that spins.
pub fn set_spin_wait(wait: Duration) {
    SPIN_NS.store(
        u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX - 1),
        Ordering::Relaxed,
    );
}

/// The current spin wait (see [`set_spin_wait`]).
pub fn spin_wait() -> Duration {
    let ns = SPIN_NS.load(Ordering::Relaxed);
    if ns != u64::MAX {
        return Duration::from_nanos(ns);
    }
    let from_env = std::env::var("RSYSCALL_SPIN_WAIT_US")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_micros);
    let default = match (from_env, std::thread::available_parallelism()) {
        (Some(d), _) => d,
        (None, Ok(n)) if n.get() > 1 => DEFAULT_SPIN,
        (None, _) => Duration::ZERO,
    };
    set_spin_wait(default);
    default
}

/// Whether `request` usually answers within a spin wait: not a syscall that waits for
/// something else (a child, an event, a signal, a peer, time) or that ends the server
/// (exec, exit). Spinning for those would only take a CPU from what they wait for.
fn answers_soon(request: &Request) -> bool {
    !matches!(
        request.number,
        libc::SYS_execve
            | libc::SYS_execveat
            | libc::SYS_exit
            | libc::SYS_exit_group
            | libc::SYS_wait4
            | libc::SYS_waitid
            | libc::SYS_epoll_wait
            | libc::SYS_epoll_pwait
            | libc::SYS_epoll_pwait2
            | libc::SYS_poll
            | libc::SYS_ppoll
            | libc::SYS_select
            | libc::SYS_pselect6
            | libc::SYS_nanosleep
            | libc::SYS_clock_nanosleep
            | libc::SYS_pause
            | libc::SYS_futex
            | libc::SYS_accept
            | libc::SYS_accept4
            | libc::SYS_rt_sigsuspend
            | libc::SYS_rt_sigtimedwait
    )
}

/// Whether `fd` has data or end of file to read: a non-blocking `recv` of one byte with
/// `MSG_PEEK`. Errors count as readable (the read reports them).
fn peek_readable(fd: BorrowedFd<'_>) -> bool {
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into `byte`, which outlives the call; `fd` is an open
    // descriptor borrowed for that duration.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
}

/// A pipelined connection to a syscall server (PROTOCOL.md), usable from many tasks and
/// threads at once.
///
/// Owns the local ("access") end of the syscall socket; dropping the connection closes it,
/// which the server sees as EOF. Requests are sent in the order their futures are first
/// polled; nothing is sent before that.
pub struct SyscallConnection {
    /// Our end of the socket, non-blocking and registered with async-io.
    io: Async<UnixStream>,
    /// The server's end, as numbered in the server's fd table.
    server_fd: FileDescriptor,
    /// Write buffer, request slots and connection status.
    state: Mutex<State>,
    /// Read-side resources, used by the driver only. Lock order: `reader`, then `state`.
    reader: Mutex<Reader>,
    /// The thread this connection reaches, as named in logs (set by the thread layer
    /// once it knows the thread's kind and pid). Read only when a record is logged.
    label: Mutex<ThreadLabel>,
    /// Whether a driver of this connection is asleep, waiting for the reactor (counted in
    /// [`SLEEPING`]).
    asleep: AtomicBool,
    /// Whether its drivers may spin ([`SyscallConnection::spin_for_answers`]).
    spins: AtomicBool,
}

/// Connections whose driver is asleep: while any is, a driver does not spin (see
/// [`set_spin_wait`]), since other work is then in flight and may need this core.
static SLEEPING: AtomicUsize = AtomicUsize::new(0);

/// What says that a server is gone (its futex helper exited): a local fd that becomes
/// readable, or, where the helper's pidfd cannot reach the local table, an event on a
/// remote thread's root epoller.
pub(crate) enum HangupWatch {
    /// A local fd (a pidfd) whose readability is the event.
    Fd(OwnedFd),
    /// A future that completes with the event.
    Event(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// Resources of the reading side.
#[derive(Default)]
struct Reader {
    /// Receive buffer, allocated on first use.
    buf: Vec<u8>,
    /// Fds whose readability means the server is gone.
    hangup_fds: Vec<Async<OwnedFd>>,
    /// Events, watched on the reaper thread, whose firing means the server is gone.
    hangup_events: Vec<HangupEvent>,
}

/// The connection's side of a [`HangupWatch::Event`] watched on the reaper thread
/// ([`crate::reaper`]): whether it fired, and the waker to call when it does. Dropping it
/// (with the connection, or once the connection is lost) stops the watch.
///
/// The event future drives requests on another connection (the remote parent's, for its
/// root epoller); polled by this connection's driver only, it would stop being polled
/// whenever this connection has no request pending or has ended, and so break that
/// connection's rule that a polled request keeps being polled: a request there would wait
/// for a driver nobody polls. On the reaper thread it is polled until it completes or is
/// cancelled.
struct HangupEvent(Arc<Mutex<EventState>>);

#[derive(Default)]
struct EventState {
    fired: bool,
    cancelled: bool,
    /// The connection's driver, woken when the event fires.
    driver: Option<Waker>,
    /// The reaper job, woken when the watch is cancelled.
    job: Option<Waker>,
}

impl HangupEvent {
    /// Starts watching `event` on the reaper thread.
    fn start(event: Pin<Box<dyn Future<Output = ()> + Send>>) -> HangupEvent {
        let shared = Arc::new(Mutex::new(EventState::default()));
        let job_state = Arc::clone(&shared);
        crate::reaper::spawn(async move {
            let cancelled = std::future::poll_fn(|cx| {
                let mut st = lock(&job_state);
                if st.cancelled {
                    return Poll::Ready(false);
                }
                st.job = Some(cx.waker().clone());
                Poll::Pending
            });
            let fired = futures_lite::future::or(
                async {
                    event.await;
                    true
                },
                cancelled,
            )
            .await;
            if fired {
                let waker = {
                    let mut st = lock(&job_state);
                    st.fired = true;
                    st.driver.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            }
        });
        HangupEvent(shared)
    }

    /// Whether the event fired; if not, `cx` is woken when it does.
    fn poll_fired(&self, cx: &Context<'_>) -> bool {
        let mut st = lock(&self.0);
        if st.fired {
            return true;
        }
        st.driver = Some(cx.waker().clone());
        false
    }
}

impl Drop for HangupEvent {
    fn drop(&mut self) {
        let waker = {
            let mut st = lock(&self.0);
            st.cancelled = true;
            st.job.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// What became of one request.
enum SlotState {
    /// Awaiting its response; the future's waker once it has been polled.
    Waiting(Option<Waker>),
    /// Awaiting its response, but its future was dropped: the response is discarded.
    Abandoned,
    /// Never sent and its future was dropped: no response will come.
    Cancelled,
    /// Finished, result not yet taken by the future.
    Done(SyscallResult),
    /// Finished and taken (or abandoned and answered).
    Gone,
}

/// One request in the FIFO.
struct Slot {
    /// Stream offset of the request's first byte.
    start: u64,
    /// Stream offset just after the request's last byte (request plus in-band data).
    end: u64,
    /// Raw bytes that precede the response on the stream (in-band memory read).
    raw_len: usize,
    /// Raw bytes received so far.
    raw_got: usize,
    /// The only acceptable response, for in-band memory transfers (their length): anything
    /// else means the stream is out of sync.
    expect: Option<i64>,
    /// The raw bytes, kept while the future lives.
    data: Vec<u8>,
    /// Progress.
    state: SlotState,
    /// Its result is a new fd, to be closed if its future was dropped
    /// ([`SyscallInterface::syscall_new_fd`]).
    new_fd: bool,
    /// Where its result is recorded on arrival ([`SyscallInterface::syscall_recorded`]).
    record: Option<ResultCell>,
    /// Memory lent to this or earlier requests whose futures were dropped
    /// ([`SyscallInterface::keep_until_answered`]): dropped once this request is answered.
    keeps: Vec<Keep>,
}

/// Something kept until a request is answered.
type Keep = Box<dyn Any + Send>;

impl Slot {
    /// Whether the next response bytes may belong to this slot.
    fn expects_response(&self) -> bool {
        matches!(self.state, SlotState::Waiting(_) | SlotState::Abandoned)
    }
}

/// Shared state, under `SyscallConnection::state`.
struct State {
    /// Outgoing bytes; `wbuf[head..]` is not sent yet.
    wbuf: Vec<u8>,
    /// Start of the unsent part of `wbuf`.
    head: usize,
    /// Bytes sent on the stream since the start.
    sent: u64,
    /// Bytes appended to the stream since the start (sent or buffered).
    appended: u64,
    /// Requests in stream order; `slots[i]` has id `base + i`.
    slots: VecDeque<Slot>,
    /// Id of `slots[0]`.
    base: u64,
    /// No slot before this id expects a response.
    resp_id: u64,
    /// Partial response being received.
    resp_buf: [u8; RESPONSE_SIZE],
    /// Bytes of `resp_buf` filled.
    resp_have: usize,
    /// Id of the request whose future drives the connection.
    driver: Option<u64>,
    /// `shutdown()` was called: new requests fail with `NotSent(Closed)`.
    closed_by_us: bool,
    /// Nothing more can be sent (shut down, or the peer is gone).
    write_dead: bool,
    /// The read side saw EOF or an error: every pending request has failed.
    hung_up: bool,
    /// Keeps whose requests are over, to drop once the lock is released.
    released: Vec<Keep>,
    /// Live [`Cork`]s: while any is, nothing is sent.
    corks: usize,
}

impl State {
    fn new() -> Self {
        State {
            wbuf: Vec::new(),
            head: 0,
            sent: 0,
            appended: 0,
            slots: VecDeque::new(),
            base: 0,
            resp_id: 0,
            resp_buf: [0; RESPONSE_SIZE],
            resp_have: 0,
            driver: None,
            corks: 0,
            closed_by_us: false,
            write_dead: false,
            hung_up: false,
            released: Vec::new(),
        }
    }

    /// Index in `slots` of request `id`.
    fn index(&self, id: u64) -> Option<usize> {
        let i = usize::try_from(id.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Whether bytes are waiting to be sent.
    fn has_unsent(&self) -> bool {
        self.head < self.wbuf.len()
    }

    /// Appends a request (and its in-band data) to the stream; returns its id.
    fn enqueue(
        &mut self,
        request: &Request,
        data: &[u8],
        raw_len: usize,
        buf: Vec<u8>,
        waker: Option<&Waker>,
    ) -> Result<u64, SyscallError> {
        if self.closed_by_us {
            return Err(SyscallError::NotSent(NotSent::Closed));
        }
        if self.write_dead || self.hung_up {
            return Err(SyscallError::Hangup);
        }
        if self.head == self.wbuf.len() {
            self.wbuf.clear();
            self.head = 0;
        } else if self.head > 0 && self.head >= self.wbuf.len() / 2 {
            self.wbuf.drain(..self.head);
            self.head = 0;
        }
        let start = self.appended;
        self.wbuf.extend_from_slice(&request.to_bytes());
        self.wbuf.extend_from_slice(data);
        self.appended += (Request::SIZE + data.len()) as u64;
        let id = self.base + self.slots.len() as u64;
        let expect = match (raw_len, data.len()) {
            (0, 0) => None,
            (0, n) | (n, _) => Some(n as i64),
        };
        self.slots.push_back(Slot {
            start,
            end: self.appended,
            raw_len,
            raw_got: 0,
            expect,
            data: buf,
            // Without a waker, nobody waits for it: its response is read and discarded.
            state: match waker {
                Some(w) => SlotState::Waiting(Some(w.clone())),
                None => SlotState::Abandoned,
            },
            new_fd: false,
            record: None,
            keeps: Vec::new(),
        });
        Ok(id)
    }

    /// Queues `close(fd)` for a new fd whose request's future was dropped: nobody else
    /// knows its number. Nothing can be sent any more once the connection is lost, and
    /// the fd is left then.
    fn close_orphan_fd(&mut self, fd: i64) {
        let request = Request::new(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
        if let Err(e) = self.enqueue(&request, &[], 0, Vec::new(), None) {
            log::debug!("cannot close fd {fd} of a dropped request: {e:?}");
        }
    }

    /// Removes the bytes of the unsent request at `idx` from the buffer and cancels it.
    fn cancel_unsent(&mut self, idx: usize) {
        let (start, end) = (self.slots[idx].start, self.slots[idx].end);
        let len = end - start;
        let from = self.head + (start - self.sent) as usize;
        self.wbuf.drain(from..from + len as usize);
        for later in self.slots.iter_mut().skip(idx + 1) {
            later.start -= len;
            later.end -= len;
        }
        self.appended -= len;
        let slot = &mut self.slots[idx];
        slot.state = SlotState::Cancelled;
        slot.data = Vec::new();
        // It never runs: what it kept waits for the last earlier request instead.
        let keeps = std::mem::take(&mut slot.keeps);
        self.keep_after(idx, keeps);
    }

    /// Keeps `keeps` until every request before `end` (an index in `slots`) is answered:
    /// with the last of them still expecting a response, or released if there is none.
    fn keep_after(&mut self, end: usize, mut keeps: Vec<Keep>) {
        if keeps.is_empty() {
            return;
        }
        match self.slots.range(..end).rposition(Slot::expects_response) {
            Some(i) => self.slots[i].keeps.append(&mut keeps),
            None => self.released.append(&mut keeps),
        }
    }

    /// Leaks what `slot` kept: its request may still be running, and no answer will say
    /// when it is over.
    fn leak_keeps(slot: &mut Slot) {
        for keep in slot.keeps.drain(..) {
            std::mem::forget(keep);
        }
    }

    /// Fails every request none of whose bytes were sent with `err`, and discards all
    /// unsent bytes (nothing more will be sent).
    fn fail_unsent(&mut self, err: SyscallError, wakers: &mut Vec<Waker>) {
        let sent = self.sent;
        for slot in self.slots.iter_mut().filter(|s| s.start >= sent) {
            if let SlotState::Waiting(w) = &mut slot.state {
                wakers.extend(w.take());
                slot.state = SlotState::Done(Err(err));
            }
            // Kept for earlier requests, which may never be answered now.
            State::leak_keeps(slot);
        }
        self.wbuf = Vec::new();
        self.head = 0;
        self.appended = self.sent;
    }

    /// The read side is finished: every request still expecting a response fails.
    fn read_eof(&mut self, wakers: &mut Vec<Waker>) {
        self.hung_up = true;
        self.write_dead = true;
        self.wbuf = Vec::new();
        self.head = 0;
        self.appended = self.sent;
        for slot in self.slots.iter_mut() {
            State::leak_keeps(slot);
            match &mut slot.state {
                SlotState::Waiting(w) => {
                    wakers.extend(w.take());
                    slot.state = SlotState::Done(Err(SyscallError::Hangup));
                }
                SlotState::Abandoned => {
                    slot.state = SlotState::Gone;
                    slot.data = Vec::new();
                }
                _ => {}
            }
        }
        self.pop_finished();
    }

    /// Drops finished slots from the front of the queue.
    fn pop_finished(&mut self) {
        while let Some(front) = self.slots.front() {
            if !matches!(front.state, SlotState::Gone | SlotState::Cancelled) {
                break;
            }
            if let Some(mut slot) = self.slots.pop_front() {
                // An answered slot gave its keeps to `released`; one that still has some
                // was answered out of sync, so what it kept may still be in use: leak it
                // (and never run a destructor under the state lock).
                State::leak_keeps(&mut slot);
            }
            self.base += 1;
        }
        self.resp_id = self.resp_id.max(self.base);
    }

    /// Index of the slot the next response bytes belong to.
    fn target(&mut self) -> Option<usize> {
        let mut idx = (self.resp_id - self.base) as usize;
        while idx < self.slots.len() {
            if self.slots[idx].expects_response() {
                break;
            }
            idx += 1;
        }
        self.resp_id = self.base + idx as u64;
        (idx < self.slots.len()).then_some(idx)
    }

    /// Feeds received stream bytes to the slots. `Err` (after logging why) if the stream is
    /// out of sync: bytes arrive that no request expects, or an in-band transfer gets a
    /// response other than its length; the rest of `bytes` is then left alone.
    fn consume(&mut self, mut bytes: &[u8], wakers: &mut Vec<Waker>) -> Result<(), ()> {
        while !bytes.is_empty() {
            let Some(idx) = self.target() else {
                log::error!("syscall connection: the server sent bytes no request expects");
                return Err(());
            };
            let slot = &mut self.slots[idx];
            if slot.raw_got < slot.raw_len {
                let n = (slot.raw_len - slot.raw_got).min(bytes.len());
                if matches!(slot.state, SlotState::Waiting(_)) {
                    slot.data.extend_from_slice(&bytes[..n]);
                }
                slot.raw_got += n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (RESPONSE_SIZE - self.resp_have).min(bytes.len());
            self.resp_buf[self.resp_have..self.resp_have + n].copy_from_slice(&bytes[..n]);
            self.resp_have += n;
            bytes = &bytes[n..];
            if self.resp_have < RESPONSE_SIZE {
                continue;
            }
            self.resp_have = 0;
            let ret = i64::from_le_bytes(self.resp_buf);
            let slot = &mut self.slots[idx];
            let in_sync = slot.expect.is_none_or(|n| n == ret);
            if in_sync {
                // Recorded before any kept memory is freed (below, or later with a later
                // request), which code acting on that memory relies on.
                if let Some(cell) = slot.record.take() {
                    cell.set(Errno::from_ret(ret).map_err(SyscallError::Errno));
                }
                // This request and every earlier one are over.
                self.released.append(&mut slot.keeps);
            }
            match std::mem::replace(&mut slot.state, SlotState::Gone) {
                SlotState::Waiting(w) => {
                    wakers.extend(w);
                    slot.state = SlotState::Done(if in_sync {
                        Errno::from_ret(ret).map_err(SyscallError::Errno)
                    } else {
                        Err(SyscallError::Hangup)
                    });
                }
                _ => {
                    slot.data = Vec::new();
                    if slot.new_fd && in_sync && ret >= 0 {
                        self.close_orphan_fd(ret);
                    }
                }
            }
            let slot = &self.slots[idx];
            self.resp_id = self.base + idx as u64 + 1;
            if !in_sync {
                log::error!(
                    "syscall connection out of sync: an in-band transfer of {} bytes got the \
                     response {ret}",
                    slot.expect.unwrap_or_default()
                );
                self.pop_finished();
                return Err(());
            }
        }
        self.pop_finished();
        Ok(())
    }

    /// The waker of the oldest request still waiting for its response.
    fn next_waiting_waker(&self) -> Option<Waker> {
        let from = (self.resp_id - self.base) as usize;
        self.slots.iter().skip(from).find_map(|s| match &s.state {
            SlotState::Waiting(Some(w)) => Some(w.clone()),
            _ => None,
        })
    }

    /// The waker of the driver, if any.
    fn driver_waker(&self) -> Option<Waker> {
        let idx = self.index(self.driver?)?;
        match &self.slots[idx].state {
            SlotState::Waiting(Some(w)) => Some(w.clone()),
            _ => None,
        }
    }

    /// Whether request `id` has a result (or no longer exists).
    fn is_done(&self, id: u64) -> bool {
        self.index(id)
            .is_none_or(|i| !matches!(self.slots[i].state, SlotState::Waiting(_)))
    }

    /// Gives up the driver role if `id` holds it (or nobody does) and returns the waker of
    /// the request that should take over.
    fn release_driver(&mut self, id: u64) -> Option<Waker> {
        match self.driver {
            Some(d) if d != id => None,
            _ => {
                self.driver = None;
                self.next_waiting_waker()
            }
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // The connection goes away with requests unanswered: they may still be running.
        for slot in self.slots.iter_mut() {
            State::leak_keeps(slot);
        }
    }
}

/// Stores `w` in `slot` unless an equivalent waker is there already.
fn update_waker(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the state is still
    // consistent enough to fail requests with.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

/// `send(fd, buf, MSG_NOSIGNAL)`.
fn send_nosignal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call,
    // and `fd` is an open descriptor borrowed for that duration.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl SyscallConnection {
    /// Wraps `access`, our (local) end of an `AF_UNIX SOCK_STREAM` socket whose other end a
    /// syscall server reads requests from and writes responses to.
    ///
    /// Sets `O_NONBLOCK` on `access` only and registers it with async-io. `O_NONBLOCK`
    /// belongs to the open file description, so `access` must be its own socket end, never
    /// a dup of the server's end (whose reads must block). `server_fd` is the number of the
    /// server's end in the server's fd table, used for in-band memory transfers.
    ///
    /// # Errors
    /// Setting `O_NONBLOCK` or registering with the reactor failed.
    pub fn new(access: OwnedFd, server_fd: FileDescriptor) -> io::Result<Self> {
        let io = Async::new(UnixStream::from(access))?;
        Ok(SyscallConnection {
            io,
            server_fd,
            state: Mutex::new(State::new()),
            reader: Mutex::new(Reader::default()),
            label: Mutex::new(ThreadLabel::UNLABELLED),
            asleep: AtomicBool::new(false),
            spins: AtomicBool::new(false),
        })
    }

    /// The server's end of the socket, numbered in the server's fd table.
    pub fn server_fd(&self) -> FileDescriptor {
        self.server_fd
    }

    /// Writes `data` at `dest` in the server's address space, in-band (PROTOCOL.md section
    /// 5): the request `recvfrom(server_fd, dest, len, MSG_WAITALL, 0, 0)` followed by the
    /// bytes. `data` is copied into the write buffer when the future is first polled.
    ///
    /// # Errors
    /// [`SyscallError::Hangup`] if the connection is lost, or if the server did not receive
    /// exactly `data.len()` bytes (the stream is then out of sync, so the connection is shut
    /// down); [`SyscallError::NotSent`] if it was shut down before.
    ///
    /// # Safety
    /// `dest..dest + data.len()` must be writable memory in the server's address space, and
    /// writing it must be sound where that address space is shared with this process (the
    /// local process or a clone child), as for [`SyscallInterface::syscall`]. If the server
    /// cannot store every byte, the unread bytes stay on its socket and it will read them as
    /// requests before the connection is shut down.
    pub async unsafe fn write_memory(
        &self,
        dest: Address,
        data: &[u8],
    ) -> Result<(), SyscallError> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as i64;
        let request = Request::new(
            libc::SYS_recvfrom,
            [
                self.server_fd.arg(),
                dest.arg(),
                len,
                i64::from(libc::MSG_WAITALL),
                0,
                0,
            ],
        );
        // The reader checks the response (anything but `len` is a `Hangup`); this is a
        // safety net.
        let n = Call::new(self, request, data, 0, Vec::new()).await?;
        if n != len {
            return Err(self.desync(format_args!("in-band write of {len} bytes returned {n}")));
        }
        Ok(())
    }

    /// Reads `len` bytes at `src` in the server's address space, in-band (PROTOCOL.md
    /// section 5): the request `sendto(server_fd, src, len, MSG_NOSIGNAL, 0, 0)`, after which
    /// the stream carries the `len` bytes, then the response.
    ///
    /// # Errors
    /// [`SyscallError::Hangup`] if the connection is lost, or if the response is not `len`
    /// (the stream is then out of sync, so the connection is shut down);
    /// [`SyscallError::NotSent`] if it was shut down before; `ENOMEM` if a buffer of `len`
    /// bytes cannot be allocated here.
    ///
    /// # Safety
    /// `src..src + len` must be readable memory in the server's address space: a server that
    /// sends fewer than `len` bytes desynchronizes the stream (its later responses would be
    /// taken for memory contents, and the request could wait for bytes that never come).
    pub async unsafe fn read_memory(
        &self,
        src: Address,
        len: usize,
    ) -> Result<Vec<u8>, SyscallError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(len)
            .map_err(|_| SyscallError::Errno(Errno::ENOMEM))?;
        let len_arg = len as i64;
        let request = Request::new(
            libc::SYS_sendto,
            [
                self.server_fd.arg(),
                src.arg(),
                len_arg,
                i64::from(libc::MSG_NOSIGNAL),
                0,
                0,
            ],
        );
        let mut call = Call::new(self, request, &[], len, buf);
        let n = (&mut call).await?;
        if n != len_arg || call.data.len() != len {
            return Err(self.desync(format_args!("in-band read of {len} bytes returned {n}")));
        }
        Ok(std::mem::take(&mut call.data))
    }

    /// Shuts the access side down (`SHUT_RDWR`).
    ///
    /// Responses already received are still delivered; every other request that was at
    /// least partly sent then fails with [`SyscallError::Hangup`]. Requests none of whose
    /// bytes were sent, and every later request, fail with
    /// [`NotSent::Closed`](SyscallError::NotSent): they certainly did not run.
    pub fn shutdown(&self) {
        let mut wakers = Vec::new();
        {
            let mut st = lock(&self.state);
            st.closed_by_us = true;
            self.close_write_side(&mut st, SyscallError::NotSent(NotSent::Closed), &mut wakers);
        }
        wake_all(wakers);
    }

    /// Registers `fd` (for instance the pidfd of the futex helper of PROTOCOL.md section 4),
    /// whose readability means the server is gone.
    ///
    /// Once it is readable the connection is treated as lost: the socket is shut down, the
    /// responses already received are delivered, and every other pending and later request
    /// fails with [`SyscallError::Hangup`]. The check is made by whichever request is driving
    /// the connection, so nothing happens while no request is pending. `fd` is kept until
    /// then and never read; its file status flags are left alone.
    ///
    /// # Errors
    /// Registering `fd` with the reactor failed.
    pub fn hangup_when_readable(&self, fd: OwnedFd) -> io::Result<()> {
        let source = Async::new_nonblocking(fd)?;
        lock(&self.reader).hangup_fds.push(source);
        let waker = lock(&self.state).driver_waker();
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Like [`SyscallConnection::hangup_when_readable`], for an event seen as the
    /// completion of `event` (for instance the readability of a pidfd on a remote
    /// thread's root epoller, for a server whose futex helper the local process cannot
    /// see). `event` is polled on the reaper thread until it completes or the connection
    /// is gone (see [`HangupEvent`]).
    pub(crate) fn hangup_when(&self, event: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let event = HangupEvent::start(event);
        lock(&self.reader).hangup_events.push(event);
        let waker = lock(&self.state).driver_waker();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Registers `watch` ([`SyscallConnection::hangup_when_readable`] or
    /// [`SyscallConnection::hangup_when`]).
    ///
    /// # Errors
    /// Registering an fd with the reactor failed.
    pub(crate) fn hangup_on(&self, watch: HangupWatch) -> io::Result<()> {
        match watch {
            HangupWatch::Fd(fd) => self.hangup_when_readable(fd),
            HangupWatch::Event(event) => {
                self.hangup_when(event);
                Ok(())
            }
        }
    }

    /// Whether the connection is known to be lost (or was shut down by [`Self::shutdown`]).
    pub fn is_hung_up(&self) -> bool {
        let st = lock(&self.state);
        st.write_dead || st.hung_up
    }

    /// Stops sending: requests not sent at all fail with `unsent_error`, the socket is shut
    /// down so the reader drains what was received and then sees EOF, and the driver is
    /// woken to do so.
    fn close_write_side(
        &self,
        st: &mut State,
        unsent_error: SyscallError,
        wakers: &mut Vec<Waker>,
    ) {
        if st.write_dead {
            return;
        }
        st.write_dead = true;
        st.fail_unsent(unsent_error, wakers);
        if let Err(e) = self.io.get_ref().shutdown(Shutdown::Both)
            && e.raw_os_error() != Some(libc::ENOTCONN)
        {
            log::debug!("shutdown of the syscall socket failed: {e}");
        }
        wakers.extend(st.driver_waker());
    }

    /// Treats the connection as lost after the stream went out of sync (the reader detects
    /// that first; this is a safety net).
    fn desync(&self, what: fmt::Arguments<'_>) -> SyscallError {
        log::error!("syscall connection out of sync ({what}); shutting it down");
        let mut wakers = Vec::new();
        self.close_write_side(&mut lock(&self.state), SyscallError::Hangup, &mut wakers);
        wake_all(wakers);
        SyscallError::Hangup
    }

    /// Lets this connection's drivers wait for answers on their own core
    /// ([`set_spin_wait`]). For a server that answers at once on this machine, with nothing
    /// between it and this socket: a clone child. Not for a relayed server (ssh's
    /// forward), whose relays need the CPU a spin would take.
    pub(crate) fn spin_for_answers(&self) {
        self.spins.store(true, Ordering::Relaxed);
    }

    /// Holds back what is enqueued until the returned [`Cork`] is dropped, which sends it
    /// all at once: requests made together then reach the server in one `send`, and wake it
    /// once.
    pub(crate) fn cork(&self) -> Cork<'_> {
        lock(&self.state).corks += 1;
        Cork(self)
    }

    /// Sends as much of the write buffer as the socket takes (nothing while corked).
    fn flush(&self, st: &mut State, wakers: &mut Vec<Waker>) {
        if st.corks > 0 {
            return;
        }
        while st.has_unsent() {
            match send_nosignal(self.io.get_ref().as_fd(), &st.wbuf[st.head..]) {
                Ok(n) if n > 0 => {
                    st.head += n;
                    st.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                other => {
                    // With the thread's label, like the other ways a connection ends: a
                    // request sent after the process died usually fails here (EPIPE)
                    // before the reader sees EOF.
                    self.debug_hangup(format_args!(
                        "hung up: send on the syscall socket failed: {other:?}"
                    ));
                    self.close_write_side(st, SyscallError::Hangup, wakers);
                    return;
                }
            }
        }
        st.wbuf.clear();
        st.head = 0;
        if st.wbuf.capacity() > KEEP_WRITE_CAPACITY {
            st.wbuf.shrink_to(KEEP_WRITE_CAPACITY);
        }
    }

    /// The driver's work: flush, read every available response, register for what is
    /// still needed. `Ready` once request `id` has a result.
    fn drive(&self, id: u64, cx: &mut Context<'_>, may_spin: bool) -> Poll<()> {
        let mut rd = lock(&self.reader);
        let rd = &mut *rd;
        if rd.buf.is_empty() {
            rd.buf = vec![0; READ_START];
        }
        if self.asleep.swap(false, Ordering::AcqRel) {
            SLEEPING.fetch_sub(1, Ordering::AcqRel);
        }
        // At most one spin per poll, none in a request's first poll, and none while other
        // connections wait asleep.
        let may_spin = may_spin && self.spins.load(Ordering::Relaxed);
        let mut spin = Some(spin_wait())
            .filter(|d| may_spin && !d.is_zero() && SLEEPING.load(Ordering::Acquire) == 0);
        loop {
            let mut wakers = Vec::new();
            let (want_write, done) = {
                let mut st = lock(&self.state);
                if st.has_unsent() {
                    self.flush(&mut st, &mut wakers);
                }
                (st.has_unsent(), st.is_done(id))
            };
            wake_all(wakers);
            if done {
                return Poll::Ready(());
            }

            let mut stream: &UnixStream = self.io.get_ref();
            match stream.read(&mut rd.buf) {
                Ok(n) => {
                    let mut wakers = Vec::new();
                    let (done, released) = {
                        let mut st = lock(&self.state);
                        if n == 0 {
                            self.debug_hangup(format_args!("hung up: EOF on the syscall socket"));
                            // Our side goes too: a peer that relays the socket (ssh's
                            // forward) ends its channel only once both sides are closed.
                            self.close_write_side(&mut st, SyscallError::Hangup, &mut wakers);
                            st.read_eof(&mut wakers);
                        } else if st.consume(&rd.buf[..n], &mut wakers).is_err() {
                            self.debug_hangup(format_args!(
                                "hung up: its answers went out of sync"
                            ));
                            self.close_write_side(&mut st, SyscallError::Hangup, &mut wakers);
                            st.read_eof(&mut wakers);
                        } else if st.has_unsent() {
                            // Closes of dropped requests' fds go out now, even if this
                            // request is done and nobody drives after it.
                            self.flush(&mut st, &mut wakers);
                        }
                        (st.is_done(id), std::mem::take(&mut st.released))
                    };
                    // Memory kept for dropped requests, freed outside the lock.
                    drop(released);
                    if done {
                        // This request's own waker is among those its answer woke: this
                        // poll returns Ready, so waking the task again would only make its
                        // executor poll it once more for nothing (and, under `block_on`, look
                        // for I/O once more before it sleeps). One copy of this task's waker
                        // goes; another request of the same task keeps its own.
                        if let Some(i) = wakers.iter().position(|w| w.will_wake(cx.waker())) {
                            wakers.swap_remove(i);
                        }
                    }
                    if n == 0 {
                        // Nothing more to watch for: stop the watches now (an event's
                        // watch drives requests of another connection).
                        rd.hangup_fds.clear();
                        rd.hangup_events.clear();
                    }
                    if n == rd.buf.len() && n < READ_CHUNK {
                        rd.buf.resize(READ_CHUNK, 0);
                    }
                    wake_all(wakers);
                    if done {
                        return Poll::Ready(());
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNRESET and the like: the peer is gone.
                    self.debug_hangup(format_args!(
                        "hung up: read on the syscall socket failed: {e}"
                    ));
                    self.fail_everything();
                    return Poll::Ready(());
                }
            }

            if self.poll_hangup_fds(rd, cx) {
                let mut wakers = Vec::new();
                self.close_write_side(&mut lock(&self.state), SyscallError::Hangup, &mut wakers);
                wake_all(wakers);
                continue;
            }
            if !want_write && let Some(budget) = spin.take() {
                let deadline = Instant::now() + budget;
                let fd = self.io.get_ref().as_fd();
                let mut ready = false;
                while Instant::now() < deadline {
                    if peek_readable(fd) {
                        ready = true;
                        break;
                    }
                    std::hint::spin_loop();
                }
                if ready {
                    continue;
                }
            }
            if want_write {
                match self.io.poll_writable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return self.registration_failed(e),
                    Poll::Pending => {}
                }
            }
            match self.io.poll_readable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return self.registration_failed(e),
                Poll::Pending => {
                    if !self.asleep.swap(true, Ordering::AcqRel) {
                        SLEEPING.fetch_add(1, Ordering::AcqRel);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Whether one of the hangup fds became readable; drops them all if so.
    fn poll_hangup_fds(&self, rd: &mut Reader, cx: &mut Context<'_>) -> bool {
        let mut fired = false;
        rd.hangup_fds.retain(|fd| match fd.poll_readable(cx) {
            Poll::Ready(Ok(())) => {
                fired = true;
                true
            }
            Poll::Ready(Err(e)) => {
                log::warn!("cannot watch hangup fd {}: {e}", fd.get_ref().as_raw_fd());
                false
            }
            Poll::Pending => true,
        });
        if !fired {
            fired = rd.hangup_events.iter().any(|event| event.poll_fired(cx));
        }
        if fired {
            self.debug_hangup(format_args!("hung up: its server's futex helper exited"));
            rd.hangup_fds.clear();
            rd.hangup_events.clear();
        }
        fired
    }

    /// Logs the loss of the connection at `debug` (see [`rsyscall_near::trace`]).
    fn debug_hangup(&self, what: fmt::Arguments<'_>) {
        if trace::thread_debug_enabled() {
            trace::debug_thread(*lock(&self.label), what);
        }
    }

    /// The socket cannot be waited on: give up on the connection.
    fn registration_failed(&self, e: io::Error) -> Poll<()> {
        log::error!("syscall connection: cannot register with the reactor: {e}");
        self.fail_everything();
        Poll::Ready(())
    }

    /// Fails every pending request at once.
    fn fail_everything(&self) {
        let mut wakers = Vec::new();
        {
            let mut st = lock(&self.state);
            self.close_write_side(&mut st, SyscallError::Hangup, &mut wakers);
            st.read_eof(&mut wakers);
        }
        wake_all(wakers);
    }
}

impl fmt::Debug for SyscallConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SyscallConnection");
        d.field("access_fd", &self.io.get_ref().as_raw_fd());
        d.field("server_fd", &self.server_fd);
        if let Ok(st) = self.state.try_lock() {
            d.field("queued", &st.slots.len());
            d.field("hung_up", &(st.write_dead || st.hung_up));
        }
        d.finish_non_exhaustive()
    }
}

impl SyscallInterface for SyscallConnection {
    unsafe fn syscall(&self, request: Request) -> SyscallFuture<'_> {
        Box::pin(Call::new(self, request, &[], 0, Vec::new()))
    }

    fn is_hung_up(&self) -> bool {
        SyscallConnection::is_hung_up(self)
    }

    fn set_label(&self, label: ThreadLabel) {
        *lock(&self.label) = label;
    }

    fn label(&self) -> ThreadLabel {
        *lock(&self.label)
    }

    unsafe fn syscall_new_fd(&self, request: Request) -> SyscallFuture<'_> {
        let mut call = Call::new(self, request, &[], 0, Vec::new());
        call.new_fd = true;
        Box::pin(call)
    }

    unsafe fn syscall_recorded(&self, request: Request, cell: ResultCell) -> SyscallFuture<'_> {
        let mut call = Call::new(self, request, &[], 0, Vec::new());
        call.record = Some(cell);
        Box::pin(call)
    }

    /// As the trait's default, except that a request refused because the connection was
    /// already lost stays [`SyscallError::Hangup`]: it was never sent, so it cannot have
    /// succeeded. Only a loss after the request was written counts as success.
    unsafe fn syscall_no_response(&self, request: Request) -> SyscallFuture<'_> {
        let mut call = Call::new(self, request, &[], 0, Vec::new());
        call.no_response = true;
        Box::pin(call)
    }

    fn keep_until_answered(&self, keep: Box<dyn Any + Send>) {
        let released = {
            let mut st = lock(&self.state);
            if st.hung_up || st.write_dead {
                // Requests already sent may never be answered now.
                std::mem::forget(keep);
                return;
            }
            let end = st.slots.len();
            st.keep_after(end, vec![keep]);
            std::mem::take(&mut st.released)
        };
        drop(released);
    }
}

/// The future of one request: enqueues it when first polled, then waits for (or drives the
/// connection to) its response.
struct Call<'a> {
    conn: &'a SyscallConnection,
    /// The request; also kept for logging.
    request: Request,
    /// In-band data sent right after the request.
    out: &'a [u8],
    /// Number of raw bytes that precede the response (in-band memory read).
    raw_len: usize,
    /// Buffer for those raw bytes (moved into the slot while the call is queued); holds
    /// them once the call is done.
    data: Vec<u8>,
    /// Id in the queue, once enqueued.
    id: Option<u64>,
    /// The result has been taken.
    finished: bool,
    /// The result is a new fd ([`SyscallInterface::syscall_new_fd`]).
    new_fd: bool,
    /// Where the result is recorded ([`SyscallInterface::syscall_recorded`]), handed to
    /// the slot when the request is enqueued.
    record: Option<ResultCell>,
    /// A successful run sends no response ([`SyscallInterface::syscall_no_response`]): a
    /// hangup after the request was enqueued is success.
    no_response: bool,
    /// Polled before (the first poll never spins: see [`set_spin_wait`]).
    polled: bool,
}

impl<'a> Call<'a> {
    fn new(
        conn: &'a SyscallConnection,
        request: Request,
        out: &'a [u8],
        raw_len: usize,
        data: Vec<u8>,
    ) -> Self {
        Call {
            conn,
            request,
            out,
            raw_len,
            data,
            id: None,
            finished: false,
            new_fd: false,
            record: None,
            no_response: false,
            polled: false,
        }
    }

    /// Logs the request and its result (see [`rsyscall_near::trace`]).
    fn trace(&self, result: &SyscallResult) {
        if trace::syscall_trace_enabled() {
            trace::trace_syscall(*lock(&self.conn.label), &self.request, result);
        }
    }

    /// The result of an enqueued request, as its caller sees it.
    fn settled(&self, result: SyscallResult) -> SyscallResult {
        match result {
            Err(SyscallError::Hangup) if self.no_response => Ok(0),
            other => other,
        }
    }

    /// Takes the result of a finished request.
    fn finish(&mut self, st: &mut State, idx: usize) -> (SyscallResult, Option<Waker>) {
        let slot = &mut st.slots[idx];
        let result = match std::mem::replace(&mut slot.state, SlotState::Gone) {
            SlotState::Done(r) => r,
            _ => Err(SyscallError::Hangup),
        };
        self.data = std::mem::take(&mut slot.data);
        self.finished = true;
        let handoff = self.id.and_then(|id| st.release_driver(id));
        st.pop_finished();
        (result, handoff)
    }
}

/// Made by [`SyscallConnection::cork`]: sends what was held back when dropped.
pub(crate) struct Cork<'a>(&'a SyscallConnection);

impl Drop for Cork<'_> {
    fn drop(&mut self) {
        let conn = self.0;
        let mut wakers = Vec::new();
        {
            let mut st = lock(&conn.state);
            st.corks -= 1;
            conn.flush(&mut st, &mut wakers);
            if st.has_unsent() {
                // Whoever drives must register for writability.
                wakers.extend(st.driver_waker());
            }
        }
        wake_all(wakers);
    }
}

impl Drop for SyscallConnection {
    fn drop(&mut self) {
        if *self.asleep.get_mut() {
            SLEEPING.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Future for Call<'_> {
    type Output = SyscallResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SyscallResult> {
        let this = self.get_mut();
        let conn = this.conn;
        let mut wakers = Vec::new();
        let id = match this.id {
            Some(id) => id,
            None if this.finished => return Poll::Ready(Err(SyscallError::Hangup)),
            None => {
                let mut st = lock(&conn.state);
                let raw_len = this.raw_len;
                let buf = std::mem::take(&mut this.data);
                let had_unsent = st.has_unsent();
                let id = match st.enqueue(&this.request, this.out, raw_len, buf, Some(cx.waker())) {
                    Ok(id) => id,
                    Err(e) => {
                        this.finished = true;
                        let result = Err(e);
                        this.trace(&result);
                        return Poll::Ready(result);
                    }
                };
                this.id = Some(id);
                if let Some(idx) = st.index(id) {
                    st.slots[idx].new_fd = this.new_fd;
                    st.slots[idx].record = this.record.take();
                }
                if !had_unsent {
                    conn.flush(&mut st, &mut wakers);
                }
                if st.has_unsent() {
                    // Whoever drives must register for writability.
                    wakers.extend(st.driver_waker());
                }
                id
            }
        };
        // The first poll drives without spinning and, if the answer has not come, yields
        // once: the other requests of this task are then sent before anyone spins.
        let first_poll = !this.polled;
        this.polled = true;
        loop {
            {
                let mut st = lock(&conn.state);
                let Some(idx) = st.index(id) else {
                    this.finished = true;
                    let result = this.settled(Err(SyscallError::Hangup));
                    drop(st);
                    this.trace(&result);
                    return Poll::Ready(result);
                };
                if let SlotState::Waiting(w) = &mut st.slots[idx].state {
                    update_waker(w, cx.waker());
                } else {
                    let (result, handoff) = this.finish(&mut st, idx);
                    drop(st);
                    wakers.extend(handoff);
                    wake_all(wakers);
                    let result = this.settled(result);
                    this.trace(&result);
                    return Poll::Ready(result);
                }
                match st.driver {
                    Some(d) if d != id => {
                        drop(st);
                        wake_all(wakers);
                        return Poll::Pending;
                    }
                    _ => st.driver = Some(id),
                }
            }
            wake_all(std::mem::take(&mut wakers));
            if conn
                .drive(id, cx, !first_poll && answers_soon(&this.request))
                .is_pending()
            {
                if first_poll && conn.spins.load(Ordering::Relaxed) && !spin_wait().is_zero() {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        if self.finished {
            return;
        }
        let mut wakers = Vec::new();
        let mut orphan = None;
        let (handoff, released) = {
            let mut st = lock(&self.conn.state);
            if let Some(idx) = st.index(id) {
                let unsent = st.slots[idx].start >= st.sent;
                match st.slots[idx].state {
                    SlotState::Waiting(_) if unsent => st.cancel_unsent(idx),
                    SlotState::Waiting(_) => {
                        st.slots[idx].state = SlotState::Abandoned;
                        st.slots[idx].data = Vec::new();
                    }
                    SlotState::Done(ref r) => {
                        // Answered, but nobody took the new fd it made.
                        if let Ok(fd) = r
                            && st.slots[idx].new_fd
                        {
                            orphan = Some(*fd);
                        }
                        st.slots[idx].state = SlotState::Gone;
                        st.slots[idx].data = Vec::new();
                    }
                    _ => {}
                }
            }
            let was_driver = st.driver == Some(id);
            let handoff = st.release_driver(id);
            if was_driver && self.conn.asleep.swap(false, Ordering::AcqRel) {
                // Nobody sleeps on this connection until the next driver does.
                SLEEPING.fetch_sub(1, Ordering::AcqRel);
            }
            st.pop_finished();
            if let Some(fd) = orphan {
                st.close_orphan_fd(fd);
                match st.driver {
                    // Nobody might send it before the next request: send it now.
                    None => self.conn.flush(&mut st, &mut wakers),
                    Some(_) => wakers.extend(st.driver_waker()),
                }
            }
            (handoff, std::mem::take(&mut st.released))
        };
        // Memory kept for the cancelled request, freed outside the lock.
        drop(released);
        wake_all(wakers);
        if let Some(w) = handoff {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn poll_now<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn corked_requests_go_out_together_when_the_cork_is_dropped() {
        let (access, mut server) = UnixStream::pair().expect("socketpair");
        let conn =
            SyscallConnection::new(access.into(), FileDescriptor::new(100)).expect("connection");
        server.set_nonblocking(true).expect("nonblocking");
        let getpid = Request::new(libc::SYS_getpid, [0; 6]);
        let cork = conn.cork();
        // SAFETY: the server is this test, which runs nothing.
        let mut a = unsafe { conn.syscall(getpid) };
        // SAFETY: as above.
        let mut b = unsafe { conn.syscall(getpid) };
        assert!(poll_now(a.as_mut()).is_pending());
        assert!(poll_now(b.as_mut()).is_pending());
        let mut buf = [0u8; 4 * Request::SIZE];
        assert_eq!(
            server.read(&mut buf).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "sent while corked"
        );
        drop(cork);
        assert_eq!(server.read(&mut buf).expect("read"), 2 * Request::SIZE);
        drop((a, b));
    }

    /// A waker that counts its wakes.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_request_answered_while_its_task_drives_does_not_wake_that_task() {
        let (access, mut server) = UnixStream::pair().expect("socketpair");
        let conn =
            SyscallConnection::new(access.into(), FileDescriptor::new(100)).expect("connection");
        let wakes = Arc::new(Counted(0.into()));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the server is this test, which runs nothing.
        let mut a = unsafe { conn.syscall(Request::new(libc::SYS_getpid, [0; 6])) };
        assert!(a.as_mut().poll(&mut cx).is_pending());
        let mut request = [0u8; Request::SIZE];
        server.read_exact(&mut request).expect("the request");
        std::io::Write::write_all(&mut server, &42i64.to_le_bytes()).expect("the answer");
        // The reactor reports the answer: one wake, which polls the task.
        let deadline = Instant::now() + Duration::from_secs(10);
        while wakes.0.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the reactor never woke the driver"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(matches!(a.as_mut().poll(&mut cx), Poll::Ready(Ok(42))));
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the answer read in the task's own poll woke it again"
        );
    }

    #[test]
    fn a_driver_dropped_asleep_no_longer_counts_as_sleeping() {
        let (access, _server) = UnixStream::pair().expect("socketpair");
        let conn =
            SyscallConnection::new(access.into(), FileDescriptor::new(100)).expect("connection");
        // SAFETY: the server is this test, which runs nothing.
        let mut a = unsafe { conn.syscall(Request::new(libc::SYS_getpid, [0; 6])) };
        assert!(poll_now(a.as_mut()).is_pending());
        assert!(poll_now(a.as_mut()).is_pending());
        assert!(conn.asleep.load(Ordering::Acquire), "its driver sleeps");
        drop(a);
        assert!(
            !conn.asleep.load(Ordering::Acquire),
            "a dropped driver still counted as sleeping"
        );
    }
}
