//! The standalone `rsyscall-server` binary (built by `cargo xtask build-server`).
#![no_std]
#![no_main]
