//! Compile-fail proofs: each snippet below was accepted from safe code before `far::Task`
//! could only be made with an `unsafe` promise.
//! Compiled only by `cargo test --doc` (`cfg(doctest)`). Each names the error it must fail
//! with; rustdoc checks the code on nightly only, so when changing one, check that the
//! same snippet compiles with the `unsafe` added.

/// A `far::Task` pairing the local process's interface with namespaces of its caller's
/// choosing would make its checks lie to the unsafe code relying on them:
///
/// ```compile_fail,E0133
/// #![forbid(unsafe_code)]
/// use rsyscall_far::*;
/// let p = rsyscall_near::Pid::new(1);
/// let ns = Namespaces {
///     fd_table: FdTable::new(p),
///     address_space: AddressSpace::new(p),
///     pidns: PidNamespace::new(p),
///     mountns: MountNamespace::new(p),
///     netns: NetNamespace::new(p),
/// };
/// let _t = Task::new(std::sync::Arc::new(rsyscall_near::LocalSyscall), p, ns);
/// ```
///
/// and its fields cannot be set directly either:
///
/// ```compile_fail,E0451
/// #![forbid(unsafe_code)]
/// use rsyscall_far::*;
/// let p = rsyscall_near::Pid::new(1);
/// let ns = Namespaces {
///     fd_table: FdTable::new(p),
///     address_space: AddressSpace::new(p),
///     pidns: PidNamespace::new(p),
///     mountns: MountNamespace::new(p),
///     netns: NetNamespace::new(p),
/// };
/// let _t = Task { sysif: std::sync::Arc::new(rsyscall_near::LocalSyscall), pid: p, ns };
/// ```
pub struct FarTaskNewIsUnsafe;
