//! The static helper binaries, built from this crate's sources by its build script and
//! included here, so that a program depending on this crate has them without
//! `cargo xtask build-server`: `rsyscall-thread` writes them out where a path is needed
//! (see its `libexec` module) and copies the ssh bootstrap to remote hosts itself.
//!
//! Absent from the `standalone` builds (the binaries themselves and `librsyscall.so`),
//! which the build script makes from this very crate.

/// `rsyscall-server`: serves syscalls on the fds named in its arguments.
pub static RSYSCALL_SERVER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/helpers/rsyscall-server"));

/// `rsyscall-stdin-bootstrap`: receives its sockets on its stdin (PROTOCOL.md section 6).
pub static RSYSCALL_STDIN_BOOTSTRAP: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/helpers/rsyscall-stdin-bootstrap"
));

/// `rsyscall-unix-stub`: connects to a stub server's socket (PROTOCOL.md section 6).
pub static RSYSCALL_UNIX_STUB: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/helpers/rsyscall-unix-stub"));

/// `rsyscall-bootstrap`: the ssh bootstrap run on remote hosts (PROTOCOL.md section 6).
pub static RSYSCALL_BOOTSTRAP: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/helpers/rsyscall-bootstrap"));

/// Every helper binary with its file name.
pub static HELPERS: &[(&str, &[u8])] = &[
    ("rsyscall-server", RSYSCALL_SERVER),
    ("rsyscall-stdin-bootstrap", RSYSCALL_STDIN_BOOTSTRAP),
    ("rsyscall-unix-stub", RSYSCALL_UNIX_STUB),
    ("rsyscall-bootstrap", RSYSCALL_BOOTSTRAP),
];

/// The bytes of the helper binary called `name`, if there is one.
pub fn helper(name: &str) -> Option<&'static [u8]> {
    HELPERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, bytes)| bytes)
}
