//! Structs of the event syscalls: epoll_event lists, itimerspec, signalfd_siginfo, inotify_event lists.
