//! The C ABI of `librsyscall.so` is a promise to C programs: a C client (`c/drive_server.c`,
//! compiled by the build script with the `cc` crate) clones a child onto a stack image
//! through `rsyscall_raw_syscall`, the child runs `rsyscall_server` from
//! `rsyscall_trampoline`, and the client's requests, in the wire format, run in the child.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rsyscall_tests::server::helper_binary;
use rsyscall_tests::tmp::TempDir;

/// Links the compiled C client against `librsyscall.so` (found where the other helpers
/// are), into `dir`.
fn link_driver(dir: &TempDir) -> std::path::PathBuf {
    let library = helper_binary("librsyscall.so");
    let libdir = library.parent().expect("library directory");
    let exe = dir.join("drive_server");
    let out = Command::new(env!("RSYSCALL_TESTS_CC"))
        .arg(env!("RSYSCALL_TESTS_C_DRIVER_OBJ"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(libdir)
        .arg("-lrsyscall")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .output()
        .expect("running the C compiler");
    assert!(
        out.status.success(),
        "linking the C client failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn a_c_program_drives_a_child_through_the_trampoline_and_the_server() {
    let dir = TempDir::new("c-abi");
    let exe = link_driver(&dir);
    let mut child = Command::new(&exe)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the C client");
    // The client bounds itself with a 20-second alarm; this bounds the test if it did not.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the C client hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(
        status.success(),
        "C client: {status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    // "ok child PID": the pid getpid answered in the child, which the client checked
    // against the pid clone returned, and which is neither the client's nor ours.
    let pid: i32 = stdout
        .trim()
        .strip_prefix("ok child ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    assert!(pid > 0, "{stdout}");
    assert_ne!(pid as u32, child.id(), "getpid ran in the client itself");
    assert_ne!(pid as u32, std::process::id());
    dir.remove().expect("removing the temporary directory");
}
