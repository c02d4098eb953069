//! Shared helpers for the integration tests: locating the helper binaries, fd counting,
//! error checks, scratch directories, a seeded random number generator, and the checks
//! every kind of thread goes through.
pub mod errors;
pub mod exercise;
pub mod procs;
pub mod programs;
pub mod rng;
pub mod server;
pub mod ssh;
pub mod ssh_leaks;
pub mod tasks;
pub mod tmp;
