//! Namespace and mount syscalls: unshare, setns, mount, umount2, pivot_root.
