//! Structs of the identity syscalls: rlimit, cpu_set, capability header and data.

use rsyscall_near::Capability;

use crate::error::{Error, Result};

/// `struct rlimit64`: a soft and a hard limit; [`Rlimit::INFINITY`] is no limit.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Rlimit {
    /// `rlim_cur`: the soft limit, enforced.
    pub cur: u64,
    /// `rlim_max`: the hard limit, the ceiling for the soft one.
    pub max: u64,
}

// repr(C): two u64s, no padding, every bit pattern valid.
pod!(Rlimit { cur, max }, 16);

impl Rlimit {
    /// `RLIM_INFINITY`.
    pub const INFINITY: u64 = u64::MAX;

    /// A limit from signed values, as from a language or file that uses them: `None`
    /// stands for [`Rlimit::INFINITY`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative value, which the kernel would read as a
    /// huge one (`-1` is `RLIM_INFINITY`), or a soft limit above the hard one.
    pub fn from_signed(cur: Option<i64>, max: Option<i64>) -> Result<Rlimit> {
        let conv = |what: &str, v: Option<i64>| match v {
            None => Ok(Rlimit::INFINITY),
            Some(v) => u64::try_from(v).map_err(|_| {
                Error::invalid(
                    "Rlimit::from_signed",
                    format!("negative {what} limit {v}; use None for no limit"),
                )
            }),
        };
        let r = Rlimit {
            cur: conv("soft", cur)?,
            max: conv("hard", max)?,
        };
        r.validate("Rlimit::from_signed")?;
        Ok(r)
    }

    /// Checks that the soft limit is not above the hard one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `what` otherwise.
    pub fn validate(&self, what: &'static str) -> Result<()> {
        if self.cur > self.max {
            return Err(Error::invalid(
                what,
                format!("soft limit {} is above hard limit {}", self.cur, self.max),
            ));
        }
        Ok(())
    }
}

/// A CPU set of 1024 CPUs, libc's `cpu_set_t` (128 bytes): bit `n` stands for CPU `n`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct CpuSet {
    /// The mask words, CPU `n` at bit `n % 64` of word `n / 64`.
    pub bits: [u64; 16],
}

// repr(C): an array of u64, every bit pattern valid.
pod!(CpuSet { bits }, 128);

impl CpuSet {
    /// How many CPUs the set can name.
    pub const CAPACITY: usize = 1024;
    /// Size in bytes.
    pub const SIZE: usize = 128;

    /// The empty set.
    pub const fn empty() -> Self {
        CpuSet { bits: [0; 16] }
    }

    /// The set holding only `cpu`.
    ///
    /// # Errors
    /// As [`CpuSet::insert`].
    pub fn single(cpu: usize) -> Result<Self> {
        let mut s = CpuSet::empty();
        s.insert(cpu)?;
        Ok(s)
    }

    /// Adds `cpu`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `cpu` is not below [`CpuSet::CAPACITY`]: the kernel
    /// reads only this many bits.
    pub fn insert(&mut self, cpu: usize) -> Result<()> {
        if cpu >= Self::CAPACITY {
            return Err(Error::invalid(
                "CpuSet::insert",
                format!("CPU {cpu} does not fit a set of {} CPUs", Self::CAPACITY),
            ));
        }
        self.bits[cpu / 64] |= 1 << (cpu % 64);
        Ok(())
    }

    /// Removes `cpu` (nothing if it cannot be in the set).
    pub fn remove(&mut self, cpu: usize) {
        if cpu < Self::CAPACITY {
            self.bits[cpu / 64] &= !(1 << (cpu % 64));
        }
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < Self::CAPACITY && self.bits[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// The CPUs in the set, in increasing order.
    pub fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        (0..Self::CAPACITY).filter(|&c| self.contains(c))
    }

    /// How many CPUs are in the set.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`, the version [`CapHeader`] uses.
pub const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`: a version and the thread the call is about.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct CapHeader {
    /// The version, [`CAPABILITY_VERSION_3`] (the kernel writes its own on a mismatch).
    pub version: u32,
    /// The thread (0: the caller).
    pub pid: i32,
}

// repr(C): two 32-bit integers, no padding, every bit pattern valid.
pod!(CapHeader { version, pid }, 8);

/// `struct __user_cap_data_struct`: 32 capability bits of each set; version 3 uses two
/// (capabilities 0-31, then 32-63).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct CapData {
    /// Effective capabilities.
    pub effective: u32,
    /// Permitted capabilities.
    pub permitted: u32,
    /// Inheritable capabilities.
    pub inheritable: u32,
}

// repr(C): three u32s, no padding, every bit pattern valid.
pod!(
    CapData {
        effective,
        permitted,
        inheritable
    },
    12
);

/// A version 3 header followed by its two data structs, so that `capget`/`capset` need
/// a single allocation.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct CapBuffer {
    /// The header.
    pub header: CapHeader,
    /// Capabilities 0-31, then 32-63.
    pub data: [CapData; 2],
}

// repr(C): Pod fields with 4-byte alignment and sizes multiple of 4: no padding.
pod!(CapBuffer { header, data }, 32);

/// The three capability sets of a thread, as 64-bit masks (bit `n`: capability `n`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Capabilities {
    /// What the thread's permission checks use.
    pub effective: u64,
    /// What the thread may make effective.
    pub permitted: u64,
    /// What is preserved across exec (with file or ambient capabilities).
    pub inheritable: u64,
}

impl Capabilities {
    /// From the two version 3 data structs.
    pub fn from_data(data: [CapData; 2]) -> Self {
        let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        Capabilities {
            effective: join(data[0].effective, data[1].effective),
            permitted: join(data[0].permitted, data[1].permitted),
            inheritable: join(data[0].inheritable, data[1].inheritable),
        }
    }

    /// As the two version 3 data structs.
    pub fn to_data(&self) -> [CapData; 2] {
        let part = |shift: u32| CapData {
            effective: (self.effective >> shift) as u32,
            permitted: (self.permitted >> shift) as u32,
            inheritable: (self.inheritable >> shift) as u32,
        };
        [part(0), part(32)]
    }

    /// Whether `cap` is effective.
    pub fn has_effective(&self, cap: Capability) -> bool {
        self.effective & cap.bit() != 0
    }

    /// Whether `cap` is permitted.
    pub fn has_permitted(&self, cap: Capability) -> bool {
        self.permitted & cap.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn rlimit_matches_libc() {
        assert_eq!(size_of::<Rlimit>(), size_of::<libc::rlimit64>());
        assert_eq!(align_of::<Rlimit>(), align_of::<libc::rlimit64>());
        assert_eq!(
            offset_of!(Rlimit, cur),
            offset_of!(libc::rlimit64, rlim_cur)
        );
        assert_eq!(
            offset_of!(Rlimit, max),
            offset_of!(libc::rlimit64, rlim_max)
        );
        assert_eq!(size_of::<Rlimit>(), size_of::<libc::rlimit>());
        assert_eq!(Rlimit::INFINITY, libc::RLIM64_INFINITY);
        assert!(Rlimit::from_signed(Some(-1), None).is_err());
        assert!(Rlimit::from_signed(Some(10), Some(5)).is_err());
        assert_eq!(
            Rlimit::from_signed(Some(5), None).expect("valid"),
            Rlimit {
                cur: 5,
                max: Rlimit::INFINITY
            }
        );
    }

    #[test]
    fn cpu_set_matches_libc() {
        assert_eq!(size_of::<CpuSet>(), size_of::<libc::cpu_set_t>());
        assert_eq!(size_of::<CpuSet>(), CpuSet::SIZE);
        assert_eq!(align_of::<CpuSet>(), align_of::<libc::cpu_set_t>());
        let mut ours = CpuSet::empty();
        ours.insert(3).expect("cpu 3");
        ours.insert(700).expect("cpu 700");
        // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write only `theirs`.
        let theirs = unsafe {
            let mut s: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut s);
            libc::CPU_SET(3, &mut s);
            libc::CPU_SET(700, &mut s);
            s
        };
        assert_eq!(super::super::pod_bytes(&ours), {
            // SAFETY: reading the 128 bytes of a plain-data value.
            unsafe {
                std::slice::from_raw_parts((&theirs as *const libc::cpu_set_t).cast::<u8>(), 128)
            }
            .to_vec()
        });
        assert!(CpuSet::single(1024).is_err());
        assert_eq!(ours.cpus().collect::<Vec<_>>(), vec![3, 700]);
        assert_eq!(ours.count(), 2);
    }

    #[test]
    fn capability_structs_have_the_kernel_sizes() {
        // include/uapi/linux/capability.h: the header is { __u32 version; int pid; } and
        // each data struct { __u32 effective, permitted, inheritable; }.
        assert_eq!(size_of::<CapHeader>(), 8);
        assert_eq!(offset_of!(CapHeader, pid), 4);
        assert_eq!(size_of::<CapData>(), 12);
        assert_eq!(offset_of!(CapData, permitted), 4);
        assert_eq!(offset_of!(CapData, inheritable), 8);
        assert_eq!(size_of::<CapBuffer>(), 32);
        assert_eq!(offset_of!(CapBuffer, data), 8);
        let caps = Capabilities {
            effective: 1 << 40 | 1 << 3,
            permitted: u64::MAX,
            inheritable: 0,
        };
        assert_eq!(Capabilities::from_data(caps.to_data()), caps);
        assert!(caps.has_effective(Capability::CHECKPOINT_RESTORE));
        assert!(!caps.has_effective(Capability::SYS_ADMIN));
    }
}
