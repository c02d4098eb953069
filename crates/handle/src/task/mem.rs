//! Memory syscalls: mmap, munmap, mprotect, madvise, memfd_create.
