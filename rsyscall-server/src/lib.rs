//! The code that runs inside controlled processes: the raw syscall routine, the clone
//! trampoline, the futex helper and the syscall server loops of PROTOCOL.md.
//!
//! This crate is `#![no_std]` and depends on nothing but `core`. The library is linked into
//! ordinary programs (the client needs the address of the trampoline and of the server
//! loop, which clone children run in the client's own address space), and the same code is
//! built into static, libc-free helper binaries (by this crate's build script, which embeds
//! them, and by `cargo xtask build-server`) and into `librsyscall.so` (by the latter).
//!
//! # Entry points
//! - [`raw_syscall`]: the syscall instruction followed directly by `ret`; every clone must
//!   go through it.
//! - [`trampoline`] and [`proto::StackImage`]: how a clone child starts running a function.
//! - [`server()`], [`persistent_server`]: the syscall server loops.
//! - [`futex_helper`] (stops itself first, as the protocol says) and
//!   [`futex_helper_nostop`]: exit when a futex word changes.
//! - [`symbol_table`]: this process's addresses of the four protocol entry points.
//! - [`rt`]: support for the static helper binaries (initial stack, exit, formatting).
//! - `embedded` (absent with the `standalone` feature): the bytes of the four static helper
//!   binaries, which this crate's build script compiles from its own sources with the
//!   `$RUSTC` that builds it.
//!
//! # Builds
//! - Ordinary builds (an rlib in a `std` program) export no unmangled names.
//! - The `standalone` feature adds the `#[panic_handler]` the static binaries and
//!   `librsyscall.so` need. Its handler calls an undefined symbol, so a panic path that
//!   survives optimisation fails the link.
//! - `--cfg rsyscall_standalone` (passed only when building `librsyscall.so` as a cdylib, and
//!   to the binaries' own crate) gives the entry points the C names of the original library:
//!   `rsyscall_raw_syscall`, `rsyscall_server`, `rsyscall_persistent_server`,
//!   `rsyscall_trampoline`, `rsyscall_futex_helper`.
//! - The static binaries link no libc, so with the `standalone` feature and without that cfg
//!   (that is, when this library is compiled as a dependency of a static binary) the crate
//!   also defines `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`. `librsyscall.so` leaves
//!   them to the libc of the process that loads it, so it exports nothing but the five names.
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
//! - Clone children end with the thread `exit`, never `exit_group`: the trampoline exits
//!   when its function returns, and nothing here but [`rt::exit_group`] ends a process.
//!
//! # Unsafe code
//! `unsafe` is denied except in the modules that need it, each of which says why it is
//! sound: `arch` (the naked assembly routines), `sys` (the syscalls the server makes for
//! itself), [`rt`] (reading the initial stack), and in the standalone builds the panic
//! handler and the memory routines. The entry points' exported C names are `unsafe`
//! attributes only in the standalone builds.
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "rsyscall-server supports only x86-64 Linux: its raw syscall routine, clone trampoline \
     and entry points are x86-64 assembly for the Linux syscall ABI"
);

mod arch;
pub mod bootstrap;
mod futex;
mod io;
pub mod proto;
pub mod rt;
mod server;
mod sys;

#[cfg(feature = "standalone")]
mod standalone;

// Not in the standalone builds: the build script makes the binaries from this very crate
// with that feature, and they embed nothing.
#[cfg(not(feature = "standalone"))]
pub mod embedded;

// Only where this library is a dependency of a static binary: see "Builds" above.
#[cfg(all(feature = "standalone", not(rsyscall_standalone)))]
mod mem;

pub use arch::{raw_syscall, trampoline};
pub use futex::{futex_helper, futex_helper_nostop};
pub use server::{MAX_PASSED_FDS, persistent_server, server};

/// Defines the ELF entry point `_start` of a static helper binary, which reads the initial
/// stack and calls `$main(stack: rt::InitialStack) -> !`. For the binaries of this crate
/// only (they are built with the `standalone` feature).
#[macro_export]
macro_rules! standalone_entry {
    ($main:path) => {
        mod entry {
            //! The process entry point.
            //!
            //! # Safety
            //! The kernel jumps to `_start` with the stack pointer at `argc`; `_start` hands
            //! that address to `start` unchanged, after aligning the stack for a call as
            //! the ABI requires, and `start` is the only reader of it.
            #![allow(unsafe_code)]
            use core::arch::naked_asm;
            use $crate::rt::InitialStack;

            /// The ELF entry point: passes the initial stack pointer to [`start`] with the
            /// stack aligned to 16 bytes and a zero frame pointer (the outermost frame).
            ///
            /// # Safety
            /// Only the kernel enters here, at process start.
            #[unsafe(naked)]
            #[unsafe(no_mangle)]
            unsafe extern "C" fn _start() -> ! {
                naked_asm!(
                    "xor ebp, ebp",
                    "mov rdi, rsp",
                    "and rsp, -16",
                    "call {start}",
                    "ud2",
                    start = sym start,
                )
            }

            /// Reads the initial stack and runs the program.
            ///
            /// # Safety
            /// `sp` must be the initial stack pointer the kernel started the process with.
            unsafe extern "C" fn start(sp: *const usize) -> ! {
                // SAFETY: _start passes the kernel's initial stack pointer, untouched.
                let stack = unsafe { InitialStack::from_initial_stack(sp) };
                $main(stack)
            }
        }
    };
}

/// This process's addresses of the protocol's entry points: [`server()`],
/// [`persistent_server`], [`futex_helper`] (the variant that stops itself) and
/// [`trampoline`] (PROTOCOL.md section 3).
pub fn symbol_table() -> proto::SymbolTable {
    let server: extern "C" fn(i32, i32) -> i64 = server;
    let persistent_server: extern "C" fn(i32, i32, i32) -> i64 = persistent_server;
    let futex_helper: extern "C" fn(*const u32, u32) -> i64 = futex_helper;
    let trampoline: unsafe extern "C" fn() -> ! = trampoline;
    proto::SymbolTable {
        server: server as usize as u64,
        persistent_server: persistent_server as usize as u64,
        futex_helper: futex_helper as usize as u64,
        trampoline: trampoline as usize as u64,
    }
}
