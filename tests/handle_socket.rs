//! Socket syscalls, on the local task and a clone child.
