//! Compile-fail proofs: each snippet below was accepted from safe code before the item it
//! uses was made `unsafe` or private, and would let safe code break memory or fd
//! ownership.
//! Compiled only by `cargo test --doc` (`cfg(doctest)`). Each names the error it must fail
//! with (missing `unsafe`, private item...); rustdoc checks the code on nightly only, so
//! when changing one, check that the same snippet compiles with the `unsafe` added.

/// `FileDescriptor::borrowed` takes an fd number on trust. Safe code could borrow the fd
/// of a `File` and `dup2` over it (or hand it to anything that replaces it), so it is
/// `unsafe`:
///
/// ```compile_fail,E0133
/// #![forbid(unsafe_code)]
/// use std::os::fd::AsRawFd;
/// let task = rsyscall_handle::Task::local();
/// let file = std::fs::File::open("/dev/null").unwrap();
/// let n = rsyscall_near::FileDescriptor::new(file.as_raw_fd());
/// let _fd = rsyscall_handle::FileDescriptor::borrowed(&task, n);
/// ```
pub struct BorrowedIsUnsafe;
