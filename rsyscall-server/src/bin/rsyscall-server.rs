//! The standalone `rsyscall-server` binary (built by `cargo xtask build-server`).
//!
//! Usage: `rsyscall-server <describefd> <infd> <outfd> [fd...]`. Writes the 32-byte symbol
//! table (PROTOCOL.md section 3) on `describefd`, then serves syscall requests read from
//! `infd`, writing responses to `outfd`. Extra fds are only kept open (they are the
//! caller's business). Exit status: 0 when the client ends the stream at a request
//! boundary, 1 if writing the symbol table or serving fails (a message says which errno),
//! 2 for bad arguments.
//!
//! A static, libc-free program: its entry point `_start` reads the arguments off the
//! initial stack itself.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use rsyscall_server::rt::{self, InitialStack};

const USAGE: &[u8] = b"usage: rsyscall-server <describefd> <infd> <outfd> [fd...]\n";

/// The program proper, once the arguments are found.
fn main(stack: InitialStack) -> ! {
    if stack.argc() < 4 {
        rt::write_stderr(&[USAGE]);
        rt::exit_group(2);
    }
    let mut fds = [0i32; 3];
    for (i, slot) in fds.iter_mut().enumerate() {
        *slot = fd_arg(&stack, i.wrapping_add(1));
    }
    // The extra fds must at least be fd numbers.
    let mut i = 4;
    while i < stack.argc() {
        fd_arg(&stack, i);
        i += 1;
    }
    let [describefd, infd, outfd] = fds;
    let symbols = rsyscall_server::symbol_table().to_bytes();
    if let Err(e) = rt::write_all(describefd, &symbols) {
        fail(b"writing the symbol table failed", e);
    }
    match rsyscall_server::server(infd, outfd) {
        0 => rt::exit_group(0),
        e => fail(b"serving ended with an error", e),
    }
}

/// Parses argument `i` as an fd number, or exits with status 2.
fn fd_arg(stack: &InitialStack, i: usize) -> i32 {
    let arg = stack.arg(i).unwrap_or(b"");
    match rt::parse_fd(arg) {
        Some(fd) => fd,
        None => {
            rt::write_stderr(&[b"rsyscall-server: not an fd number: '", arg, b"'\n", USAGE]);
            rt::exit_group(2)
        }
    }
}

/// Reports `what` with the errno of `err` (`-errno`) and exits with status 1.
fn fail(what: &[u8], err: i64) -> ! {
    let mut buf = [0u8; 20];
    let errno = rt::format_i64(err.wrapping_neg(), &mut buf);
    rt::write_stderr(&[b"rsyscall-server: ", what, b": errno ", errno, b"\n"]);
    rt::exit_group(1)
}

rsyscall_server::standalone_entry!(crate::main);
