//! The standalone `rsyscall-bootstrap` binary (built by `cargo xtask build-server`;
//! PROTOCOL.md section 6): the ssh bootstrap, run twice in a fresh directory on a remote
//! host. `rsyscall-bootstrap socket` listens on `./data` and `./pass` and hands the
//! `./data` listener over `./pass`; `rsyscall-bootstrap rsyscall` takes it, accepts its
//! syscall and data connections, describes itself and serves. See
//! [`rsyscall_server::bootstrap::ssh_bootstrap_main`].
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

rsyscall_server::standalone_entry!(rsyscall_server::bootstrap::ssh_bootstrap_main);
