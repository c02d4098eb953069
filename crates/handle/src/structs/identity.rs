//! Structs of the identity syscalls: rlimit, cpu_set, capability header and data.
