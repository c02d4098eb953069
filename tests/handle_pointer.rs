//! Pointers, allocation and FileDescriptor handles, on the local task and a clone child.
