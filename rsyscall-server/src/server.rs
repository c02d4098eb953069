//! The syscall server loop of PROTOCOL.md section 1.

use crate::io::{ReadExact, read_exact, write_all};
use crate::proto::{RESPONSE_SIZE, Request};
use crate::sys;

/// Serves syscall requests read from `infd`, writing each response to `outfd`, until EOF at
/// a request boundary (returns 0) or an I/O error on either fd (returns `-errno`; EOF in
/// the middle of a request returns `-EPIPE`).
///
/// Reads exactly 56 bytes per request and never reads ahead.
#[cfg_attr(rsyscall_standalone, unsafe(export_name = "rsyscall_server"))]
pub extern "C" fn server(infd: i32, outfd: i32) -> i64 {
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
        let w = write_all(outfd, &out);
        if w < 0 {
            return w;
        }
    }
}
