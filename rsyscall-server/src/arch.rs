//! x86-64 assembly entry points: the raw syscall routine and the clone trampoline.
//!
//! # Safety
//! Both routines are naked functions: their bodies are exactly the instructions written
//! here, with no compiler-generated prologue or epilogue. That is what makes them usable
//! by a clone child, which resumes right after the `syscall` instruction on a new stack and
//! must find `ret` next, with nothing having touched the stack in between.
#![allow(unsafe_code)]

use core::arch::naked_asm;

/// Executes syscall `nr` with arguments `a1`..`a6` and returns the raw kernel result
/// (`-4095..=-1` is `-errno`).
///
/// The instruction after `syscall` is `ret`, so a `clone` issued through this routine
/// resumes the child at the address on top of its new stack (the trampoline of the stack
/// image, PROTOCOL.md section 2).
///
/// # Safety
/// A syscall can do anything to the calling process: unmap memory, close fds owned by
/// other code, write through the pointers passed. The caller must ensure the syscall and
/// its arguments uphold Rust's memory and I/O safety rules for every process sharing this
/// address space and fd table.
#[unsafe(naked)]
#[cfg_attr(rsyscall_standalone, unsafe(export_name = "rsyscall_raw_syscall"))]
pub unsafe extern "C" fn raw_syscall(
    a1: i64,
    a2: i64,
    a3: i64,
    a4: i64,
    a5: i64,
    a6: i64,
    nr: i64,
) -> i64 {
    naked_asm!(
        // The seventh argument (the syscall number) is on the stack above the return address.
        "mov rax, [rsp + 8]",
        // The kernel takes the fourth argument in r10, not rcx.
        "mov r10, rcx",
        "syscall",
        "ret",
    )
}

/// The clone trampoline: entered by `ret` with the stack pointer at offset 8 of a stack
/// image (PROTOCOL.md section 2). It sets `PR_SET_PDEATHSIG` to `SIGKILL`, pops the six
/// argument registers and the function, calls the function, then calls `exit(0)` (the
/// thread exit, never `exit_group`: the address space is shared).
///
/// # Safety
/// Never call this from Rust: it is only ever the return address in a stack image.
#[unsafe(naked)]
#[cfg_attr(rsyscall_standalone, unsafe(export_name = "rsyscall_trampoline"))]
pub unsafe extern "C" fn trampoline() -> ! {
    naked_asm!(
        // prctl(PR_SET_PDEATHSIG, SIGKILL)
        "mov eax, 157",
        "mov edi, 1",
        "mov esi, 9",
        "syscall",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop r8",
        "pop r9",
        "pop rax",
        // The image is 64 bytes and 16-byte aligned, so rsp is 16-byte aligned here, and
        // `call` leaves the callee with the ABI's rsp % 16 == 8 at entry.
        "call rax",
        // exit(0)
        "mov eax, 60",
        "xor edi, edi",
        "syscall",
        "ud2",
    )
}
