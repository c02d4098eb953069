//! Shared helpers for the integration tests: locating the helper binaries, fd counting,
//! error checks, scratch directories.
pub mod errors;
pub mod procs;
pub mod server;
pub mod tasks;
pub mod tmp;
