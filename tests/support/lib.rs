//! Shared helpers for the integration tests: locating the helper binaries, fd counting.
pub mod procs;
pub mod server;
pub mod tasks;
