//! Structs of the socket syscalls: sockaddrs, msghdr and control messages, ucred, ifreq.
