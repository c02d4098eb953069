//! Process, identity and namespace syscalls, on the local task and a clone child.
