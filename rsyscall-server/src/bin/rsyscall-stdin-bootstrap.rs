//! The standalone `rsyscall-stdin-bootstrap` binary (built by `cargo xtask build-server`;
//! PROTOCOL.md section 6): takes no arguments, receives its sockets on fd 0, describes
//! itself and serves. See [`rsyscall_server::bootstrap::stdin_bootstrap_main`].
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

rsyscall_server::standalone_entry!(rsyscall_server::bootstrap::stdin_bootstrap_main);
