//! What the static helper binaries are and how they are linked: shared by this crate's
//! build script and `cargo xtask build-server` (each includes this file with `#[path]`).

/// The helper binaries: each is `src/bin/<name>.rs` (a `[[bin]]` with
/// `required-features = ["standalone"]`), installed and embedded under its own name.
pub const BINARIES: &[&str] = &[
    "rsyscall-server",
    "rsyscall-stdin-bootstrap",
    "rsyscall-unix-stub",
    "rsyscall-bootstrap",
];

/// rustc flags for a static, non-PIE executable with our own `_start` and no libc.
pub const STATIC_BINARY_FLAGS: &[&str] = &[
    "-C",
    "relocation-model=static",
    "-C",
    "target-feature=+crt-static",
    "-C",
    "link-arg=-nostartfiles",
    "-C",
    "link-arg=-nostdlib",
    "-C",
    "link-arg=-static",
    "-C",
    "link-arg=-no-pie",
    "--cfg",
    "rsyscall_standalone",
];
