//! Blocking exact reads and complete writes on the server's sockets.
//!
//! Written without slicing that could panic: a kernel that claimed to transfer more than
//! was asked would make these return `-EIO`, never index out of bounds.

use crate::sys;

/// The outcome of [`read_exact`].
pub(crate) enum ReadExact {
    /// The buffer was filled.
    Done,
    /// EOF before the first byte.
    Eof,
    /// An error (`-errno`); EOF after the first byte is `-EPIPE`.
    Err(i64),
}

/// Fills `buf` from `fd`, retrying short reads and `EINTR`. Never reads past `buf.len()`.
pub(crate) fn read_exact(fd: i32, buf: &mut [u8]) -> ReadExact {
    let mut done = 0usize;
    loop {
        let Some(rest) = buf.get_mut(done..) else {
            return ReadExact::Err(-sys::EIO);
        };
        if rest.is_empty() {
            return ReadExact::Done;
        }
        let ret = sys::read(fd, rest);
        if ret == -sys::EINTR {
            continue;
        } else if ret < 0 {
            return ReadExact::Err(ret);
        } else if ret == 0 {
            return if done == 0 {
                ReadExact::Eof
            } else {
                ReadExact::Err(-sys::EPIPE)
            };
        }
        done = done.wrapping_add(ret as usize);
    }
}

/// Writes all of `buf` to `fd` with `sendto(MSG_NOSIGNAL)`, falling back to `write` on
/// `ENOTSOCK`; returns 0 or `-errno`.
pub(crate) fn write_all(fd: i32, buf: &[u8]) -> i64 {
    Output::new(fd).write_all(buf)
}

/// An fd written to with `sendto(MSG_NOSIGNAL)`, or with `write` once it turned out not
/// to be a socket: a server writing many responses learns that once, not per response.
pub(crate) struct Output {
    fd: i32,
    use_write: bool,
}

impl Output {
    pub(crate) fn new(fd: i32) -> Output {
        Output {
            fd,
            use_write: false,
        }
    }

    /// Writes all of `buf`; returns 0 or `-errno`.
    pub(crate) fn write_all(&mut self, buf: &[u8]) -> i64 {
        let mut done = 0usize;
        loop {
            let Some(rest) = buf.get(done..) else {
                return -sys::EIO;
            };
            if rest.is_empty() {
                return 0;
            }
            let ret = if self.use_write {
                sys::write(self.fd, rest)
            } else {
                sys::send_nosignal(self.fd, rest)
            };
            if ret == -sys::ENOTSOCK && !self.use_write {
                self.use_write = true;
                continue;
            } else if ret == -sys::EINTR {
                continue;
            } else if ret < 0 {
                return ret;
            }
            done = done.wrapping_add(ret as usize);
        }
    }
}
