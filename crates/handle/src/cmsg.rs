//! Control messages: encoding and parsing the control buffers of `sendmsg`/`recvmsg`.

use rsyscall_near as near;

use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::structs::{Cmsg, Cmsghdr, SendCmsg, Struct, Ucred, pod_bytes, pod_from_bytes};
use crate::task::Task;

const CMSGHDR: usize = std::mem::size_of::<libc::cmsghdr>();
/// Most fds one `SCM_RIGHTS` message may carry (`SCM_MAX_FD` in the kernel).
pub(crate) const MAX_FDS: usize = 253;

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Encodes `msgs` as a control buffer, checking that their fds belong to `task`'s table.
///
/// # Errors
/// [`Error::Mismatch`] for an fd of another table; [`Error::InvalidArgument`] for an
/// `SCM_RIGHTS` message with no fds or more than [`MAX_FDS`].
pub(crate) fn encode(task: &Task, msgs: &[SendCmsg<'_>]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for msg in msgs {
        let (ty, data) = match msg {
            SendCmsg::Rights(fds) => {
                if fds.is_empty() || fds.len() > MAX_FDS {
                    return Err(Error::invalid(
                        "sendmsg",
                        format!(
                            "SCM_RIGHTS with {} fds: between 1 and {MAX_FDS} can pass in one \
                             message",
                            fds.len()
                        ),
                    ));
                }
                let mut data = Vec::with_capacity(4 * fds.len());
                for fd in fds.iter() {
                    data.extend_from_slice(&task.check_fd(fd)?.as_raw().to_ne_bytes());
                }
                (libc::SCM_RIGHTS, data)
            }
            SendCmsg::Credentials(cred) => (libc::SCM_CREDENTIALS, pod_bytes(cred)),
        };
        let hdr = Cmsghdr {
            len: (CMSGHDR + data.len()) as u64,
            level: libc::SOL_SOCKET,
            ty,
        };
        out.extend_from_slice(&pod_bytes(&hdr));
        out.extend_from_slice(&data);
        out.resize(out.len() + align8(data.len()) - data.len(), 0);
    }
    Ok(out)
}

/// One control message as the kernel wrote it: fds in `SCM_RIGHTS` data are raw numbers
/// not yet owned by anything.
#[derive(Debug)]
pub(crate) struct RawCmsg {
    level: i32,
    ty: i32,
    data: Vec<u8>,
}

/// The control buffer `recvmsg` filled: read it once, through a
/// [`LinearPointer`](crate::LinearPointer), then give its fds to handles with [`own`].
pub(crate) struct ControlBuffer;

impl Struct for ControlBuffer {
    type Owned = Vec<RawCmsg>;

    fn to_bytes(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Parses every complete header in the `msg_controllen` bytes; a message whose data is
    /// cut short keeps what is there (for `SCM_RIGHTS`, the fds the kernel installed).
    fn from_bytes(bytes: &[u8]) -> Result<Vec<RawCmsg>> {
        let mut out = Vec::new();
        let mut off = 0;
        while off + CMSGHDR <= bytes.len() {
            let hdr: Cmsghdr = pod_from_bytes(&bytes[off..])?;
            let len = usize::try_from(hdr.len).unwrap_or(usize::MAX);
            if len < CMSGHDR {
                break;
            }
            let end = off.saturating_add(len).min(bytes.len());
            out.push(RawCmsg {
                level: hdr.level,
                ty: hdr.ty,
                data: bytes[off + CMSGHDR..end].to_vec(),
            });
            off = off.saturating_add(align8(len));
        }
        Ok(out)
    }
}

/// Turns raw control messages into [`Cmsg`]s: every fd of every `SCM_RIGHTS` message
/// becomes an owning handle of `task`'s table, exactly once.
pub(crate) fn own(task: &Task, raw: Vec<RawCmsg>) -> Vec<Cmsg> {
    raw.into_iter()
        .map(|m| match (m.level, m.ty) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => Cmsg::Rights(
                m.data
                    .chunks_exact(4)
                    .map(|c| {
                        task.own(near::FileDescriptor::new(i32::from_ne_bytes([
                            c[0], c[1], c[2], c[3],
                        ])))
                    })
                    .collect(),
            ),
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => match pod_from_bytes::<Ucred>(&m.data) {
                Ok(cred) => Cmsg::Credentials(cred),
                Err(_) => Cmsg::Other {
                    level: m.level,
                    ty: m.ty,
                    data: m.data,
                },
            },
            _ => Cmsg::Other {
                level: m.level,
                ty: m.ty,
                data: m.data,
            },
        })
        .collect()
}

/// Closes every fd received in `msgs` (after an error), returning how many there were.
pub(crate) async fn close_all(msgs: Vec<Cmsg>) -> usize {
    let mut n = 0;
    for msg in msgs {
        if let Cmsg::Rights(fds) = msg {
            for fd in fds {
                n += 1;
                close_logged(fd).await;
            }
        }
    }
    n
}

async fn close_logged(fd: FileDescriptor) {
    if let Err(e) = fd.close().await {
        log::debug!("closing a received fd failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn layout_matches_libc() {
        assert_eq!(std::mem::size_of::<libc::msghdr>(), 56);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_iov), 16);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_iovlen), 24);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_control), 32);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_controllen), 40);
        assert_eq!(CMSGHDR, 16);
        // SAFETY: CMSG_LEN/CMSG_SPACE are pure arithmetic.
        let (l, s) = unsafe { (libc::CMSG_LEN(12), libc::CMSG_SPACE(12)) };
        assert_eq!(l as usize, CMSGHDR + 12);
        assert_eq!(s as usize, CMSGHDR + align8(12));
        assert_eq!(crate::structs::cmsg_space(12), s as usize);
    }

    #[test]
    fn control_buffer_parses_every_message() {
        let cred = Ucred {
            pid: 1,
            uid: 2,
            gid: 3,
        };
        let mut bytes = Vec::new();
        for (ty, data) in [
            (libc::SCM_CREDENTIALS, pod_bytes(&cred)),
            (
                libc::SCM_RIGHTS,
                [7i32, 9].iter().flat_map(|f| f.to_ne_bytes()).collect(),
            ),
        ] {
            let hdr = Cmsghdr {
                len: (CMSGHDR + data.len()) as u64,
                level: libc::SOL_SOCKET,
                ty,
            };
            bytes.extend_from_slice(&pod_bytes(&hdr));
            bytes.extend_from_slice(&data);
            bytes.resize(bytes.len() + align8(data.len()) - data.len(), 0);
        }
        let raw = ControlBuffer::from_bytes(&bytes).expect("parse");
        assert_eq!(raw.len(), 2);
        assert_eq!(raw[0].ty, libc::SCM_CREDENTIALS);
        assert_eq!(raw[0].data, pod_bytes(&cred));
        assert_eq!(raw[1].data.len(), 8);
        // A header claiming less than itself ends the parse; a cut message keeps its bytes.
        let cut = ControlBuffer::from_bytes(&bytes[..bytes.len() - 4]).expect("parse");
        assert_eq!(cut[1].data.len(), 4);
        assert!(
            ControlBuffer::from_bytes(&[0; 16])
                .expect("parse")
                .is_empty()
        );
    }
}
