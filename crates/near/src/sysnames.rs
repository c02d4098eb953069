//! Names of the x86-64 Linux syscalls, indexed by number (the kernel's
//! `arch/x86/entry/syscalls/syscall_64.tbl`, common and 64-bit entries), for logs.

/// The name of every x86-64 syscall, indexed by its number; `""` where no syscall has that
/// number (the unused range 335..=423).
pub const SYSCALL_NAMES: [&str; 468] = [
    "read",
    "write",
    "open",
    "close",
    "stat",
    "fstat",
    "lstat",
    "poll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "access",
    "pipe",
    "select",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "shmget",
    "shmat",
    "shmctl",
    "dup",
    "dup2",
    "pause",
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "getpid",
    "sendfile",
    "socket",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "socketpair",
    "setsockopt",
    "getsockopt",
    "clone",
    "fork",
    "vfork",
    "execve",
    "exit",
    "wait4",
    "kill",
    "uname",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "truncate",
    "ftruncate",
    "getdents",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "mkdir",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "lchown",
    "umask",
    "gettimeofday",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "times",
    "ptrace",
    "getuid",
    "syslog",
    "getgid",
    "setuid",
    "setgid",
    "geteuid",
    "getegid",
    "setpgid",
    "getppid",
    "getpgrp",
    "setsid",
    "setreuid",
    "setregid",
    "getgroups",
    "setgroups",
    "setresuid",
    "getresuid",
    "setresgid",
    "getresgid",
    "getpgid",
    "setfsuid",
    "setfsgid",
    "getsid",
    "capget",
    "capset",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "mknod",
    "uselib",
    "personality",
    "ustat",
    "statfs",
    "fstatfs",
    "sysfs",
    "getpriority",
    "setpriority",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "vhangup",
    "modify_ldt",
    "pivot_root",
    "_sysctl",
    "prctl",
    "arch_prctl",
    "adjtimex",
    "setrlimit",
    "chroot",
    "sync",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "create_module",
    "init_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "quotactl",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "gettid",
    "readahead",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "tkill",
    "time",
    "futex",
    "sched_setaffinity",
    "sched_getaffinity",
    "set_thread_area",
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_submit",
    "io_cancel",
    "get_thread_area",
    "lookup_dcookie",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait_old",
    "remap_file_pages",
    "getdents64",
    "set_tid_address",
    "restart_syscall",
    "semtimedop",
    "fadvise64",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_settime",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "exit_group",
    "epoll_wait",
    "epoll_ctl",
    "tgkill",
    "utimes",
    "vserver",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "kexec_load",
    "waitid",
    "add_key",
    "request_key",
    "keyctl",
    "ioprio_set",
    "ioprio_get",
    "inotify_init",
    "inotify_add_watch",
    "inotify_rm_watch",
    "migrate_pages",
    "openat",
    "mkdirat",
    "mknodat",
    "fchownat",
    "futimesat",
    "newfstatat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "pselect6",
    "ppoll",
    "unshare",
    "set_robust_list",
    "get_robust_list",
    "splice",
    "tee",
    "sync_file_range",
    "vmsplice",
    "move_pages",
    "utimensat",
    "epoll_pwait",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "fallocate",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "signalfd4",
    "eventfd2",
    "epoll_create1",
    "dup3",
    "pipe2",
    "inotify_init1",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "perf_event_open",
    "recvmmsg",
    "fanotify_init",
    "fanotify_mark",
    "prlimit64",
    "name_to_handle_at",
    "open_by_handle_at",
    "clock_adjtime",
    "syncfs",
    "sendmmsg",
    "setns",
    "getcpu",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "finit_module",
    "sched_setattr",
    "sched_getattr",
    "renameat2",
    "seccomp",
    "getrandom",
    "memfd_create",
    "kexec_file_load",
    "bpf",
    "execveat",
    "userfaultfd",
    "membarrier",
    "mlock2",
    "copy_file_range",
    "preadv2",
    "pwritev2",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "statx",
    "io_pgetevents",
    "rseq",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "pidfd_send_signal",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pidfd_open",
    "clone3",
    "close_range",
    "openat2",
    "pidfd_getfd",
    "faccessat2",
    "process_madvise",
    "epoll_pwait2",
    "mount_setattr",
    "quotactl_fd",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "memfd_secret",
    "process_mrelease",
    "futex_waitv",
    "set_mempolicy_home_node",
    "cachestat",
    "fchmodat2",
    "map_shadow_stack",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "statmount",
    "listmount",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
    "mseal",
    "setxattrat",
    "getxattrat",
    "listxattrat",
    "removexattrat",
    "open_tree_attr",
];

/// The name of syscall `number` (such as `"openat"` for 257), if it has one on x86-64.
pub fn syscall_name(number: i64) -> Option<&'static str> {
    let name = *SYSCALL_NAMES.get(usize::try_from(number).ok()?)?;
    (!name.is_empty()).then_some(name)
}

/// How many arguments syscall `number` takes on x86-64, for the syscalls this library
/// issues (and a few more); `None` for the others. Traces print that many arguments (see
/// [`crate::trace`]).
pub fn syscall_arg_count(number: i64) -> Option<usize> {
    let n = match number {
        libc::SYS_getpid
        | libc::SYS_gettid
        | libc::SYS_getuid
        | libc::SYS_getgid
        | libc::SYS_geteuid
        | libc::SYS_getegid
        | libc::SYS_getppid
        | libc::SYS_getpgrp
        | libc::SYS_setsid
        | libc::SYS_sched_yield
        | libc::SYS_pause
        | libc::SYS_inotify_init
        | libc::SYS_fork
        | libc::SYS_vfork
        | libc::SYS_sync
        | libc::SYS_munlockall => 0,
        libc::SYS_close
        | libc::SYS_dup
        | libc::SYS_exit
        | libc::SYS_exit_group
        | libc::SYS_umask
        | libc::SYS_fsync
        | libc::SYS_fdatasync
        | libc::SYS_fchdir
        | libc::SYS_chdir
        | libc::SYS_chroot
        | libc::SYS_setuid
        | libc::SYS_setgid
        | libc::SYS_getpgid
        | libc::SYS_getsid
        | libc::SYS_unshare
        | libc::SYS_set_tid_address
        | libc::SYS_epoll_create1
        | libc::SYS_inotify_init1
        | libc::SYS_epoll_create
        | libc::SYS_eventfd
        | libc::SYS_brk
        | libc::SYS_alarm
        | libc::SYS_pipe => 1,
        libc::SYS_munmap
        | libc::SYS_dup2
        | libc::SYS_pipe2
        | libc::SYS_kill
        | libc::SYS_shutdown
        | libc::SYS_listen
        | libc::SYS_fchmod
        | libc::SYS_ftruncate
        | libc::SYS_getcwd
        | libc::SYS_setpgid
        | libc::SYS_setgroups
        | libc::SYS_getgroups
        | libc::SYS_getpriority
        | libc::SYS_capget
        | libc::SYS_capset
        | libc::SYS_set_robust_list
        | libc::SYS_rt_sigsuspend
        | libc::SYS_nanosleep
        | libc::SYS_inotify_rm_watch
        | libc::SYS_timerfd_create
        | libc::SYS_timerfd_gettime
        | libc::SYS_eventfd2
        | libc::SYS_memfd_create
        | libc::SYS_setns
        | libc::SYS_umount2
        | libc::SYS_pivot_root
        | libc::SYS_fstat
        | libc::SYS_fstatfs
        | libc::SYS_pidfd_open
        | libc::SYS_clone3
        | libc::SYS_stat
        | libc::SYS_lstat
        | libc::SYS_access
        | libc::SYS_mkdir
        | libc::SYS_rename
        | libc::SYS_link
        | libc::SYS_symlink => 2,
        libc::SYS_read
        | libc::SYS_write
        | libc::SYS_readv
        | libc::SYS_writev
        | libc::SYS_lseek
        | libc::SYS_ioctl
        | libc::SYS_fcntl
        | libc::SYS_getdents64
        | libc::SYS_socket
        | libc::SYS_connect
        | libc::SYS_accept
        | libc::SYS_bind
        | libc::SYS_getsockname
        | libc::SYS_getpeername
        | libc::SYS_sendmsg
        | libc::SYS_recvmsg
        | libc::SYS_mprotect
        | libc::SYS_madvise
        | libc::SYS_dup3
        | libc::SYS_fchown
        | libc::SYS_setresuid
        | libc::SYS_setresgid
        | libc::SYS_getresuid
        | libc::SYS_getresgid
        | libc::SYS_setpriority
        | libc::SYS_tgkill
        | libc::SYS_sched_setaffinity
        | libc::SYS_sched_getaffinity
        | libc::SYS_inotify_add_watch
        | libc::SYS_mkdirat
        | libc::SYS_unlinkat
        | libc::SYS_symlinkat
        | libc::SYS_fchmodat
        | libc::SYS_execve
        | libc::SYS_mseal
        | libc::SYS_close_range
        | libc::SYS_pidfd_getfd
        | libc::SYS_poll
        | libc::SYS_open
        | libc::SYS_faccessat
        | libc::SYS_readlink
        | libc::SYS_getrandom => 3,
        libc::SYS_openat
        | libc::SYS_rt_sigaction
        | libc::SYS_rt_sigprocmask
        | libc::SYS_rt_sigtimedwait
        | libc::SYS_pread64
        | libc::SYS_pwrite64
        | libc::SYS_wait4
        | libc::SYS_socketpair
        | libc::SYS_accept4
        | libc::SYS_signalfd4
        | libc::SYS_newfstatat
        | libc::SYS_readlinkat
        | libc::SYS_epoll_wait
        | libc::SYS_epoll_ctl
        | libc::SYS_fallocate
        | libc::SYS_timerfd_settime
        | libc::SYS_utimensat
        | libc::SYS_clock_nanosleep
        | libc::SYS_prlimit64
        | libc::SYS_pidfd_send_signal
        | libc::SYS_faccessat2
        | libc::SYS_fchmodat2
        | libc::SYS_renameat
        | libc::SYS_sendfile => 4,
        libc::SYS_clone
        | libc::SYS_select
        | libc::SYS_waitid
        | libc::SYS_ppoll
        | libc::SYS_prctl
        | libc::SYS_mount
        | libc::SYS_setsockopt
        | libc::SYS_getsockopt
        | libc::SYS_linkat
        | libc::SYS_renameat2
        | libc::SYS_statx
        | libc::SYS_execveat
        | libc::SYS_mremap
        | libc::SYS_fchownat => 5,
        libc::SYS_mmap
        | libc::SYS_sendto
        | libc::SYS_recvfrom
        | libc::SYS_futex
        | libc::SYS_epoll_pwait
        | libc::SYS_epoll_pwait2
        | libc::SYS_pselect6
        | libc::SYS_preadv2
        | libc::SYS_pwritev2
        | libc::SYS_splice
        | libc::SYS_copy_file_range => 6,
        _ => return None,
    };
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_libc_numbers() {
        assert_eq!(syscall_name(libc::SYS_read), Some("read"));
        assert_eq!(syscall_name(libc::SYS_getpid), Some("getpid"));
        assert_eq!(syscall_name(libc::SYS_openat), Some("openat"));
        assert_eq!(syscall_name(libc::SYS_clone3), Some("clone3"));
        assert_eq!(syscall_name(libc::SYS_fchmodat2), Some("fchmodat2"));
        assert_eq!(syscall_name(libc::SYS_mseal), Some("mseal"));
        assert_eq!(syscall_name(400), None);
        assert_eq!(syscall_name(-1), None);
        assert_eq!(syscall_name(100_000), None);
    }
}
