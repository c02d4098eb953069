//! Structs of the fd syscalls: iovec lists, flock, file_clone_range.
