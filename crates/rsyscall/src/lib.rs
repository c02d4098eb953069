//! rsyscall: the facade crate.
