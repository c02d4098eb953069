//! Structs of the process syscalls: siginfo, sigaction, robust futex list nodes, argv/envp arrays.
