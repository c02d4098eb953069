//! rsyscall-thread (under construction).
