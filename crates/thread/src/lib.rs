//! The thread layer: the syscall client, and (to come) threads, clone and exec.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod syscall_connection;

pub use syscall_connection::SyscallConnection;
