//! `Errno`: an error number decoded straight from the kernel's return register.

use std::fmt;

/// An error number returned by the kernel (`1..=4095`).
///
/// Decoded directly from a raw return value in `-4095..=-1`; there is no thread-local
/// `errno` anywhere in this crate.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(u16);

impl Errno {
    /// Decodes a raw kernel return value: `Err` for `-4095..=-1`, `Ok` otherwise.
    #[inline]
    pub fn from_ret(ret: i64) -> Result<i64, Errno> {
        if (-4095..=-1).contains(&ret) {
            Err(Errno((-ret) as u16))
        } else {
            Ok(ret)
        }
    }

    /// The errno with number `n`, if `n` is in `1..=4095`.
    pub fn from_raw(n: i32) -> Option<Errno> {
        if (1..=4095).contains(&n) {
            Some(Errno(n as u16))
        } else {
            None
        }
    }

    /// The error number.
    #[inline]
    pub const fn raw(self) -> i32 {
        self.0 as i32
    }

    /// The symbolic name, such as `"ENOENT"`, or `"E???"` for a number with no name.
    pub fn name(self) -> &'static str {
        let name = NAMES.iter().find(|(n, _)| n.0 == self.0).map(|(_, s)| *s);
        name.unwrap_or("E???")
    }

    /// The human-readable message, such as `"No such file or directory"`.
    pub fn message(self) -> &'static str {
        nix::errno::Errno::from_raw(self.raw()).desc()
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.0, self.message())
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.raw())
    }
}

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno(libc::$name as u16);
            )*
        }
        const NAMES: &[(Errno, &str)] = &[$((Errno::$name, stringify!($name)),)*];
    };
}

errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    ENXIO,
    E2BIG,
    ENOEXEC,
    EBADF,
    ECHILD,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    ENOTBLK,
    EBUSY,
    EEXIST,
    EXDEV,
    ENODEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    ENFILE,
    EMFILE,
    ENOTTY,
    ETXTBSY,
    EFBIG,
    ENOSPC,
    ESPIPE,
    EROFS,
    EMLINK,
    EPIPE,
    EDOM,
    ERANGE,
    EDEADLK,
    ENAMETOOLONG,
    ENOLCK,
    ENOSYS,
    ENOTEMPTY,
    ELOOP,
    ENOMSG,
    EIDRM,
    ECHRNG,
    EL2NSYNC,
    EL3HLT,
    EL3RST,
    ELNRNG,
    EUNATCH,
    ENOCSI,
    EL2HLT,
    EBADE,
    EBADR,
    EXFULL,
    ENOANO,
    EBADRQC,
    EBADSLT,
    EBFONT,
    ENOSTR,
    ENODATA,
    ETIME,
    ENOSR,
    ENONET,
    ENOPKG,
    EREMOTE,
    ENOLINK,
    EADV,
    ESRMNT,
    ECOMM,
    EPROTO,
    EMULTIHOP,
    EDOTDOT,
    EBADMSG,
    EOVERFLOW,
    ENOTUNIQ,
    EBADFD,
    EREMCHG,
    ELIBACC,
    ELIBBAD,
    ELIBSCN,
    ELIBMAX,
    ELIBEXEC,
    EILSEQ,
    ERESTART,
    ESTRPIPE,
    EUSERS,
    ENOTSOCK,
    EDESTADDRREQ,
    EMSGSIZE,
    EPROTOTYPE,
    ENOPROTOOPT,
    EPROTONOSUPPORT,
    ESOCKTNOSUPPORT,
    EOPNOTSUPP,
    EPFNOSUPPORT,
    EAFNOSUPPORT,
    EADDRINUSE,
    EADDRNOTAVAIL,
    ENETDOWN,
    ENETUNREACH,
    ENETRESET,
    ECONNABORTED,
    ECONNRESET,
    ENOBUFS,
    EISCONN,
    ENOTCONN,
    ESHUTDOWN,
    ETOOMANYREFS,
    ETIMEDOUT,
    ECONNREFUSED,
    EHOSTDOWN,
    EHOSTUNREACH,
    EALREADY,
    EINPROGRESS,
    ESTALE,
    EUCLEAN,
    ENOTNAM,
    ENAVAIL,
    EISNAM,
    EREMOTEIO,
    EDQUOT,
    ENOMEDIUM,
    EMEDIUMTYPE,
    ECANCELED,
    ENOKEY,
    EKEYEXPIRED,
    EKEYREVOKED,
    EKEYREJECTED,
    EOWNERDEAD,
    ENOTRECOVERABLE,
    ERFKILL,
    EHWPOISON,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_negative_returns() {
        assert_eq!(Errno::from_ret(-2), Err(Errno::ENOENT));
        assert_eq!(Errno::from_ret(-4096), Ok(-4096));
        assert_eq!(Errno::from_ret(0), Ok(0));
        assert_eq!(Errno::from_ret(7), Ok(7));
    }

    #[test]
    fn display_has_name_and_message() {
        let s = Errno::EBADF.to_string();
        assert!(s.starts_with("EBADF (9): "), "{s}");
        assert!(s.contains("Bad file"), "{s}");
        assert_eq!(format!("{:?}", Errno::ENOENT), "ENOENT");
        assert_eq!(Errno::from_raw(4000).map(Errno::name), Some("E???"));
        assert_eq!(Errno::from_raw(0), None);
    }
}
