//! Fd syscalls: read/write variants, dup, fcntl, ioctl, memfd, on the local task and a clone child.
