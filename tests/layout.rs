//! The wire structures of PROTOCOL.md have exactly the documented sizes and field offsets,
//! and the request and symbol-table encodings round-trip.

use std::mem::{align_of, offset_of, size_of};

use rsyscall_server::proto::{
    BootstrapDescribe, RESPONSE_SIZE, Request, StackImage, StdinBootstrapDescribe, SymbolTable,
    UnixStubDescribe,
};

#[test]
fn request_and_response() {
    assert_eq!(size_of::<Request>(), 56);
    assert_eq!(Request::SIZE, 56);
    assert_eq!(offset_of!(Request, number), 0);
    assert_eq!(offset_of!(Request, args), 8);
    assert_eq!(RESPONSE_SIZE, 8);
}

#[test]
fn request_wire_form_is_little_endian_words() {
    let req = Request::new(
        0x0102,
        [-1, 2, i64::MIN, i64::MAX, 0, 0x1122_3344_5566_7788],
    );
    let bytes = req.to_bytes();
    assert_eq!(&bytes[..8], &0x0102i64.to_le_bytes());
    for (i, arg) in req.args.iter().enumerate() {
        let at = 8 + 8 * i;
        assert_eq!(&bytes[at..at + 8], &arg.to_le_bytes(), "args[{i}]");
    }
    assert_eq!(Request::from_bytes(&bytes), req);
}

#[test]
fn request_round_trips() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as i64
    };
    for _ in 0..1000 {
        let req = Request::new(next(), [next(), next(), next(), next(), next(), next()]);
        assert_eq!(Request::from_bytes(&req.to_bytes()), req);
    }
    let bytes: [u8; 56] = std::array::from_fn(|i| i as u8);
    assert_eq!(Request::from_bytes(&bytes).to_bytes(), bytes);
}

#[test]
fn symbol_table() {
    assert_eq!(size_of::<SymbolTable>(), 32);
    assert_eq!(SymbolTable::SIZE, 32);
    assert_eq!(offset_of!(SymbolTable, server), 0);
    assert_eq!(offset_of!(SymbolTable, persistent_server), 8);
    assert_eq!(offset_of!(SymbolTable, futex_helper), 16);
    assert_eq!(offset_of!(SymbolTable, trampoline), 24);
    let table = SymbolTable {
        server: 0x1111,
        persistent_server: 0x2222_0000_0000,
        futex_helper: u64::MAX,
        trampoline: 0x4444,
    };
    let bytes = table.to_bytes();
    assert_eq!(&bytes[16..24], &u64::MAX.to_le_bytes());
    assert_eq!(&bytes[8..16], &0x2222_0000_0000u64.to_le_bytes());
    assert_eq!(SymbolTable::from_bytes(&bytes), table);
}

#[test]
fn local_symbol_table_names_this_process_entry_points() {
    let table = rsyscall_server::symbol_table();
    let server: extern "C" fn(i32, i32) -> i64 = rsyscall_server::server;
    let persistent: extern "C" fn(i32, i32, i32) -> i64 = rsyscall_server::persistent_server;
    let helper: extern "C" fn(*const u32, u32) -> i64 = rsyscall_server::futex_helper;
    let trampoline: unsafe extern "C" fn() -> ! = rsyscall_server::trampoline;
    assert_eq!(table.server, server as usize as u64);
    assert_eq!(table.persistent_server, persistent as usize as u64);
    assert_eq!(table.futex_helper, helper as usize as u64);
    assert_eq!(table.trampoline, trampoline as usize as u64);
}

#[test]
fn bootstrap_describe() {
    assert_eq!(size_of::<BootstrapDescribe>(), 56);
    assert_eq!(offset_of!(BootstrapDescribe, symbols), 0);
    assert_eq!(offset_of!(BootstrapDescribe, pid), 32);
    assert_eq!(offset_of!(BootstrapDescribe, listening_sock), 36);
    assert_eq!(offset_of!(BootstrapDescribe, syscall_sock), 40);
    assert_eq!(offset_of!(BootstrapDescribe, data_sock), 44);
    assert_eq!(offset_of!(BootstrapDescribe, envp_count), 48);
    assert_eq!(BootstrapDescribe::SIZE, 56);
}

#[test]
fn stdin_bootstrap_describe() {
    assert_eq!(size_of::<StdinBootstrapDescribe>(), 64);
    assert_eq!(offset_of!(StdinBootstrapDescribe, symbols), 0);
    assert_eq!(offset_of!(StdinBootstrapDescribe, pid), 32);
    assert_eq!(offset_of!(StdinBootstrapDescribe, syscall_fd), 36);
    assert_eq!(offset_of!(StdinBootstrapDescribe, data_fd), 40);
    assert_eq!(offset_of!(StdinBootstrapDescribe, futex_memfd), 44);
    assert_eq!(offset_of!(StdinBootstrapDescribe, connecting_fd), 48);
    assert_eq!(offset_of!(StdinBootstrapDescribe, envp_count), 56);
}

#[test]
fn unix_stub_describe() {
    assert_eq!(size_of::<UnixStubDescribe>(), 80);
    assert_eq!(offset_of!(UnixStubDescribe, symbols), 0);
    assert_eq!(offset_of!(UnixStubDescribe, pid), 32);
    assert_eq!(offset_of!(UnixStubDescribe, syscall_fd), 36);
    assert_eq!(offset_of!(UnixStubDescribe, data_fd), 40);
    assert_eq!(offset_of!(UnixStubDescribe, futex_memfd), 44);
    assert_eq!(offset_of!(UnixStubDescribe, connecting_fd), 48);
    assert_eq!(offset_of!(UnixStubDescribe, argc), 56);
    assert_eq!(offset_of!(UnixStubDescribe, envp_count), 64);
    assert_eq!(offset_of!(UnixStubDescribe, sigmask), 72);
}

#[test]
fn stack_image() {
    assert_eq!(size_of::<StackImage>(), 64);
    assert_eq!(StackImage::SIZE, 64);
    assert_eq!(align_of::<StackImage>(), 16);
    assert_eq!(offset_of!(StackImage, trampoline), 0);
    assert_eq!(offset_of!(StackImage, args), 8);
    assert_eq!(offset_of!(StackImage, function), 56);
    let image = StackImage::new(0x1234, [1, 2, 3, 4, 5, 6]);
    let trampoline: unsafe extern "C" fn() -> ! = rsyscall_server::trampoline;
    assert_eq!(image.trampoline, trampoline as usize as u64);
    assert_eq!(image.args, [1, 2, 3, 4, 5, 6]);
    assert_eq!(image.function, 0x1234);
    // The bytes written to the stack are the struct's own memory image.
    let bytes = image.to_bytes();
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    assert_eq!(word(0), image.trampoline);
    assert_eq!((1..7).map(word).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(word(7), 0x1234);
}
