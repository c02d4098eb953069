//! Building `struct msghdr` with one `SCM_RIGHTS` control message, and parsing it back.

use rsyscall_near::Address;

use crate::error::{Error, Result};
use crate::memory::Allocation;
use crate::task::Task;

const MSGHDR: usize = std::mem::size_of::<libc::msghdr>();
const IOVEC: usize = std::mem::size_of::<libc::iovec>();
const CMSGHDR: usize = std::mem::size_of::<libc::cmsghdr>();
/// Most fds one `SCM_RIGHTS` message may carry (`SCM_MAX_FD` in the kernel).
pub(crate) const MAX_FDS: usize = 253;

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Lays out, in one allocation: the msghdr, one iovec over a one-byte payload, and a
/// control buffer with one `SCM_RIGHTS` message carrying `fds`. For receiving, the fds
/// are placeholders and only their count matters. Returns the msghdr's address.
pub(crate) async fn build_msghdr(
    task: &Task,
    fds: &[i32],
    receiving: bool,
) -> Result<(Address, Allocation)> {
    if fds.is_empty() || fds.len() > MAX_FDS {
        return Err(Error::invalid(
            if receiving { "recv_fds" } else { "send_fds" },
            format!(
                "{} fds: between 1 and {MAX_FDS} can pass in one message",
                fds.len()
            ),
        ));
    }
    let data_len = 4 * fds.len();
    let cmsg_len = CMSGHDR + data_len;
    let control_len = CMSGHDR + align8(data_len);
    let iov_off = MSGHDR;
    let payload_off = iov_off + IOVEC;
    let control_off = align8(payload_off + 1);
    let total = control_off + control_len;
    let buf = task.alloc(total, 8).await?;
    let base = buf.addr().as_u64();

    let mut bytes = vec![0u8; total];
    let put = |bytes: &mut [u8], off: usize, v: &[u8]| bytes[off..off + v.len()].copy_from_slice(v);
    // struct msghdr { name, namelen, iov, iovlen, control, controllen, flags }
    put(&mut bytes, 16, &(base + iov_off as u64).to_ne_bytes());
    put(&mut bytes, 24, &1u64.to_ne_bytes());
    put(&mut bytes, 32, &(base + control_off as u64).to_ne_bytes());
    put(&mut bytes, 40, &(control_len as u64).to_ne_bytes());
    // struct iovec { base, len }
    put(
        &mut bytes,
        iov_off,
        &(base + payload_off as u64).to_ne_bytes(),
    );
    put(&mut bytes, iov_off + 8, &1u64.to_ne_bytes());
    // struct cmsghdr { len, level, type } then the fds
    put(&mut bytes, control_off, &(cmsg_len as u64).to_ne_bytes());
    put(&mut bytes, control_off + 8, &libc::SOL_SOCKET.to_ne_bytes());
    put(
        &mut bytes,
        control_off + 12,
        &libc::SCM_RIGHTS.to_ne_bytes(),
    );
    if !receiving {
        for (i, fd) in fds.iter().enumerate() {
            put(&mut bytes, control_off + CMSGHDR + 4 * i, &fd.to_ne_bytes());
        }
    }
    buf.write(0, &bytes).await?;
    Ok((buf.addr(), buf))
}

/// The fds a `recvmsg` into a buffer from [`build_msghdr`] received.
pub(crate) async fn parse_fds(buf: &Allocation) -> Result<Vec<i32>> {
    let hdr = buf.read(0, MSGHDR).await?;
    let word = |b: &[u8], off: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[off..off + 8]);
        u64::from_ne_bytes(w)
    };
    let control = word(&hdr, 32);
    let controllen = word(&hdr, 40) as usize;
    if controllen < CMSGHDR || control < buf.addr().as_u64() {
        return Ok(Vec::new());
    }
    let off = (control - buf.addr().as_u64()) as usize;
    let cmsg = buf
        .read(off, controllen.min(buf.len().saturating_sub(off)))
        .await?;
    if cmsg.len() < CMSGHDR {
        return Ok(Vec::new());
    }
    let len = word(&cmsg, 0) as usize;
    let level = i32::from_ne_bytes([cmsg[8], cmsg[9], cmsg[10], cmsg[11]]);
    let ty = i32::from_ne_bytes([cmsg[12], cmsg[13], cmsg[14], cmsg[15]]);
    if level != libc::SOL_SOCKET || ty != libc::SCM_RIGHTS || len < CMSGHDR || len > cmsg.len() {
        return Ok(Vec::new());
    }
    Ok(cmsg[CMSGHDR..len]
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn layout_matches_libc() {
        assert_eq!(MSGHDR, 56);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_iov), 16);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_iovlen), 24);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_control), 32);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_controllen), 40);
        assert_eq!(CMSGHDR, 16);
        // SAFETY: CMSG_LEN/CMSG_SPACE are pure arithmetic.
        let (l, s) = unsafe { (libc::CMSG_LEN(12), libc::CMSG_SPACE(12)) };
        assert_eq!(l as usize, CMSGHDR + 12);
        assert_eq!(s as usize, CMSGHDR + align8(12));
    }
}
