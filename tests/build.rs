//! Compiles `c/drive_server.c`, the C client of `librsyscall.so` that `tests/c_abi.rs` links
//! and runs, with the C compiler the `cc` crate finds for this target. Only compiled here:
//! the library it links is built by `cargo xtask build-server`, so the test links it once
//! the library exists, with the compiler recorded here.

fn main() {
    println!("cargo:rerun-if-changed=c/drive_server.c");
    let mut build = cc::Build::new();
    build
        .file("c/drive_server.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true);
    let objects = build.compile_intermediates();
    let [object] = objects.as_slice() else {
        panic!("expected one object file from c/drive_server.c, got {objects:?}");
    };
    let compiler = build.get_compiler();
    println!(
        "cargo:rustc-env=RSYSCALL_TESTS_C_DRIVER_OBJ={}",
        object.display()
    );
    println!(
        "cargo:rustc-env=RSYSCALL_TESTS_CC={}",
        compiler.path().display()
    );
}
