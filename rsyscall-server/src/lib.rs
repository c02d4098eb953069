//! The code that runs inside controlled processes: the raw syscall routine, the clone
//! trampoline, the futex helper and the syscall server loops of PROTOCOL.md.
//!
//! This crate is `#![no_std]` and depends on nothing but `core`. The library is linked into
//! ordinary programs (the client needs the address of the trampoline and of the server
//! loop, which clone children run in the client's own address space), and the same code is
//! built by `cargo xtask build-server` into static, libc-free helper binaries and into
//! `librsyscall.so`.
//!
//! # Invariants
//! - Nothing reachable from [`trampoline`] allocates, panics, touches thread-local storage
//!   or `errno`, or calls into libc: clone children run it with no TLS of their own on a
//!   small stack. The standalone build links a panic handler that refers to an undefined
//!   symbol, so a panic path that survives optimisation fails the build.
//! - The server never reads ahead on its input socket: it reads exactly one 56-byte request
//!   at a time, because the bytes after a request may be raw memory data (PROTOCOL.md
//!   section 5).
//! - Responses are written with `sendto(MSG_NOSIGNAL)` (falling back to `write` on
//!   `ENOTSOCK`), so a vanished client never kills the server with `SIGPIPE`.
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
mod io;
pub mod proto;
mod server;
mod sys;

pub use arch::{raw_syscall, trampoline};
pub use server::server;
