//! The standalone `rsyscall-unix-stub` binary (built by `cargo xtask build-server`;
//! PROTOCOL.md section 6): started under any name with `RSYSCALL_UNIX_STUB_SOCK_PATH` set,
//! connects there, receives its sockets, describes itself and serves. See
//! [`rsyscall_server::bootstrap::unix_stub_main`].
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

rsyscall_server::standalone_entry!(rsyscall_server::bootstrap::unix_stub_main);
