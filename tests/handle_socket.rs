//! Socket syscalls, on the local task and a clone child: unix, TCP and UDP sockets, socket
//! options, fd and credential passing, interface ioctls and tun devices.
//!
//! Every test takes the `serial()` lock, so that tests counting the fds of a table see no
//! fds of other tests come and go.

use std::net::Ipv4Addr;

use rsyscall::handle::structs::{
    AnySockaddr, Cmsg, SendCmsg, SockaddrIn, SockaddrUn, Ucred, cmsg_space, sockopt,
};
use rsyscall::near::{AF, IFF, SockType, TUN};
use rsyscall::{CLONE, Errno, Error, FD, FileDescriptor, MSG, O, SHUT, SOCK, Task, Thread};
use rsyscall_tests::errors::{assert_errno, assert_invalid, serial};
use rsyscall_tests::procs::open_fds_of;
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child};
use rsyscall_tests::tmp::TempDir;

fn path_bytes(p: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

async fn unix_stream(task: &Task) -> FileDescriptor {
    task.socket(AF::UNIX, SockType::STREAM, SOCK::empty(), 0)
        .await
        .expect("socket(AF_UNIX, SOCK_STREAM)")
}

async fn tcp(task: &Task, flags: SOCK) -> FileDescriptor {
    task.socket(AF::INET, SockType::STREAM, flags, 0)
        .await
        .expect("socket(AF_INET, SOCK_STREAM)")
}

fn localhost(port: u16) -> SockaddrIn {
    SockaddrIn::new(Ipv4Addr::LOCALHOST, port)
}

/// The number of open fds in the table of `task` (its pid is valid in our pid namespace in
/// these tests).
async fn count_fds(task: &Task) -> usize {
    task.flush_closes().await.expect("flush closes");
    open_fds_of(task.pid().as_raw())
}

/// Whether `fd` has `FD_CLOEXEC` set.
async fn cloexec(task: &Task, fd: &FileDescriptor) -> bool {
    task.check_fd(fd).expect("fd of task");
    fd.fcntl_getfd()
        .await
        .expect("fcntl(F_GETFD)")
        .contains(FD::CLOEXEC)
}

/// Waits (up to 10 s, which only bounds a hang) until `fd` is writable or has an error.
async fn wait_writable(task: &Task, fd: &FileDescriptor) {
    let n = task.check_fd(fd).expect("fd of task");
    // struct pollfd { int fd; short events; short revents; }
    let pollfd = task
        .ptr(&[n.as_raw(), i32::from(libc::POLLOUT)])
        .await
        .expect("pollfd");
    let timeout = task.ptr(&[10i64, 0]).await.expect("timespec");
    let req = rsyscall::near::Request::new(
        libc::SYS_ppoll,
        [pollfd.near().arg(), 1, timeout.near().arg(), 0, 8, 0],
    );
    // SAFETY: both pointers are live allocations of the task's address space, kept until
    // the syscall has returned; ppoll writes only the pollfd's revents.
    let ready = unsafe { task.sysif().syscall(req) }.await.expect("ppoll");
    assert_eq!(ready, 1, "the socket became writable");
}

#[test]
fn unix_stream_bind_listen_connect_accept() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let dir = TempDir::new("sock-unix");
        let path = path_bytes(&dir.join("listener.sock"));
        let addr = SockaddrUn::new(&path).expect("short path");

        let listener = unix_stream(task).await;
        listener.bind(&addr).await.expect("bind");
        listener.listen(10).await.expect("listen");
        assert!(
            listener
                .getsockopt::<sockopt::AcceptConn>()
                .await
                .expect("SO_ACCEPTCONN"),
            "{label}: listening"
        );
        assert_eq!(
            listener.getsockname().await.expect("getsockname"),
            AnySockaddr::Un(addr.clone()),
            "{label}: listener's name"
        );
        assert_errno(
            listener.getpeername().await,
            Errno::ENOTCONN,
            "getpeername on a listener",
        );

        let client = unix_stream(task).await;
        client.connect(&addr).await.expect("connect");
        let (server, peer) = listener.accept4_addr(SOCK::empty()).await.expect("accept4");
        assert!(
            peer.as_un().expect("AF_UNIX peer").is_unnamed(),
            "{label}: the unbound client is unnamed, got {peer:?}"
        );
        assert!(
            cloexec(task, &server).await,
            "{label}: accepted fd is CLOEXEC"
        );
        assert_eq!(
            client.getpeername().await.expect("getpeername"),
            AnySockaddr::Un(addr.clone()),
            "{label}: client's peer"
        );
        assert_eq!(
            server.getsockname().await.expect("getsockname"),
            AnySockaddr::Un(addr.clone()),
            "{label}: accepted socket's name"
        );
        let cred = server
            .getsockopt::<sockopt::PeerCred>()
            .await
            .expect("SO_PEERCRED");
        assert_eq!(
            cred.pid,
            task.getpid().await.expect("getpid").as_raw(),
            "{label}: peer pid"
        );

        task.write_all_bytes(&client, b"ping").await.expect("write");
        assert_eq!(task.read_bytes(&server, 16).await.expect("read"), b"ping");
        task.write_all_bytes(&server, b"pong").await.expect("write");
        assert_eq!(task.read_bytes(&client, 16).await.expect("read"), b"pong");

        // accept4 without the peer's address, non-blocking flag on the new fd.
        let client2 = unix_stream(task).await;
        client2.connect_unix(&path).await.expect("connect_unix");
        let server2 = listener.accept4(SOCK::NONBLOCK).await.expect("accept4");
        assert_errno(
            task.read_bytes(&server2, 16).await,
            Errno::EAGAIN,
            "read on an empty non-blocking accepted socket",
        );
    });
}

#[test]
fn unix_socket_path_longer_than_sun_path() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let dir = TempDir::new("sock-long");
        let mut deep = dir.path().to_path_buf();
        while path_bytes(&deep).len() <= SockaddrUn::MAX_PATH + 20 {
            deep.push("a-rather-long-directory-name");
        }
        std::fs::create_dir_all(&deep).expect("create deep dir");
        let path = path_bytes(&deep.join("server.sock"));
        assert!(path.len() > SockaddrUn::MAX_PATH);
        assert_invalid(SockaddrUn::new(&path), "a long path directly");

        let listener = unix_stream(task).await;
        listener.bind_unix(&path).await.expect("bind a long path");
        listener.listen(1).await.expect("listen");
        assert!(
            deep.join("server.sock").exists(),
            "{label}: the socket file is in the real directory"
        );
        let client = unix_stream(task).await;
        client
            .connect_unix(deep.join("server.sock"))
            .await
            .expect("connect to a long path, given as a PathBuf");
        let server = listener.accept4(SOCK::empty()).await.expect("accept");
        task.write_all_bytes(&client, b"far away")
            .await
            .expect("write");
        assert_eq!(
            task.read_bytes(&server, 16).await.expect("read"),
            b"far away"
        );

        // The name the kernel knows is the one we bound: /proc/self/fd/N/server.sock.
        let name = listener.getsockname().await.expect("getsockname");
        let bound = name.as_un().and_then(SockaddrUn::path).expect("a path");
        assert!(
            bound.starts_with(b"/proc/self/fd/") && bound.ends_with(b"/server.sock"),
            "{label}: {name:?}"
        );

        // A last component that cannot fit even through /proc/self/fd.
        let mut too_long = path_bytes(dir.path());
        too_long.push(b'/');
        too_long.extend(std::iter::repeat_n(b'x', 200));
        let sock = unix_stream(task).await;
        assert_invalid(sock.bind_unix(&too_long).await, "a 200-byte file name");
    });
}

#[test]
fn fd_passing_with_cmsg_cloexec() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        let pipe = task.pipe().await.expect("pipe");
        let sent = task
            .sendmsg_bytes(
                &a,
                &[b"fd!"],
                &[SendCmsg::Rights(&[&pipe.write])],
                MSG::empty(),
            )
            .await
            .expect("sendmsg");
        assert_eq!(sent, 3);
        let (data, msg) = task
            .recvmsg_bytes(&b, 16, cmsg_space(4), MSG::empty())
            .await
            .expect("recvmsg");
        assert_eq!(data, b"fd!", "{label}");
        assert_eq!(msg.received, 3);
        assert_eq!(msg.name, None, "{label}: an unnamed sender reports no name");
        let mut control = msg.control;
        assert_eq!(control.len(), 1, "{label}: {control:?}");
        let Some(Cmsg::Rights(mut fds)) = control.pop() else {
            panic!("{label}: expected SCM_RIGHTS");
        };
        assert_eq!(fds.len(), 1);
        let received = fds.remove(0);
        assert_ne!(received.near(), pipe.write.near(), "a new fd number");
        assert!(
            cloexec(task, &received).await,
            "{label}: MSG_CMSG_CLOEXEC applied"
        );
        task.write_all_bytes(&received, b"through the copy")
            .await
            .expect("write through the received fd");
        assert_eq!(
            task.read_bytes(&pipe.read, 64).await.expect("read"),
            b"through the copy",
            "{label}: the received fd is the same pipe"
        );
        // The received handle owns its fd: closing it leaves the original working.
        let before = count_fds(task).await;
        received.close().await.expect("close received");
        assert_eq!(count_fds(task).await, before - 1, "{label}");
        task.write_all_bytes(&pipe.write, b"x")
            .await
            .expect("original");
    });
}

#[test]
fn sendmsg_recvmsg_iovecs_and_buffers_come_back() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::SEQPACKET, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        let parts = vec![
            task.ptr(&b"hello, "[..]).await.expect("ptr"),
            task.ptr(&b"world"[..]).await.expect("ptr"),
        ];
        let (n, parts) = a
            .sendmsg(parts, &[], None, MSG::empty())
            .await
            .expect("sendmsg");
        assert_eq!(n, 12);
        assert_eq!(parts.len(), 2, "the buffers come back");
        assert_eq!(parts[1].read().await.expect("read back"), b"world");
        let bufs = vec![
            task.malloc_bytes(4).await.expect("malloc"),
            task.malloc_bytes(4).await.expect("malloc"),
            task.malloc_bytes(10).await.expect("malloc"),
        ];
        let msg = b.recvmsg(bufs, 0, MSG::empty()).await.expect("recvmsg");
        assert_eq!(msg.received, 12, "{label}");
        let mut got = Vec::new();
        for d in &msg.data {
            got.extend(d.read().await.expect("read"));
        }
        assert_eq!(got, b"hello, world");
        assert_eq!(msg.data.len(), 3);
        assert_eq!(msg.rest.len(), 1);
        assert_eq!(msg.rest[0].size(), 6);
        assert!(msg.control.is_empty());
        // A datagram longer than the buffers: MSG_TRUNC.
        task.sendmsg_bytes(&a, &[b"0123456789"], &[], MSG::empty())
            .await
            .expect("sendmsg");
        let (data, msg) = task
            .recvmsg_bytes(&b, 4, 0, MSG::empty())
            .await
            .expect("recvmsg");
        assert_eq!(data, b"0123");
        assert!(msg.flags.contains(MSG::TRUNC), "{label}: {:?}", msg.flags);
        // Too many iovecs is refused before sending.
        let mut many = Vec::new();
        for _ in 0..1025 {
            many.push(task.ptr(&b"x"[..]).await.expect("ptr"));
        }
        assert_invalid(
            a.sendmsg(many, &[], None, MSG::empty()).await,
            "1025 iovecs",
        );
    });
}

#[test]
fn scm_credentials_with_so_passcred() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::DGRAM, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        assert!(
            !b.getsockopt::<sockopt::PassCred>().await.expect("get"),
            "{label}: off by default"
        );
        b.setsockopt::<sockopt::PassCred>(&true)
            .await
            .expect("SO_PASSCRED");
        assert!(b.getsockopt::<sockopt::PassCred>().await.expect("get"));
        let me = Ucred {
            pid: task.getpid().await.expect("getpid").as_raw(),
            // SAFETY: getuid and getgid cannot fail; the child shares our credentials.
            uid: unsafe { libc::getuid() },
            // SAFETY: as above.
            gid: unsafe { libc::getgid() },
        };
        // Implicit credentials, from SO_PASSCRED alone.
        task.sendmsg_bytes(&a, &[b"who"], &[], MSG::empty())
            .await
            .expect("sendmsg");
        let (data, msg) = task
            .recvmsg_bytes(&b, 16, cmsg_space(12), MSG::empty())
            .await
            .expect("recvmsg");
        assert_eq!(data, b"who");
        match &msg.control[..] {
            [Cmsg::Credentials(c)] => assert_eq!(*c, me, "{label}"),
            other => panic!("{label}: expected credentials, got {other:?}"),
        }
        // Explicit credentials, with an fd alongside.
        let pipe = task.pipe().await.expect("pipe");
        task.sendmsg_bytes(
            &a,
            &[b"me"],
            &[SendCmsg::Credentials(me), SendCmsg::Rights(&[&pipe.read])],
            MSG::empty(),
        )
        .await
        .expect("sendmsg with credentials");
        let (_, msg) = task
            .recvmsg_bytes(&b, 16, cmsg_space(12) + cmsg_space(4), MSG::empty())
            .await
            .expect("recvmsg");
        let creds: Vec<_> = msg
            .control
            .iter()
            .filter_map(|c| match c {
                Cmsg::Credentials(c) => Some(*c),
                _ => None,
            })
            .collect();
        assert_eq!(creds, vec![me], "{label}");
        assert!(
            msg.control
                .iter()
                .any(|c| matches!(c, Cmsg::Rights(f) if f.len() == 1)),
            "{label}: {:?}",
            msg.control
        );
        // SO_PEERCRED on a socketpair: our own credentials.
        assert_eq!(
            a.getsockopt::<sockopt::PeerCred>().await.expect("peercred"),
            me
        );
    });
}

#[test]
fn recvmsg_control_truncated_closes_arrived_fds() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        let pipe = task.pipe().await.expect("pipe");
        task.sendmsg_bytes(
            &a,
            &[b"3"],
            &[SendCmsg::Rights(&[&pipe.read, &pipe.write, &pipe.read])],
            MSG::empty(),
        )
        .await
        .expect("sendmsg");
        let before = count_fds(task).await;
        // CMSG_SPACE(4) is 24 bytes, room for two fds of the three: the kernel installs
        // two and sets MSG_CTRUNC.
        let detail = assert_invalid(
            task.recvmsg_bytes(&b, 16, cmsg_space(4), MSG::empty())
                .await,
            "a control buffer for two fds of three",
        );
        assert!(detail.contains("MSG_CTRUNC"), "{label}: {detail}");
        assert!(detail.contains("2 fds"), "{label}: {detail}");
        assert_eq!(
            count_fds(task).await,
            before,
            "{label}: the fds that arrived were closed"
        );
    });
}

#[test]
fn shutdown_rd_leaves_pending_bytes_readable() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        task.write_all_bytes(&a, b"pending").await.expect("write");
        b.shutdown(SHUT::RD).await.expect("shutdown(SHUT_RD)");
        assert_eq!(
            task.read_bytes(&b, 64).await.expect("read"),
            b"pending",
            "{label}: bytes queued before the shutdown"
        );
        assert_eq!(
            task.read_bytes(&b, 64).await.expect("read"),
            b"",
            "{label}: then EOF"
        );
        task.shutdown(&a, SHUT::WR)
            .await
            .expect("shutdown(SHUT_WR)");
        assert_errno(
            task.write_bytes(&a, b"x").await,
            Errno::EPIPE,
            "write after SHUT_WR",
        );
    });
}

#[test]
fn tcp_loopback_round_trip() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let listener = tcp(task, SOCK::empty()).await;
        listener
            .setsockopt::<sockopt::ReuseAddr>(&true)
            .await
            .expect("SO_REUSEADDR");
        assert!(
            listener
                .getsockopt::<sockopt::ReuseAddr>()
                .await
                .expect("get")
        );
        assert_eq!(
            listener
                .getsockopt_int(libc::SOL_SOCKET, libc::SO_REUSEADDR)
                .await
                .expect("get int"),
            1
        );
        listener.bind(&localhost(0)).await.expect("bind");
        listener.listen(4).await.expect("listen");
        let name = listener.getsockname().await.expect("getsockname");
        let bound = *name.as_in().expect("AF_INET");
        assert_eq!(bound.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(bound.port(), 0, "{label}: the kernel chose a port");

        let client = tcp(task, SOCK::empty()).await;
        client
            .setsockopt::<sockopt::TcpNoDelay>(&true)
            .await
            .expect("TCP_NODELAY");
        assert!(
            client
                .getsockopt::<sockopt::TcpNoDelay>()
                .await
                .expect("get")
        );
        client
            .setsockopt_int(libc::SOL_SOCKET, libc::SO_SNDBUF, 65536)
            .await
            .expect("SO_SNDBUF");
        assert!(client.getsockopt::<sockopt::SndBuf>().await.expect("get") >= 65536);
        client
            .setsockopt::<sockopt::RcvBuf>(&65536)
            .await
            .expect("SO_RCVBUF");
        assert!(client.getsockopt::<sockopt::RcvBuf>().await.expect("get") >= 65536);
        assert_eq!(
            client.getsockopt::<sockopt::Type>().await.expect("SO_TYPE"),
            libc::SOCK_STREAM
        );
        client.connect(&bound).await.expect("connect");
        let (server, peer) = listener.accept4_addr(SOCK::empty()).await.expect("accept");
        let client_name = client.getsockname().await.expect("client name");
        assert_eq!(peer, client_name, "{label}: accept's peer is the client");
        assert_eq!(
            server.getpeername().await.expect("getpeername"),
            client_name
        );
        assert_eq!(client.getpeername().await.expect("getpeername"), name);

        assert_eq!(
            task.sendto_bytes(&client, b"over tcp", MSG::empty(), None)
                .await
                .expect("send"),
            8
        );
        let (data, from) = task
            .recvfrom_bytes(&server, 64, MSG::empty())
            .await
            .expect("recv");
        assert_eq!(data, b"over tcp", "{label}");
        assert_eq!(from, None, "connected TCP reports no sender address");
        task.write_all_bytes(&server, b"and back")
            .await
            .expect("write");
        assert_eq!(
            task.read_bytes(&client, 64).await.expect("read"),
            b"and back"
        );
    });
}

#[test]
fn udp_sendto_recvfrom_with_peer_address() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        let udp = || task.socket(AF::INET, SockType::DGRAM, SOCK::empty(), 0);
        let (rx, tx) = (udp().await.expect("socket"), udp().await.expect("socket"));
        rx.bind(&localhost(0)).await.expect("bind rx");
        tx.bind(&localhost(0)).await.expect("bind tx");
        let rx_name = rx.getsockname().await.expect("name");
        let tx_name = tx.getsockname().await.expect("name");

        let buf = task.ptr(&b"datagram"[..]).await.expect("ptr");
        let (sent, rest) = tx
            .sendto(buf, MSG::empty(), Some(&rx_name))
            .await
            .expect("sendto");
        assert_eq!((sent.size(), rest.size()), (8, 0));
        let buf = task.malloc_bytes(32).await.expect("malloc");
        let (data, rest, from) = rx.recvfrom(buf, MSG::empty()).await.expect("recvfrom");
        assert_eq!(data.read().await.expect("read"), b"datagram", "{label}");
        assert_eq!(rest.size(), 24);
        assert_eq!(
            from.as_ref(),
            Some(&tx_name),
            "{label}: the sender's address"
        );

        // The same through sendmsg/recvmsg with msg_name.
        let part = task.ptr(&b"msg"[..]).await.expect("ptr");
        tx.sendmsg(vec![part], &[], Some(&rx_name), MSG::empty())
            .await
            .expect("sendmsg");
        let (data, msg) = task
            .recvmsg_bytes(&rx, 16, 0, MSG::empty())
            .await
            .expect("recvmsg");
        assert_eq!(data, b"msg");
        assert_eq!(msg.name, Some(tx_name), "{label}");

        // Unconnected UDP without an address has nowhere to go.
        assert_errno(
            task.sendto_bytes(&tx, b"x", MSG::empty(), None).await,
            Errno::EDESTADDRREQ,
            "sendto without an address",
        );
    });
}

#[test]
fn write_on_unconnected_tcp_socket_is_epipe() {
    let _g = serial();
    on_local_and_child(|thread: Thread, _label| async move {
        let task = thread.task();
        let sock = tcp(task, SOCK::empty()).await;
        assert_errno(
            task.sendto_bytes(&sock, b"x", MSG::empty(), None).await,
            Errno::EPIPE,
            "send on an unconnected TCP socket (MSG_NOSIGNAL)",
        );
        // write(2) has no MSG_NOSIGNAL; SIGPIPE is ignored in the test process and its
        // clone children, so this is EPIPE too.
        assert_errno(
            task.write_bytes(&sock, b"x").await,
            Errno::EPIPE,
            "write on an unconnected TCP socket",
        );
    });
}

#[test]
fn recv_on_a_pipe_is_enotsock() {
    let _g = serial();
    on_local_and_child(|thread: Thread, _label| async move {
        let task = thread.task();
        let pipe = task.pipe().await.expect("pipe");
        assert_errno(
            task.recvfrom_bytes(&pipe.read, 16, MSG::DONTWAIT).await,
            Errno::ENOTSOCK,
            "recvfrom on a pipe",
        );
        assert_errno(
            task.recvmsg_bytes(&pipe.read, 16, 64, MSG::DONTWAIT).await,
            Errno::ENOTSOCK,
            "recvmsg on a pipe",
        );
        assert_errno(
            pipe.read.getsockname().await,
            Errno::ENOTSOCK,
            "getsockname on a pipe",
        );
    });
}

#[test]
fn so_error_after_refused_nonblocking_connect() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        // A port that was just bound and released, with nothing listening on it.
        let probe = tcp(task, SOCK::empty()).await;
        probe.bind(&localhost(0)).await.expect("bind");
        let closed = *probe
            .getsockname()
            .await
            .expect("name")
            .as_in()
            .expect("AF_INET");
        probe.close().await.expect("close");

        let sock = tcp(task, SOCK::NONBLOCK).await;
        assert_eq!(
            sock.getsockopt::<sockopt::Error>().await.expect("SO_ERROR"),
            None
        );
        match sock.connect(&closed).await {
            Err(e) if e.errno() == Some(Errno::EINPROGRESS) => {}
            other => panic!("{label}: expected EINPROGRESS, got {other:?}"),
        }
        wait_writable(task, &sock).await;
        assert_eq!(
            sock.getsockopt::<sockopt::Error>().await.expect("SO_ERROR"),
            Some(Errno::ECONNREFUSED),
            "{label}"
        );
        assert_eq!(
            sock.getsockopt::<sockopt::Error>().await.expect("SO_ERROR"),
            None,
            "{label}: reading SO_ERROR clears it"
        );
    });
}

#[test]
fn bad_socket_arguments_are_refused_before_sending() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        assert_invalid(SockaddrUn::new(b"/tmp/a\0b"), "a path with a NUL");
        assert_invalid(SockaddrUn::new([b'p'; 109]), "a 109-byte path");
        assert_invalid(SockaddrUn::new(b""), "an empty path");
        assert_invalid(
            SockaddrUn::new_abstract(&[b'n'; 108]),
            "a long abstract name",
        );
        let sock = unix_stream(task).await;
        assert_invalid(sock.bind_unix(b"/tmp/a\0b").await, "bind_unix with a NUL");
        assert_invalid(
            sock.siocgifindex(b"lo\0").await,
            "an interface name with a NUL",
        );
        assert_invalid(
            sock.siocgifindex(b"sixteen-bytes-xx").await,
            "a 16-byte interface name",
        );
        let other = AnySockaddr::Other {
            family: libc::AF_UNIX as u16,
            bytes: vec![1; 200],
        };
        assert_invalid(sock.connect(&other).await, "a 200-byte address");
        assert_invalid(
            task.recvmsg_bytes(&sock, 1, usize::MAX, MSG::empty()).await,
            "a huge control buffer",
        );
        assert_invalid(
            task.sendmsg_bytes(&sock, &[b"x"], &[SendCmsg::Rights(&[])], MSG::empty())
                .await,
            "SCM_RIGHTS with no fds",
        );
        // An abstract name works (and is Linux's way around the filesystem).
        let name = format!("rsyscall-test-{}-{label}", std::process::id());
        let abs = SockaddrUn::new_abstract(name.as_bytes()).expect("abstract");
        sock.bind(&abs).await.expect("bind abstract");
        assert_eq!(
            sock.getsockname().await.expect("name"),
            AnySockaddr::Un(abs),
            "{label}"
        );
    });
}

#[test]
fn fds_of_another_table_are_refused() {
    let _g = serial();
    rsyscall_tests::tasks::run(async {
        let local = rsyscall::local_thread();
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let (a, _b) = child
            .task()
            .socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 0)
            .await
            .expect("socketpair");
        let pipe = local.task().pipe().await.expect("pipe");
        match child
            .task()
            .sendmsg_bytes(
                &a,
                &[b"x"],
                &[SendCmsg::Rights(&[&pipe.read])],
                MSG::empty(),
            )
            .await
        {
            Err(Error::Mismatch(_)) => {}
            other => panic!("expected Mismatch, got {other:?}"),
        }
        exit_cleanly(child, "child").await;
    });
}

/// Interface ioctls on a socket of `task`'s network namespace: `lo` is index 1.
async fn check_lo(task: &Task, label: &str) -> FileDescriptor {
    let sock = task
        .socket(AF::INET, SockType::DGRAM, SOCK::empty(), 0)
        .await
        .expect("socket");
    assert_eq!(
        sock.siocgifindex(b"lo").await.expect("SIOCGIFINDEX"),
        1,
        "{label}: lo is interface 1"
    );
    let flags = sock.siocgifflags(b"lo").await.expect("SIOCGIFFLAGS");
    assert!(flags.contains(IFF::LOOPBACK), "{label}: {flags:?}");
    assert_errno(
        sock.siocgifindex(b"no-such-if").await,
        Errno::ENODEV,
        "SIOCGIFINDEX of a missing interface",
    );
    sock
}

#[test]
fn siocgifindex_of_lo() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let sock = check_lo(thread.task(), label).await;
        if sock
            .siocgifflags(b"lo")
            .await
            .expect("flags")
            .contains(IFF::UP)
        {
            assert_eq!(
                sock.siocgifaddr(b"lo").await.expect("SIOCGIFADDR").ip(),
                Ipv4Addr::LOCALHOST,
                "{label}"
            );
        }
    });
}

/// A grandchild in fresh user and network namespaces.
async fn netns_child(thread: &Thread) -> rsyscall::ChildThread {
    thread
        .clone(CLONE::NEWUSER | CLONE::NEWNET)
        .await
        .expect("clone(CLONE_NEWUSER|CLONE_NEWNET)")
}

#[test]
fn interface_ioctls_in_a_fresh_network_namespace() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let child = netns_child(&thread).await;
        let task = child.task();
        let sock = check_lo(task, label).await;
        let flags = sock.siocgifflags(b"lo").await.expect("flags");
        assert!(!flags.contains(IFF::UP), "{label}: lo starts down");
        sock.siocsifflags(b"lo", flags | IFF::UP)
            .await
            .expect("SIOCSIFFLAGS up");
        assert!(
            sock.siocgifflags(b"lo")
                .await
                .expect("flags")
                .contains(IFF::UP),
            "{label}: lo is up"
        );
        assert_eq!(
            sock.siocgifaddr(b"lo").await.expect("SIOCGIFADDR").ip(),
            Ipv4Addr::LOCALHOST,
            "{label}: bringing lo up gives it 127.0.0.1"
        );
        drop(sock);
        exit_cleanly(child, "netns child").await;
    });
}

#[test]
fn tunsetiff_creates_a_tun_device() {
    let _g = serial();
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: this test needs the tun driver's device node \
         (modprobe tun, or mknod /dev/net/tun c 10 200)"
    );
    on_local_and_child(|thread: Thread, label| async move {
        let child = netns_child(&thread).await;
        let task = child.task();
        let tun = task
            .open(b"/dev/net/tun", O::RDWR, 0)
            .await
            .expect("open /dev/net/tun");
        assert_invalid(
            tun.tunsetiff(b"rsys%d", TUN::NO_PI).await,
            "neither TUN nor TAP",
        );
        let name = tun
            .tunsetiff(b"rsys%d", TUN::TUN | TUN::NO_PI)
            .await
            .expect("TUNSETIFF");
        assert!(name.starts_with(b"rsys"), "{label}: {name:?}");
        let sock = task
            .socket(AF::INET, SockType::DGRAM, SOCK::empty(), 0)
            .await
            .expect("socket");
        assert!(
            sock.siocgifindex(&name).await.expect("SIOCGIFINDEX") > 1,
            "{label}: the tun device has an index after lo"
        );
        let addr = SockaddrIn::new(Ipv4Addr::new(10, 11, 12, 13), 0);
        sock.siocsifaddr(&name, &addr).await.expect("SIOCSIFADDR");
        assert_eq!(
            sock.siocgifaddr(&name).await.expect("SIOCGIFADDR"),
            addr,
            "{label}"
        );
        let flags = sock.siocgifflags(&name).await.expect("flags");
        sock.siocsifflags(&name, flags | IFF::UP).await.expect("up");
        assert!(
            sock.siocgifflags(&name)
                .await
                .expect("flags")
                .contains(IFF::UP | IFF::POINTOPOINT),
            "{label}"
        );
        drop((sock, tun));
        exit_cleanly(child, "netns child").await;
    });
}

#[test]
fn socketpair_takes_the_arguments_of_socket() {
    let _g = serial();
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let (a, b) = task
            .socketpair(AF::UNIX, SockType::SEQPACKET, SOCK::NONBLOCK, 0)
            .await
            .expect("socketpair");
        for end in [&a, &b] {
            let fl = end.fcntl_getfl().await.expect("F_GETFL");
            assert!(fl.contains(O::NONBLOCK), "{label}: SOCK::NONBLOCK applied");
            let fd = end.fcntl_getfd().await.expect("F_GETFD");
            assert!(fd.contains(FD::CLOEXEC), "{label}: close-on-exec always");
        }
        // Nonblocking: an empty socket says EAGAIN instead of blocking.
        let buf = task.malloc_bytes(4).await.expect("malloc");
        assert_errno(a.read(buf).await, Errno::EAGAIN, "read of an empty socket");
        // The protocol is passed through: AF_UNIX knows only 0 and PF_UNIX (1).
        assert_errno(
            task.socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 2)
                .await,
            Errno::EPROTONOSUPPORT,
            "protocol 2 for AF_UNIX",
        );
        assert_errno(
            task.socketpair(AF::INET, SockType::STREAM, SOCK::empty(), 0)
                .await,
            Errno::EOPNOTSUPP,
            "a family without socketpairs",
        );
    });
}

/// `pipe2(fds, O_CLOEXEC)` sent raw, without the queued closes every method sends first:
/// the numbers of the new pipe, which no handle owns.
async fn raw_pipe(task: &Task) -> [i32; 2] {
    let out = task.ptr(&[-1i32, -1]).await.expect("room for two fds");
    let req = rsyscall::near::Request::new(
        libc::SYS_pipe2,
        [out.near().arg(), i64::from(libc::O_CLOEXEC), 0, 0, 0, 0],
    );
    // SAFETY: the pointer is a live allocation of the task's address space with room for
    // the two ints pipe2 writes; the new fds are closed by `raw_close` below.
    unsafe { task.sysif().syscall(req) }.await.expect("pipe2");
    out.read().await.expect("read the fds")
}

/// Closes fd `n` of `task`, made by [`raw_pipe`].
async fn raw_close(task: &Task, n: i32) {
    let req = rsyscall::near::Request::new(libc::SYS_close, [i64::from(n), 0, 0, 0, 0, 0]);
    // SAFETY: `n` was made by `raw_pipe` and no handle or other code owns it.
    unsafe { task.sysif().syscall(req) }.await.expect("close");
}

/// What fd `n` of process `pid` is, as /proc shows it (`None` if it is not open).
fn fd_target(pid: i32, n: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// A failing `socketpair` writes the two numbers it reserved before it failed, and frees
/// them again. Fds made at those numbers next, by anyone, are not ours to close: the
/// failure must close nothing.
#[test]
fn failed_socketpair_closes_nothing() {
    let _g = serial();
    on_local_and_child(|thread: Thread, label| async move {
        let task = thread.task();
        task.flush_closes().await.expect("flush closes");
        // Protocol 2 is refused after the kernel reserved (and wrote) the two lowest free
        // numbers.
        assert_errno(
            task.socketpair(AF::UNIX, SockType::STREAM, SOCK::empty(), 2)
                .await,
            Errno::EPROTONOSUPPORT,
            "protocol 2 for AF_UNIX",
        );
        // Another owner takes the lowest free numbers, those same two.
        let [r, w] = raw_pipe(task).await;
        // Anything the failure queued goes out now.
        task.flush_closes().await.expect("flush closes");
        let pid = task.pid().as_raw();
        for n in [r, w] {
            let target = fd_target(pid, n);
            assert!(
                target.as_deref().is_some_and(|t| t.starts_with("pipe:")),
                "{label}: fd {n} of the other owner's pipe is {target:?}"
            );
        }
        raw_close(task, r).await;
        raw_close(task, w).await;
    });
}
