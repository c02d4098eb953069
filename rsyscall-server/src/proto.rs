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
        let mut out = [0u8; Self::SIZE];
        let words = [
            self.number,
            self.args[0],
            self.args[1],
            self.args[2],
            self.args[3],
            self.args[4],
            self.args[5],
        ];
        let mut i = 0;
        while i < 7 {
            let bytes = words[i].to_le_bytes();
            let mut j = 0;
            while j < 8 {
                out[i * 8 + j] = bytes[j];
                j += 1;
            }
            i += 1;
        }
        out
    }

    /// Parses the little-endian wire form.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let mut words = [0i64; 7];
        let mut i = 0;
        while i < 7 {
            let mut w = [0u8; 8];
            let mut j = 0;
            while j < 8 {
                w[j] = bytes[i * 8 + j];
                j += 1;
            }
            words[i] = i64::from_le_bytes(w);
            i += 1;
        }
        Request {
            number: words[0],
            args: [words[1], words[2], words[3], words[4], words[5], words[6]],
        }
    }
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
        let mut i = 0;
        while i < 4 {
            let bytes = words[i].to_le_bytes();
            let mut j = 0;
            while j < 8 {
                out[i * 8 + j] = bytes[j];
                j += 1;
            }
            i += 1;
        }
        out
    }

    /// Parses the little-endian wire form.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let mut words = [0u64; 4];
        let mut i = 0;
        while i < 4 {
            let mut w = [0u8; 8];
            let mut j = 0;
            while j < 8 {
                w[j] = bytes[i * 8 + j];
                j += 1;
            }
            words[i] = u64::from_le_bytes(w);
            i += 1;
        }
        SymbolTable {
            server: words[0],
            persistent_server: words[1],
            futex_helper: words[2],
            trampoline: words[3],
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
        StackImage {
            trampoline: trampoline as usize as u64,
            args,
            function,
        }
    }
}
