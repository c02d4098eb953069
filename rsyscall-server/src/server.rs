//! The syscall server loop of PROTOCOL.md section 1 and the persistent server of section 6.

use crate::io::{Output, ReadExact, read_exact, write_all};
use crate::proto::{RESPONSE_SIZE, Request};
use crate::sys;

/// The most fds a persistent-server handshake may pass; larger counts are refused.
pub const MAX_PASSED_FDS: usize = 16;

/// Serves syscall requests read from `infd`, writing each response to `outfd`, until EOF at
/// a request boundary (returns 0) or an I/O error on either fd (returns `-errno`; EOF in
/// the middle of a request returns `-EPIPE`).
///
/// Reads exactly 56 bytes per request and never reads ahead.
// Exporting a C name is "unsafe" only because two such names could clash at link time;
// the rsyscall_ prefix is ours.
#[cfg_attr(
    rsyscall_standalone,
    allow(unsafe_code),
    unsafe(export_name = "rsyscall_server")
)]
pub extern "C" fn server(infd: i32, outfd: i32) -> i64 {
    let mut output = Output::new(outfd);
    loop {
        let mut buf = [0u8; Request::SIZE];
        match read_exact(infd, &mut buf) {
            ReadExact::Done => {}
            ReadExact::Eof => return 0,
            ReadExact::Err(e) => return e,
        }
        let req = Request::from_bytes(&buf);
        let ret = sys::request(&req);
        let out: [u8; RESPONSE_SIZE] = ret.to_le_bytes();
        let w = output.write_all(&out);
        if w < 0 {
            return w;
        }
    }
}

/// Serves like [`server`], and when the connection ends (EOF, or the client vanished) hangs
/// up and waits for a new client on `listen_fd` instead of returning (PROTOCOL.md section
/// 6). Returns only on a fatal error of `accept` (`-errno`).
///
/// At the end of each connection `infd` and `outfd` are shut down (`SHUT_RDWR`) and closed:
/// they belong to the server. Then each handshake: accept a connection on `listen_fd`, read
/// an `i32` count n (1 to [`MAX_PASSED_FDS`]), receive exactly n fds in one `SCM_RIGHTS`
/// message (close-on-exec), write back their numbers as n `i32`s, close the connection,
/// and serve on the first received fd as both input and output. A connection that sends a
/// bad count, the wrong number of fds or hangs up midway is closed (with any fds it passed)
/// and the server accepts the next one.
#[cfg_attr(
    rsyscall_standalone,
    allow(unsafe_code),
    unsafe(export_name = "rsyscall_persistent_server")
)]
pub extern "C" fn persistent_server(infd: i32, outfd: i32, listen_fd: i32) -> i64 {
    let mut infd = infd;
    let mut outfd = outfd;
    loop {
        // Whatever ended the connection, the server outlives its client.
        let _ = server(infd, outfd);
        hang_up(infd, outfd);
        match accept_client(listen_fd) {
            Ok(fd) => {
                infd = fd;
                outfd = fd;
            }
            Err(e) => return e,
        }
    }
}

/// Shuts down and closes the fds of a finished connection (owned by the server).
fn hang_up(infd: i32, outfd: i32) {
    sys::shutdown_rdwr(infd);
    sys::close(infd);
    if outfd != infd {
        sys::shutdown_rdwr(outfd);
        sys::close(outfd);
    }
}

/// Accepts connections on `listen_fd` until one completes the handshake; returns the fd to
/// serve on, or `-errno` if `accept` fails for a reason other than `EINTR` or
/// `ECONNABORTED`.
fn accept_client(listen_fd: i32) -> Result<i32, i64> {
    loop {
        let conn = sys::accept_cloexec(listen_fd);
        if conn == -sys::EINTR || conn == -sys::ECONNABORTED {
            continue;
        } else if conn < 0 {
            return Err(conn);
        }
        let conn = conn as i32;
        let fd = handshake(conn);
        // The accepted connection is ours alone.
        sys::close(conn);
        if let Some(fd) = fd {
            return Ok(fd);
        }
    }
}

/// Runs the handshake on an accepted connection; returns the first received fd, or `None`
/// (having closed every fd received) if the client broke the protocol or went away.
fn handshake(conn: i32) -> Option<i32> {
    let mut count = [0u8; 4];
    match read_exact(conn, &mut count) {
        ReadExact::Done => {}
        ReadExact::Eof | ReadExact::Err(_) => return None,
    }
    let n = i32::from_le_bytes(count);
    if n < 1 || n as usize > MAX_PASSED_FDS {
        return None;
    }
    let n = n as usize;
    let mut fds = [-1i32; MAX_PASSED_FDS];
    if !receive_fds(conn, n, &mut fds) {
        return None;
    }
    let mut reply = [0u8; 4 * MAX_PASSED_FDS];
    for (chunk, fd) in reply.chunks_exact_mut(4).zip(fds.iter()).take(n) {
        let [b0, b1, b2, b3] = fd.to_le_bytes();
        if let [c0, c1, c2, c3] = chunk {
            *c0 = b0;
            *c1 = b1;
            *c2 = b2;
            *c3 = b3;
        }
    }
    let written = match reply.get(..n.wrapping_mul(4)) {
        Some(bytes) => write_all(conn, bytes),
        None => -sys::EIO,
    };
    if written < 0 {
        close_all(fds.iter().take(n));
        return None;
    }
    Some(fds[0])
}

/// Closes the given fds (received by the server, so owned by it).
pub(crate) fn close_all<'a>(fds: impl Iterator<Item = &'a i32>) {
    for &fd in fds {
        if fd >= 0 {
            sys::close(fd);
        }
    }
}

/// `CMSG_SPACE(4 * MAX_PASSED_FDS)`: room for one `SCM_RIGHTS` message of the most fds.
const CONTROL_LEN: usize = CMSG_HDR_LEN + 4 * MAX_PASSED_FDS;
/// `sizeof(struct cmsghdr)` on x86-64: `size_t len; int level; int type;`.
const CMSG_HDR_LEN: usize = 16;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;

/// A control-message buffer with the alignment of `struct cmsghdr`.
#[repr(C, align(8))]
struct ControlBuf([u8; CONTROL_LEN]);

/// Receives the 1-byte message carrying exactly `n` fds into `fds[..n]`. On any deviation
/// (EOF, an error, truncated control data, a different number of fds) closes whatever fds
/// arrived and returns false.
pub(crate) fn receive_fds(conn: i32, n: usize, fds: &mut [i32; MAX_PASSED_FDS]) -> bool {
    let mut byte = [0u8; 1];
    let mut control = ControlBuf([0u8; CONTROL_LEN]);
    // CMSG_SPACE(4n): the header plus the fds, rounded up to 8 bytes.
    let space = CMSG_HDR_LEN.wrapping_add(n.wrapping_mul(4).wrapping_add(7) & !7);
    let Some(control_bytes) = control.0.get_mut(..space) else {
        return false;
    };
    let got = loop {
        let got = sys::recvmsg_cloexec(conn, &mut byte, control_bytes);
        if got.ret != -sys::EINTR {
            break got;
        }
    };
    let received = collect_fds(&control.0, got.controllen, fds);
    if got.ret != 1 || got.ctrunc || received != n {
        close_all(fds.iter().take(received));
        return false;
    }
    true
}

/// Sends `fds` (at most [`MAX_PASSED_FDS`]) over `conn` as the protocol does: one
/// message with a 1-byte payload and a single `SCM_RIGHTS` control message (section 3).
/// Returns 0 or `-errno` (`-EINVAL` for no fds or too many, `-EIO` for a short send).
pub(crate) fn send_fds(conn: i32, fds: &[i32]) -> i64 {
    if fds.is_empty() || fds.len() > MAX_PASSED_FDS {
        return -sys::EINVAL;
    }
    let data_len = fds.len().wrapping_mul(4);
    // CMSG_LEN(4n) in the header; CMSG_SPACE(4n) of buffer.
    let cmsg_len = CMSG_HDR_LEN.wrapping_add(data_len);
    let space = CMSG_HDR_LEN.wrapping_add(data_len.wrapping_add(7) & !7);
    let mut control = ControlBuf([0u8; CONTROL_LEN]);
    put_bytes(&mut control.0, 0, &(cmsg_len as u64).to_le_bytes());
    put_bytes(&mut control.0, 8, &SOL_SOCKET.to_le_bytes());
    put_bytes(&mut control.0, 12, &SCM_RIGHTS.to_le_bytes());
    for (i, fd) in fds.iter().enumerate() {
        put_bytes(
            &mut control.0,
            CMSG_HDR_LEN.wrapping_add(i.wrapping_mul(4)),
            &fd.to_le_bytes(),
        );
    }
    let Some(control) = control.0.get(..space) else {
        return -sys::EINVAL;
    };
    loop {
        let ret = sys::sendmsg_nosignal(conn, &[0u8], control);
        if ret == -sys::EINTR {
            continue;
        }
        return match ret {
            1 => 0,
            r if r < 0 => r,
            _ => -sys::EIO,
        };
    }
}

/// Copies `src` into `buf` at `at`, if it fits (callers only write within the buffer).
fn put_bytes(buf: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at.wrapping_add(src.len())) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// Walks the control messages in `control[..len]` and stores the fds of every
/// `SCM_RIGHTS` message in `fds`, closing any beyond its capacity; returns how many were
/// stored.
fn collect_fds(control: &[u8], len: usize, fds: &mut [i32; MAX_PASSED_FDS]) -> usize {
    let Some(control) = control.get(..len) else {
        return 0;
    };
    let mut stored = 0usize;
    let mut offset = 0usize;
    while let Some(header) = control.get(offset..offset.wrapping_add(CMSG_HDR_LEN)) {
        let (Some(cmsg_len), Some(level), Some(kind)) = (
            read_u64(header, 0),
            read_i32(header, 8),
            read_i32(header, 12),
        ) else {
            break;
        };
        let cmsg_len = cmsg_len as usize;
        if cmsg_len < CMSG_HDR_LEN {
            break;
        }
        let Some(data) =
            control.get(offset.wrapping_add(CMSG_HDR_LEN)..offset.wrapping_add(cmsg_len))
        else {
            break;
        };
        if level == SOL_SOCKET && kind == SCM_RIGHTS {
            for chunk in data.chunks_exact(4) {
                let Some(fd) = read_i32(chunk, 0) else {
                    continue;
                };
                match fds.get_mut(stored) {
                    Some(slot) => {
                        *slot = fd;
                        stored = stored.wrapping_add(1);
                    }
                    // More fds than any valid handshake: not ours to keep.
                    None => {
                        sys::close(fd);
                    }
                }
            }
        }
        // CMSG_NXTHDR: the next header starts at the 8-byte aligned end of this one.
        offset = offset.wrapping_add(cmsg_len.wrapping_add(7) & !7);
    }
    stored
}

/// The little-endian `u64` at `bytes[at..at + 8]`, if it is in bounds.
fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.wrapping_add(8))?;
    let b: [u8; 8] = b.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// The little-endian `i32` at `bytes[at..at + 4]`, if it is in bounds.
fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let b = bytes.get(at..at.wrapping_add(4))?;
    let b: [u8; 4] = b.try_into().ok()?;
    Some(i32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_fds_parses_one_scm_rights_message() {
        let mut control = [0u8; CONTROL_LEN];
        control[..8].copy_from_slice(&(16u64 + 8).to_le_bytes());
        control[8..12].copy_from_slice(&SOL_SOCKET.to_le_bytes());
        control[12..16].copy_from_slice(&SCM_RIGHTS.to_le_bytes());
        control[16..20].copy_from_slice(&7i32.to_le_bytes());
        control[20..24].copy_from_slice(&9i32.to_le_bytes());
        let mut fds = [-1; MAX_PASSED_FDS];
        assert_eq!(collect_fds(&control, 24, &mut fds), 2);
        assert_eq!(&fds[..2], &[7, 9]);
    }

    #[test]
    fn send_fds_reaches_receive_fds() {
        extern crate std;
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;

        let (a, b) = UnixStream::pair().unwrap();
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        assert_eq!(send_fds(a.as_raw_fd(), &[theirs.as_raw_fd()]), 0);
        drop(theirs);
        let mut fds = [-1; MAX_PASSED_FDS];
        assert!(receive_fds(b.as_raw_fd(), 1, &mut fds));
        let received = fds[0];
        assert_eq!(sys::write(received, b"x"), 1);
        let mut byte = [0u8; 1];
        ours.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        // Counts the protocol does not allow are refused without a syscall.
        assert_eq!(send_fds(a.as_raw_fd(), &[]), -sys::EINVAL);
        assert_eq!(
            send_fds(a.as_raw_fd(), &[0; MAX_PASSED_FDS + 1]),
            -sys::EINVAL
        );
        // Two fds where one is expected: refused, and the receiver closes both.
        assert_eq!(send_fds(a.as_raw_fd(), &[received, received]), 0);
        assert!(!receive_fds(b.as_raw_fd(), 1, &mut fds));
        assert_eq!(sys::close(received), 0);
    }

    #[test]
    fn collect_fds_ignores_garbage() {
        let mut fds = [-1; MAX_PASSED_FDS];
        // Too short for a header.
        assert_eq!(collect_fds(&[0u8; 8], 8, &mut fds), 0);
        // A length shorter than the header.
        let mut control = [0u8; 32];
        control[..8].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(collect_fds(&control, 32, &mut fds), 0);
        // A length past the end.
        control[..8].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(collect_fds(&control, 32, &mut fds), 0);
        // len larger than the buffer.
        assert_eq!(collect_fds(&control, 64, &mut fds), 0);
    }
}
