//! Event syscalls: epoll, eventfd, timerfd, signalfd, inotify, pidfds.
