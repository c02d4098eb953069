//! Structs of the filesystem syscalls: stat, statx, dirent64 lists.
