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

/// `Task::new` trusts its namespaces and its syscall interface. Safe code could tag a task
/// of another process with the local fd table (so local fds pass its checks) or the local
/// address space, or pair the local namespaces with an interface that lies, so it is
/// `unsafe`:
///
/// ```compile_fail,E0133
/// #![forbid(unsafe_code)]
/// use std::sync::Arc;
/// use rsyscall_handle::{FdTableState, Memory, Task, local_namespaces};
/// let ns = local_namespaces();
/// let _task = Task::new(
///     Arc::new(rsyscall_near::LocalSyscall),
///     rsyscall_near::Pid::new(1),
///     ns,
///     FdTableState::new(ns.fd_table),
///     Memory::local().clone(),
///     None,
/// );
/// ```
pub struct TaskNewIsUnsafe;

/// `Memory::new` trusts its mapper's `mmap` replies and its transport: a fake mapper
/// answering `mmap` with the address of a `Vec` would make `Pointer::write` overwrite that
/// `Vec`. So it is `unsafe`:
///
/// ```compile_fail,E0133
/// #![forbid(unsafe_code)]
/// use std::sync::Arc;
/// use rsyscall_handle::{LocalTransport, Memory, local_namespaces};
/// let _m = Memory::new(
///     local_namespaces().address_space,
///     Arc::new(LocalTransport),
///     Arc::new(rsyscall_near::LocalSyscall),
/// );
/// ```
///
/// and so is `Memory::fixed`, for the same reasons:
///
/// ```compile_fail,E0133
/// #![forbid(unsafe_code)]
/// use std::sync::Arc;
/// use rsyscall_handle::{LocalTransport, Memory, local_namespaces};
/// let _m = Memory::fixed(
///     local_namespaces().address_space,
///     Arc::new(LocalTransport),
///     Arc::new(rsyscall_near::LocalSyscall),
///     4096,
/// );
/// ```
pub struct MemoryNewIsUnsafe;

/// `Memory::queue_unmap` took any address range and unmapped it at the next allocation:
/// safe code could unmap the pages of its own heap. It is crate-private:
///
/// ```compile_fail,E0624
/// #![forbid(unsafe_code)]
/// let v = vec![0u8; 1 << 20];
/// let mapping = rsyscall_near::MemoryMapping {
///     addr: rsyscall_near::Address::new((v.as_ptr() as u64 + 4095) & !4095),
///     len: 4096,
/// };
/// rsyscall_handle::Memory::local().queue_unmap(mapping);
/// ```
pub struct QueueUnmapIsPrivate;

/// A socket option names the layout of its value to the kernel, which may use addresses
/// inside it (`TCP_ZEROCOPY_RECEIVE` copies data to `copybuf_address`). A safe
/// implementation could name such an option with a value of our choosing, so `SockOpt` is
/// an `unsafe trait`:
///
/// ```compile_fail,E0200
/// #![forbid(unsafe_code)]
/// struct ZeroCopy;
/// impl rsyscall_handle::structs::SockOpt for ZeroCopy {
///     type Value = [u64; 8];
///     type Raw = [u64; 8];
///     const LEVEL: i32 = 6; // IPPROTO_TCP
///     const NAME: i32 = 35; // TCP_ZEROCOPY_RECEIVE
///     const LABEL: &'static str = "TCP_ZEROCOPY_RECEIVE";
///     fn to_raw(value: &Self::Value) -> Self::Raw {
///         *value
///     }
///     fn from_raw(raw: Self::Raw) -> Self::Value {
///         raw
///     }
/// }
/// ```
pub struct SockOptIsUnsafe;
