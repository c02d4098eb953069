//! The wire structures of PROTOCOL.md: requests, responses, symbol table and describe structs.

/// One syscall request, exactly as it travels on the syscall socket (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The syscall number (x86-64 numbering).
    pub number: i64,
    /// The six argument registers, handed to the kernel as they are.
    pub args: [i64; 6],
}

impl Request {
    /// Size of a request on the wire.
    pub const SIZE: usize = 56;

    /// A request for syscall `number` with `args`.
    pub const fn new(number: i64, args: [i64; 6]) -> Self {
        Request { number, args }
    }

    /// The little-endian wire form.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let a = self.args;
        let words = [self.number, a[0], a[1], a[2], a[3], a[4], a[5]].map(|w| w as u64);
        let mut out = [0u8; Self::SIZE];
        put_words(&mut out, &words);
        out
    }

    /// Parses the little-endian wire form.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let [number, a1, a2, a3, a4, a5, a6] = get_words::<7>(bytes).map(|w| w as i64);
        Request {
            number,
            args: [a1, a2, a3, a4, a5, a6],
        }
    }
}

/// Writes `words` little-endian into consecutive 8-byte chunks of `out`.
fn put_words(out: &mut [u8], words: &[u64]) {
    for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
        for (dst, src) in chunk.iter_mut().zip(word.to_le_bytes()) {
            *dst = src;
        }
    }
}

/// Reads `N` little-endian words from consecutive 8-byte chunks of `bytes` (missing ones
/// are 0).
fn get_words<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut words = [0u64; N];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        for (dst, src) in b.iter_mut().zip(chunk) {
            *dst = *src;
        }
        *word = u64::from_le_bytes(b);
    }
    words
}

/// Size of a response on the wire: the raw kernel return value as an `i64`.
pub const RESPONSE_SIZE: usize = 8;

/// The 32-byte symbol table: addresses, in the describing process, of the entry points.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SymbolTable {
    /// `server(infd, outfd)`.
    pub server: u64,
    /// `persistent_server(infd, outfd, listen_fd)`.
    pub persistent_server: u64,
    /// `futex_helper(futex_addr, value)`.
    pub futex_helper: u64,
    /// The trampoline that starts a clone child from its stack image.
    pub trampoline: u64,
}

impl SymbolTable {
    /// Size of a symbol table on the wire.
    pub const SIZE: usize = 32;

    /// The little-endian wire form.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let words = [
            self.server,
            self.persistent_server,
            self.futex_helper,
            self.trampoline,
        ];
        let mut out = [0u8; Self::SIZE];
        put_words(&mut out, &words);
        out
    }

    /// Parses the little-endian wire form.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let [server, persistent_server, futex_helper, trampoline] = get_words::<4>(bytes);
        SymbolTable {
            server,
            persistent_server,
            futex_helper,
            trampoline,
        }
    }
}

/// Describe struct written by the ssh bootstrap (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootstrapDescribe {
    /// Entry points in the bootstrap process.
    pub symbols: SymbolTable,
    /// Pid of the bootstrap process.
    pub pid: i32,
    /// Its listening socket.
    pub listening_sock: i32,
    /// Its syscall socket.
    pub syscall_sock: i32,
    /// Its data socket.
    pub data_sock: i32,
    /// How many environment strings follow.
    pub envp_count: u64,
}

impl BootstrapDescribe {
    /// Size on the wire.
    pub const SIZE: usize = 56;

    /// The little-endian wire form.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        put_words(&mut out, &symbol_words(&self.symbols));
        put_i32s(
            &mut out,
            32,
            &[
                self.pid,
                self.listening_sock,
                self.syscall_sock,
                self.data_sock,
            ],
        );
        put_words(out.get_mut(48..).unwrap_or(&mut []), &[self.envp_count]);
        out
    }

    /// Parses the little-endian wire form.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let [pid, listening_sock, syscall_sock, data_sock] = get_i32s::<4>(bytes, 32);
        let [envp_count] = get_words::<1>(bytes.get(48..).unwrap_or(&[]));
        BootstrapDescribe {
            symbols: symbols_from(bytes),
            pid,
            listening_sock,
            syscall_sock,
            data_sock,
            envp_count,
        }
    }
}

/// Describe struct written by the stdin bootstrap (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StdinBootstrapDescribe {
    /// Entry points in the bootstrap process.
    pub symbols: SymbolTable,
    /// Pid of the bootstrap process.
    pub pid: i32,
    /// Its syscall fd.
    pub syscall_fd: i32,
    /// Its data fd.
    pub data_fd: i32,
    /// Unused futex memfd slot.
    pub futex_memfd: i32,
    /// Its connecting fd.
    pub connecting_fd: i32,
    /// Padding to 8-byte alignment.
    pub _pad: i32,
    /// How many environment strings follow.
    pub envp_count: u64,
}

impl StdinBootstrapDescribe {
    /// Size on the wire.
    pub const SIZE: usize = 64;

    /// The little-endian wire form.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        put_words(&mut out, &symbol_words(&self.symbols));
        put_i32s(
            &mut out,
            32,
            &[
                self.pid,
                self.syscall_fd,
                self.data_fd,
                self.futex_memfd,
                self.connecting_fd,
                self._pad,
            ],
        );
        put_words(out.get_mut(56..).unwrap_or(&mut []), &[self.envp_count]);
        out
    }

    /// Parses the little-endian wire form.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let [pid, syscall_fd, data_fd, futex_memfd, connecting_fd, _pad] = get_i32s::<6>(bytes, 32);
        let [envp_count] = get_words::<1>(bytes.get(56..).unwrap_or(&[]));
        StdinBootstrapDescribe {
            symbols: symbols_from(bytes),
            pid,
            syscall_fd,
            data_fd,
            futex_memfd,
            connecting_fd,
            _pad,
            envp_count,
        }
    }
}

/// The symbol table's four words.
fn symbol_words(s: &SymbolTable) -> [u64; 4] {
    [s.server, s.persistent_server, s.futex_helper, s.trampoline]
}

/// The symbol table at the start of `bytes`.
fn symbols_from(bytes: &[u8]) -> SymbolTable {
    let [server, persistent_server, futex_helper, trampoline] = get_words::<4>(bytes);
    SymbolTable {
        server,
        persistent_server,
        futex_helper,
        trampoline,
    }
}

/// Writes `values` little-endian into consecutive 4-byte chunks of `out` from `at`.
fn put_i32s(out: &mut [u8], at: usize, values: &[i32]) {
    let Some(out) = out.get_mut(at..) else {
        return;
    };
    for (chunk, value) in out.chunks_exact_mut(4).zip(values) {
        for (dst, src) in chunk.iter_mut().zip(value.to_le_bytes()) {
            *dst = src;
        }
    }
}

/// Reads `N` little-endian `i32`s from consecutive 4-byte chunks of `bytes` from `at`.
fn get_i32s<const N: usize>(bytes: &[u8], at: usize) -> [i32; N] {
    let mut values = [0i32; N];
    let bytes = bytes.get(at..).unwrap_or(&[]);
    for (value, chunk) in values.iter_mut().zip(bytes.chunks_exact(4)) {
        let mut b = [0u8; 4];
        for (dst, src) in b.iter_mut().zip(chunk) {
            *dst = *src;
        }
        *value = i32::from_le_bytes(b);
    }
    values
}

/// Describe struct written by the unix stub (80 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnixStubDescribe {
    /// Entry points in the stub process.
    pub symbols: SymbolTable,
    /// Pid of the stub process.
    pub pid: i32,
    /// Its syscall fd.
    pub syscall_fd: i32,
    /// Its data fd.
    pub data_fd: i32,
    /// Its futex memfd.
    pub futex_memfd: i32,
    /// Its connecting fd.
    pub connecting_fd: i32,
    /// Padding to 8-byte alignment.
    pub _pad: i32,
    /// How many argv strings follow.
    pub argc: u64,
    /// How many environment strings follow.
    pub envp_count: u64,
    /// Blocked signals at startup: bit n-1 set means signal n blocked.
    pub sigmask: u64,
}

impl UnixStubDescribe {
    /// Size on the wire.
    pub const SIZE: usize = 80;

    /// The little-endian wire form.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        put_words(&mut out, &symbol_words(&self.symbols));
        put_i32s(
            &mut out,
            32,
            &[
                self.pid,
                self.syscall_fd,
                self.data_fd,
                self.futex_memfd,
                self.connecting_fd,
                self._pad,
            ],
        );
        put_words(
            out.get_mut(56..).unwrap_or(&mut []),
            &[self.argc, self.envp_count, self.sigmask],
        );
        out
    }

    /// Parses the little-endian wire form.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let [pid, syscall_fd, data_fd, futex_memfd, connecting_fd, _pad] = get_i32s::<6>(bytes, 32);
        let [argc, envp_count, sigmask] = get_words::<3>(bytes.get(56..).unwrap_or(&[]));
        UnixStubDescribe {
            symbols: symbols_from(bytes),
            pid,
            syscall_fd,
            data_fd,
            futex_memfd,
            connecting_fd,
            _pad,
            argc,
            envp_count,
            sigmask,
        }
    }
}

/// The 64-byte stack image the trampoline pops (PROTOCOL.md section 2).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackImage {
    /// Address of the trampoline, popped by the `ret` after `syscall`.
    pub trampoline: u64,
    /// rdi, rsi, rdx, rcx, r8, r9 for the function.
    pub args: [u64; 6],
    /// The function the trampoline calls.
    pub function: u64,
}

impl StackImage {
    /// Size of a stack image.
    pub const SIZE: usize = 64;

    /// An image that makes a clone child issued through [`raw_syscall`](crate::raw_syscall)
    /// enter this process's [`trampoline`](crate::trampoline), which calls `function` with
    /// `args` in rdi, rsi, rdx, rcx, r8, r9.
    pub fn new(function: u64, args: [u64; 6]) -> Self {
        let trampoline: unsafe extern "C" fn() -> ! = crate::trampoline;
        StackImage::with_trampoline(trampoline as usize as u64, function, args)
    }

    /// An image for a clone made in another process, whose trampoline is at `trampoline`
    /// (from its symbol table) and calls `function` (an address in that process) with
    /// `args`.
    pub fn with_trampoline(trampoline: u64, function: u64, args: [u64; 6]) -> Self {
        StackImage {
            trampoline,
            args,
            function,
        }
    }

    /// The little-endian form, as it is written at the top of the child's stack.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let a = self.args;
        let words = [
            self.trampoline,
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5],
            self.function,
        ];
        let mut out = [0u8; Self::SIZE];
        put_words(&mut out, &words);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_structs_round_trip_through_their_wire_form() {
        let symbols = SymbolTable {
            server: 1,
            persistent_server: 2,
            futex_helper: 3,
            trampoline: 4,
        };
        let d = StdinBootstrapDescribe {
            symbols,
            pid: 5,
            syscall_fd: 6,
            data_fd: 7,
            futex_memfd: -1,
            connecting_fd: 8,
            _pad: 0,
            envp_count: 9,
        };
        let b = BootstrapDescribe {
            symbols,
            pid: 5,
            listening_sock: 6,
            syscall_sock: 7,
            data_sock: 8,
            envp_count: 9,
        };
        let bytes = b.to_bytes();
        assert_eq!(bytes[0..8], 1u64.to_le_bytes());
        assert_eq!(bytes[32..36], 5i32.to_le_bytes());
        assert_eq!(bytes[36..40], 6i32.to_le_bytes());
        assert_eq!(bytes[40..44], 7i32.to_le_bytes());
        assert_eq!(bytes[44..48], 8i32.to_le_bytes());
        assert_eq!(bytes[48..56], 9u64.to_le_bytes());
        assert_eq!(BootstrapDescribe::from_bytes(&bytes), b);
        let bytes = d.to_bytes();
        assert_eq!(bytes[32..36], 5i32.to_le_bytes());
        assert_eq!(bytes[44..48], (-1i32).to_le_bytes());
        assert_eq!(bytes[56..64], 9u64.to_le_bytes());
        assert_eq!(StdinBootstrapDescribe::from_bytes(&bytes), d);
        let u = UnixStubDescribe {
            symbols,
            pid: 5,
            syscall_fd: 6,
            data_fd: 7,
            futex_memfd: 10,
            connecting_fd: 8,
            _pad: 0,
            argc: 11,
            envp_count: 12,
            sigmask: 1 << 9,
        };
        let bytes = u.to_bytes();
        assert_eq!(bytes[24..32], 4u64.to_le_bytes());
        assert_eq!(bytes[48..52], 8i32.to_le_bytes());
        assert_eq!(bytes[56..64], 11u64.to_le_bytes());
        assert_eq!(bytes[72..80], (1u64 << 9).to_le_bytes());
        assert_eq!(UnixStubDescribe::from_bytes(&bytes), u);
    }
}
