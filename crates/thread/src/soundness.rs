//! Compile-fail proofs: each snippet below was accepted from safe code before the item it
//! uses was changed, and would let safe code break memory or fd ownership. Compiled only by
//! `cargo test --doc` (`cfg(doctest)`). Each names the error it must fail with; rustdoc
//! checks the code on nightly only, so when changing one, check that the old API still
//! accepts the snippet.

/// `Epoller::activity_fd` handed out a handle to the thread's syscall socket. Replacing
/// that socket with a pipe (`dup2`) would let safe code write requests the thread's server,
/// which runs in our address space, executes: any syscall, at any address of ours. It
/// gives the number only now:
///
/// ```compile_fail,E0308
/// #![forbid(unsafe_code)]
/// async fn feed_the_server(thread: &rsyscall_thread::Thread) -> rsyscall_handle::Result<()> {
///     let epoller = thread.root_epoller().expect("a root epoller");
///     let pipe = thread.task().pipe().await?;
///     thread.task().dup2(&pipe.read, epoller.activity_fd()).await
/// }
/// ```
pub struct ActivityFdIsANumber;

/// `Connection::new` paired any local socket with any remote handle, and moves then borrow
/// the copy of that handle in tables that unshared, trusting it to be a thread's own
/// fd-passing socket. It is crate-private:
///
/// ```compile_fail,E0624
/// #![forbid(unsafe_code)]
/// fn pair(
///     local: std::os::fd::OwnedFd,
///     remote: rsyscall_handle::FileDescriptor,
/// ) -> rsyscall_thread::Connection {
///     rsyscall_thread::Connection::new(local, remote)
/// }
/// ```
pub struct ConnectionNewIsPrivate;

/// `Thread::from_bootstrap` trusts its caller that the described process has an address
/// space and fd table of its own, and owns the fds it names: a process sharing ours would
/// let the new thread's handles close fds that `File`s own. It is `unsafe`:
///
/// ```compile_fail,E0133
/// #![forbid(unsafe_code)]
/// async fn adopt(
///     parts: rsyscall_thread::BootstrapParts,
/// ) -> rsyscall_handle::Result<rsyscall_thread::Thread> {
///     rsyscall_thread::Thread::from_bootstrap(parts).await
/// }
/// ```
pub struct FromBootstrapIsUnsafe;
