//! Black-box tests of the static `rsyscall-server` binary: started over a socketpair and
//! driven through the wire protocol of PROTOCOL.md (sections 1, 3 and 5).

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use rsyscall_server::proto::Request;
use rsyscall_tests::server::{ServerProcess, helper_binary, read_response, send_request};

const MSG_WAITALL: i64 = 0x100;
const MSG_NOSIGNAL: i64 = 0x4000;

/// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)` in the server.
fn remote_mmap(server: &mut ServerProcess, len: usize) -> i64 {
    let addr = server.call(
        libc::SYS_mmap,
        [
            0,
            len as i64,
            (libc::PROT_READ | libc::PROT_WRITE) as i64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as i64,
            -1,
            0,
        ],
    );
    assert!(addr > 0, "remote mmap failed: {addr}");
    addr
}

/// Writes `data` at `addr` in the server, in-band (PROTOCOL.md section 5).
fn remote_write(server: &mut ServerProcess, addr: i64, data: &[u8]) {
    let len = data.len() as i64;
    let fd = server.server_fd as i64;
    send_request(
        &mut server.sock,
        libc::SYS_recvfrom,
        [fd, addr, len, MSG_WAITALL, 0, 0],
    );
    server
        .sock
        .write_all(data)
        .expect("writing the memory data");
    assert_eq!(read_response(&mut server.sock), len);
}

/// Reads `len` bytes at `addr` in the server, in-band (PROTOCOL.md section 5).
fn remote_read(server: &mut ServerProcess, addr: i64, len: usize) -> Vec<u8> {
    let fd = server.server_fd as i64;
    send_request(
        &mut server.sock,
        libc::SYS_sendto,
        [fd, addr, len as i64, MSG_NOSIGNAL, 0, 0],
    );
    let mut data = vec![0u8; len];
    server
        .sock
        .read_exact(&mut data)
        .expect("reading the memory data");
    assert_eq!(read_response(&mut server.sock), len as i64);
    data
}

#[test]
fn symbol_table_then_getpid() {
    let mut server = ServerProcess::start(&[]);
    let s = server.symbols;
    let addrs = [s.server, s.persistent_server, s.futex_helper, s.trampoline];
    for (i, a) in addrs.iter().enumerate() {
        assert_ne!(*a, 0, "symbol {i} is null: {s:?}");
        for b in &addrs[i + 1..] {
            assert_ne!(a, b, "two symbols share an address: {s:?}");
        }
    }
    let pid = server.child.id() as i64;
    assert_eq!(server.call(libc::SYS_getpid, [0; 6]), pid);
    server.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let (status, stderr) = server.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn extra_fd_arguments_are_accepted_and_kept_open() {
    // fd 0 is /dev/null and fd 2 the stderr pipe; both just stay open.
    let mut server = ServerProcess::start(&["0", "2"]);
    let pid = server.child.id() as i64;
    assert_eq!(server.call(libc::SYS_getpid, [0; 6]), pid);
    assert_eq!(
        server.call(libc::SYS_fcntl, [0, libc::F_GETFD as i64, 0, 0, 0, 0]),
        0
    );
    server.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let (status, stderr) = server.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn request_split_over_several_writes() {
    let mut server = ServerProcess::start(&[]);
    let bytes = Request::new(libc::SYS_getpid, [0; 6]).to_bytes();
    for part in [&bytes[..10], &bytes[10..40], &bytes[40..]] {
        server.sock.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_response(&mut server.sock), server.child.id() as i64);
    // And the stream is still in step for the next request.
    assert_eq!(
        server.call(libc::SYS_getpid, [0; 6]),
        server.child.id() as i64
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut server = ServerProcess::start(&[]);
    let fd = server.server_fd as i64;
    // fcntl(fd, F_DUPFD, min) returns the lowest free fd >= min; asking for the minimums
    // 100..164 in a scrambled order makes every answer distinct and predictable.
    let mins: Vec<i64> = (0..64).map(|i| 100 + (i * 37) % 64).collect();
    let mut batch = Vec::new();
    for &min in &mins {
        batch.extend_from_slice(
            &Request::new(libc::SYS_fcntl, [fd, libc::F_DUPFD as i64, min, 0, 0, 0]).to_bytes(),
        );
    }
    server.sock.write_all(&batch).unwrap();
    for &min in &mins {
        assert_eq!(read_response(&mut server.sock), min);
    }
}

#[test]
fn errors_come_back_as_negative_errno() {
    let mut server = ServerProcess::start(&[]);
    assert_eq!(
        server.call(libc::SYS_write, [-1, 0, 0, 0, 0, 0]),
        -(libc::EBADF as i64)
    );
    assert_eq!(
        server.call(libc::SYS_close, [100_000, 0, 0, 0, 0, 0]),
        -(libc::EBADF as i64)
    );
    assert_eq!(server.call(-1, [0; 6]), -(libc::ENOSYS as i64));
    // The server carries on after errors.
    assert_eq!(
        server.call(libc::SYS_getpid, [0; 6]),
        server.child.id() as i64
    );
}

#[test]
fn eof_at_a_request_boundary_exits_0() {
    let mut server = ServerProcess::start(&[]);
    assert_eq!(
        server.call(libc::SYS_getpid, [0; 6]),
        server.child.id() as i64
    );
    let mut sock = server.sock.try_clone().unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    // The server's end closes when it exits.
    let mut rest = Vec::new();
    sock.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let (status, stderr) = server.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
}

#[test]
fn eof_inside_a_request_is_an_error() {
    let mut server = ServerProcess::start(&[]);
    let bytes = Request::new(libc::SYS_getpid, [0; 6]).to_bytes();
    server.sock.write_all(&bytes[..20]).unwrap();
    server.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let (status, stderr) = server.wait();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("errno 32"), "stderr: {stderr}");
}

#[test]
fn vanished_client_does_not_kill_the_server_with_sigpipe() {
    let mut server = ServerProcess::start(&[]);
    // A timespec of 200 ms in the server's memory, for a request that is still running
    // when the client goes away.
    let addr = remote_mmap(&mut server, 4096);
    let mut ts = Vec::new();
    ts.extend_from_slice(&0i64.to_le_bytes());
    ts.extend_from_slice(&200_000_000i64.to_le_bytes());
    remote_write(&mut server, addr, &ts);
    send_request(&mut server.sock, libc::SYS_nanosleep, [addr, 0, 0, 0, 0, 0]);
    let ServerProcess { child, sock, .. } = server;
    drop(sock);
    let mut child = child;
    let status = rsyscall_tests::server::wait_with_deadline(&mut child);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        status.signal(),
        None,
        "killed by a signal; stderr: {stderr}"
    );
    // Its response could not be delivered: EPIPE, reported, and a normal exit.
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("errno 32"), "stderr: {stderr}");
}

#[test]
fn in_band_memory_write_then_read_of_one_mib() {
    const LEN: usize = 1 << 20;
    let mut server = ServerProcess::start(&[]);
    let addr = remote_mmap(&mut server, LEN);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    remote_write(&mut server, addr, &data);
    let back = remote_read(&mut server, addr, LEN);
    assert!(
        back == data,
        "the bytes read back differ from those written"
    );
    // A request after the raw bytes is still parsed at the right place.
    assert_eq!(
        server.call(libc::SYS_getpid, [0; 6]),
        server.child.id() as i64
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let bin = helper_binary("rsyscall-server");
    let cases: &[&[&str]] = &[
        &[],
        &["3", "3"],
        &["3", "3", "x"],
        &["-1", "3", "3"],
        &["3", "3", "3", "nope"],
        &["3", "3", "99999999999"],
    ];
    for args in cases {
        let out = Command::new(&bin)
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .expect("running rsyscall-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "args {args:?}: stderr {stderr}");
        assert!(stderr.contains("usage"), "args {args:?}: stderr {stderr}");
    }
}

#[test]
fn unwritable_describe_fd_exits_1() {
    let out = Command::new(helper_binary("rsyscall-server"))
        .args(["1000", "1000", "1000"])
        .stdin(Stdio::null())
        .output()
        .expect("running rsyscall-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr {stderr}");
    assert!(stderr.contains("symbol table"), "stderr {stderr}");
}

#[test]
fn librsyscall_so_exports_the_c_entry_points() {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;

    let path = helper_binary("librsyscall.so");
    let cpath = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: loading the library runs no code of ours at load time (it has no
    // constructors of its own); the path is a NUL-terminated string.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen({}) failed", path.display());
    let lookup = |name: &str| {
        let cname = CString::new(name).unwrap();
        // SAFETY: handle is a live library handle and cname a NUL-terminated string.
        let sym = unsafe { libc::dlsym(handle, cname.as_ptr()) };
        assert!(!sym.is_null(), "{name} is not exported");
        sym
    };
    for name in [
        "rsyscall_raw_syscall",
        "rsyscall_server",
        "rsyscall_persistent_server",
        "rsyscall_trampoline",
        "rsyscall_futex_helper",
    ] {
        lookup(name);
    }

    type RawSyscall = unsafe extern "C" fn(i64, i64, i64, i64, i64, i64, i64) -> i64;
    type Server = extern "C" fn(i32, i32) -> i64;
    // SAFETY: rsyscall_raw_syscall has exactly this C signature.
    let raw: RawSyscall = unsafe { std::mem::transmute(lookup("rsyscall_raw_syscall")) };
    // SAFETY: getpid touches no memory.
    let pid = unsafe { raw(0, 0, 0, 0, 0, 0, libc::SYS_getpid) };
    assert_eq!(pid, std::process::id() as i64);

    // SAFETY: rsyscall_server has exactly this C signature.
    let server: Server = unsafe { std::mem::transmute(lookup("rsyscall_server")) };
    let (mut client, server_end) = std::os::unix::net::UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(rsyscall_tests::server::TIMEOUT))
        .unwrap();
    let fd = server_end.as_raw_fd();
    let thread = std::thread::spawn(move || server(fd, fd));
    assert_eq!(
        rsyscall_tests::server::call(&mut client, libc::SYS_getpid, [0; 6]),
        std::process::id() as i64
    );
    drop(client);
    assert_eq!(thread.join().unwrap(), 0);
    drop(server_end);
}
