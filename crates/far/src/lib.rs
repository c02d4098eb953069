//! rsyscall-far (under construction).
