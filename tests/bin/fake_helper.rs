//! A fake stdin bootstrap helper for `tests/bootstrap.rs`: started by a launcher with the
//! helper's three fds on its stdin, as the real one is, it then misbehaves as
//! `$RSYSCALL_TEST_FAKE_HELPER` says (a truncated or malformed describe struct, an
//! impossible string count, a truncated string, or silence while staying alive), so the
//! client's handling of bad peers is tested against a real process.

/// The environment variable saying how to misbehave.
const FAKE: &str = "RSYSCALL_TEST_FAKE_HELPER";

fn main() {
    let mode = std::env::var(FAKE).expect("RSYSCALL_TEST_FAKE_HELPER must say how to misbehave");
    let fds = recv_fds(0, 3);
    let data = fds[1];
    let write = |bytes: &[u8]| {
        // SAFETY: writes `bytes` to an fd we received.
        let n = unsafe { libc::write(data, bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    };
    let mut describe = [0u8; 64];
    describe[32..36].copy_from_slice(&1234i32.to_le_bytes());
    describe[36..40].copy_from_slice(&3i32.to_le_bytes());
    describe[40..44].copy_from_slice(&4i32.to_le_bytes());
    describe[48..52].copy_from_slice(&5i32.to_le_bytes());
    match mode.as_str() {
        "truncated" => write(&describe[..20]),
        "malformed" => {
            describe[32..36].copy_from_slice(&(-1i32).to_le_bytes());
            write(&describe);
        }
        "same-fds" => {
            describe[40..44].copy_from_slice(&3i32.to_le_bytes());
            write(&describe);
        }
        "huge-env" => {
            describe[56..64].copy_from_slice(&(1u64 << 40).to_le_bytes());
            write(&describe);
        }
        "truncated-env" => {
            describe[56..64].copy_from_slice(&2u64.to_le_bytes());
            write(&describe);
            write(&5u64.to_le_bytes());
            write(b"A=");
        }
        // Nothing at all, while staying alive: the caller must kill us.
        "silent" => {
            for fd in fds {
                // SAFETY: closes fds we received and own.
                unsafe { libc::close(fd) };
            }
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        other => panic!("unknown mode {other}"),
    }
    std::process::exit(0);
}

/// Receives one message carrying exactly `n` fds on `sock`.
fn recv_fds(sock: i32, n: usize) -> Vec<i32> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((4 * n) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg points at live locals of the sizes given.
    let ret = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    assert_eq!(ret, 1, "recvmsg");
    // SAFETY: the kernel wrote one SCM_RIGHTS header with n fds into `control`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null());
        let data = libc::CMSG_DATA(cmsg).cast::<i32>();
        (0..n).map(|i| data.add(i).read_unaligned()).collect()
    }
}
