/* A C client of librsyscall.so, written the way C users of the original rsyscall drive a
 * child: it clones a child onto a stack holding the trampoline's stack image, the child runs
 * rsyscall_server on one end of a socketpair, and the parent sends it syscall requests in
 * the wire format (PROTOCOL.md sections 1 and 2). It checks that getpid run in the child
 * answers the child's pid and that a failing close answers -EBADF, then closes the socket
 * (the server returns and the trampoline exits the child) and waits for the child.
 *
 * Exit status 0 and the line "ok child PID" on stdout on success; otherwise a non-zero
 * status and the reason on stderr. A 20-second alarm bounds every wait. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The entry points of librsyscall.so. */
extern long rsyscall_raw_syscall(long a1, long a2, long a3, long a4, long a5, long a6, long nr);
extern void rsyscall_trampoline(void);
extern long rsyscall_server(int infd, int outfd);

/* What the new stack pointer points at (PROTOCOL.md section 2): the address the raw
 * syscall routine's `ret` pops, then what the trampoline pops: the six argument registers
 * and the function to call. */
struct stack_image {
    void (*ret)(void);
    int64_t rdi, rsi, rdx, rcx, r8, r9;
    void *function;
};

_Static_assert(sizeof(struct stack_image) == 64, "the stack image is 64 bytes");

/* One request: the syscall number and its six arguments (56 bytes). */
struct request {
    int64_t number;
    int64_t args[6];
};

_Static_assert(sizeof(struct request) == 56, "a request is 56 bytes");

#define STACK_SIZE (64 * 1024)

static pid_t child = -1;

static void fail(const char *what) {
    fprintf(stderr, "drive_server: %s: %s\n", what, strerror(errno));
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, __WALL);
    }
    exit(1);
}

/* Writes all of `len` bytes of `buf` to `fd`. */
static void write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("write");
        p += n;
        len -= (size_t)n;
    }
}

/* Reads exactly `len` bytes from `fd` into `buf`. */
static void read_exact(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EPIPE;
        if (n <= 0)
            fail("read");
        p += n;
        len -= (size_t)n;
    }
}

/* Runs syscall `number` with `args` in the child and returns its raw result. */
static int64_t call(int fd, int64_t number, const int64_t args[6]) {
    struct request req;
    int64_t response;
    memset(&req, 0, sizeof(req));
    req.number = number;
    memcpy(req.args, args, sizeof(req.args));
    write_all(fd, &req, sizeof(req));
    read_exact(fd, &response, sizeof(response));
    return response;
}

int main(void) {
    alarm(20);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        fail("socketpair");
    char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        fail("mmap");
    /* The image at the top of the stack, 16-byte aligned. */
    struct stack_image *image =
        (struct stack_image *)(((uintptr_t)(stack + STACK_SIZE) - sizeof(struct stack_image)) &
                               ~(uintptr_t)15);
    image->ret = rsyscall_trampoline;
    image->rdi = sv[1];
    image->rsi = sv[1];
    image->rdx = image->rcx = image->r8 = image->r9 = 0;
    image->function = (void *)rsyscall_server;

    /* The clone goes through the raw routine: the child resumes at its `ret`, on `image`. */
    long ret = rsyscall_raw_syscall(CLONE_VM | CLONE_FILES | SIGCHLD, (long)image, 0, 0, 0, 0,
                                    SYS_clone);
    if (ret < 0) {
        errno = (int)-ret;
        fail("clone");
    }
    child = (pid_t)ret;

    const int64_t none[6] = {0, 0, 0, 0, 0, 0};
    int64_t pid = call(sv[0], SYS_getpid, none);
    if (pid != child) {
        fprintf(stderr, "drive_server: getpid in the child answered %lld, the child is %d\n",
                (long long)pid, (int)child);
        errno = 0;
        fail("wrong pid");
    }
    if (pid == getpid()) {
        errno = 0;
        fail("getpid ran in the parent");
    }
    const int64_t bad_fd[6] = {-1, 0, 0, 0, 0, 0};
    int64_t closed = call(sv[0], SYS_close, bad_fd);
    if (closed != -EBADF) {
        fprintf(stderr, "drive_server: close(-1) answered %lld\n", (long long)closed);
        errno = 0;
        fail("wrong errno");
    }

    /* EOF on the server's socket: rsyscall_server returns 0, the trampoline exits(0). The
     * tables are shared (CLONE_FILES), so closing our end here closes it for both. */
    close(sv[0]);
    int status;
    pid_t waited;
    do {
        waited = waitpid(child, &status, 0);
    } while (waited < 0 && errno == EINTR);
    if (waited != child)
        fail("waitpid");
    child = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "drive_server: the child ended with status %#x\n", status);
        return 1;
    }
    close(sv[1]);
    munmap(stack, STACK_SIZE);
    printf("ok child %lld\n", (long long)pid);
    return 0;
}
