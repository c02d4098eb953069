//! rsyscall-handle (under construction).
