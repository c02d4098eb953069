//! Locating the static helper binaries (`rsyscall-server`, `rsyscall-stdin-bootstrap`,
//! `rsyscall-unix-stub`, `rsyscall-bootstrap`) that programs exec and that ssh hosts run.
//!
//! The helpers come with the library: `rsyscall-server`'s build script compiles them from
//! source with the compiler that builds it, and the crate embeds their bytes
//! ([`helper_bytes`]). Nothing needs to be installed, and no `cargo xtask build-server` is
//! needed (it still installs them, with `librsyscall.so`, for other clients).
//!
//! Where a helper is needed as a file ([`helper_path`]: a program execs it, or a launcher
//! such as `sudo` runs it), it is taken from, in order:
//! 1. `$RSYSCALL_LIBEXEC_DIR` ([`LIBEXEC_ENV`]), if set: it overrides everything, and a
//!    helper missing there is an error (for a copy reachable by another user, a helper of
//!    your own, or a `/tmp` mounted `noexec`);
//! 2. otherwise the embedded bytes, written once into a private directory named by their
//!    hash, `<temp dir>/rsyscall-libexec-<euid>-<hash>/` (the temp dir is `$TMPDIR` or
//!    `/tmp`; not `$XDG_RUNTIME_DIR`, whose mode 0700 would keep out the user a launcher
//!    like `sudo -u nobody` runs the stdin bootstrap as).
//!
//! The private directory is mode 0755 and owned by us; its files are mode 0755. Each file
//! is written under a temporary name and renamed into place, so programs doing this at
//! the same time never see a half-written helper. An existing directory is used only if it
//! is a directory (not a symlink) owned by our effective uid and not writable by group or
//! others, and an existing file only if it is owned by us, not writable by group or
//! others, and holds exactly the embedded bytes (it is compared every time); a bad file is
//! replaced, a bad directory skipped for the next name (`...-<hash>-1`, ...). Since the
//! name holds the hash, a newer library never runs an older helper, and programs built
//! from the same sources share one copy.
//!
//! [`SshHost`](crate::SshHost) needs no file: it sends the bytes ([`helper_contents`]).

use std::borrow::Cow;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rsyscall_handle::{Error, Result};

/// The environment variable naming the directory of the helper binaries.
pub const LIBEXEC_ENV: &str = "RSYSCALL_LIBEXEC_DIR";

/// The prefix of the private directories the embedded helpers are written to.
pub const EMBEDDED_DIR_PREFIX: &str = "rsyscall-libexec-";

/// How many names (`<hash>`, `<hash>-1`, ...) are tried before giving up when the
/// directories under them are not ours.
const DIR_ATTEMPTS: u32 = 8;

/// The embedded bytes of the helper binary `name` (built by `rsyscall-server`'s build
/// script from the sources this library was built with), or `None` if there is no such
/// helper.
pub fn helper_bytes(name: &str) -> Option<&'static [u8]> {
    rsyscall_server::embedded::helper(name)
}

/// The contents of the helper binary `name`: the file in `$RSYSCALL_LIBEXEC_DIR` if that
/// is set, else the embedded bytes (no file is written).
///
/// # Errors
/// [`Error::Helper`] if the variable is set and the file cannot be read, or if there is
/// no helper called `name`.
pub fn helper_contents(name: &'static str) -> Result<Cow<'static, [u8]>> {
    match override_dir() {
        Some(dir) => read_helper(name, &helper_path_in(name, &dir)?).map(Cow::Owned),
        None => embedded(name).map(Cow::Borrowed),
    }
}

/// Reads the helper binary `name` from `path`.
///
/// # Errors
/// [`Error::Helper`] naming the path and why it could not be read.
pub fn read_helper(name: &'static str, path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::Helper {
        name,
        detail: format!("reading {}: {e}", path.display()),
    })
}

/// The path of an executable file holding the helper binary `name`: in
/// `$RSYSCALL_LIBEXEC_DIR` if that is set, else the embedded bytes written out into the
/// private, content-addressed directory (see the module docs).
///
/// # Errors
/// [`Error::Helper`] saying what to do if the variable is set and the helper is missing
/// there or not executable, if the private directory or the file cannot be made (a
/// read-only or full temp dir: set `TMPDIR` or the variable), if every candidate
/// directory belongs to someone else, or if there is no helper called `name`.
pub fn helper_path(name: &'static str) -> Result<PathBuf> {
    match override_dir() {
        Some(dir) => helper_path_in(name, &dir),
        None => embedded_helper_path(name),
    }
}

/// `$RSYSCALL_LIBEXEC_DIR`, if set and not empty.
fn override_dir() -> Option<PathBuf> {
    std::env::var_os(LIBEXEC_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn embedded(name: &'static str) -> Result<&'static [u8]> {
    helper_bytes(name).ok_or_else(|| Error::Helper {
        name,
        detail: "there is no helper binary of that name".to_owned(),
    })
}

/// `dir/name` if it is an executable file.
fn helper_path_in(name: &'static str, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(name);
    match fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(path),
        found => Err(Error::Helper {
            name,
            detail: format!(
                "{} {} ({LIBEXEC_ENV} names that directory); put the helper there (`cargo \
                 xtask build-server` installs them all in target/libexec), or unset \
                 {LIBEXEC_ENV} to use the helpers built into the library",
                path.display(),
                match found {
                    Ok(_) => "is not an executable file".to_owned(),
                    Err(e) => format!("cannot be used: {e}"),
                },
            ),
        }),
    }
}

/// The embedded helper `name`, written out if need be; see the module docs.
fn embedded_helper_path(name: &'static str) -> Result<PathBuf> {
    let bytes = embedded(name)?;
    let base = std::env::temp_dir();
    let uid = nix::unistd::geteuid().as_raw();
    let mut refused = Vec::new();
    for attempt in 0..DIR_ATTEMPTS {
        let dir = base.join(embedded_dir_name(uid, attempt));
        let made = private_dir(&dir, uid).and_then(|()| install(&dir, name, bytes, uid));
        match made {
            Ok(path) => return Ok(path),
            Err(Refusal::NotOurs(why)) => refused.push(format!("{}: {why}", dir.display())),
            Err(Refusal::Io(what, e)) => {
                return Err(Error::Helper {
                    name,
                    detail: format!(
                        "writing the embedded helper out: {what}: {e}; set TMPDIR to a \
                         writable directory that allows execution, or {LIBEXEC_ENV} to a \
                         directory holding the helpers"
                    ),
                });
            }
        }
    }
    Err(Error::Helper {
        name,
        detail: format!(
            "no private directory for the embedded helpers could be used ({}); remove them, \
             or set TMPDIR or {LIBEXEC_ENV}",
            refused.join("; ")
        ),
    })
}

/// `rsyscall-libexec-<uid>-<hash>` for the first attempt, then `...-<hash>-<attempt>`.
fn embedded_dir_name(uid: u32, attempt: u32) -> String {
    let hash = embedded_hash();
    if attempt == 0 {
        format!("{EMBEDDED_DIR_PREFIX}{uid}-{hash}")
    } else {
        format!("{EMBEDDED_DIR_PREFIX}{uid}-{hash}-{attempt}")
    }
}

/// The hex FNV-1a (64-bit) hash of every embedded helper's name, length and bytes: fixed
/// across processes and builds, so equal helpers share one directory.
fn embedded_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut hash = Fnv1a::new();
        for (name, bytes) in rsyscall_server::embedded::HELPERS {
            hash.write(name.as_bytes());
            hash.write(&(bytes.len() as u64).to_le_bytes());
            hash.write(bytes);
        }
        format!("{:016x}", hash.0)
    })
}

/// FNV-1a, 64 bits.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Why a directory or file could not be used.
enum Refusal {
    /// It is someone else's or writable by others: try another name.
    NotOurs(String),
    /// Making or writing it failed: give up.
    Io(String, io::Error),
}

fn io_refusal(what: impl Into<String>) -> impl FnOnce(io::Error) -> Refusal {
    let what = what.into();
    move |e| Refusal::Io(what, e)
}

/// Makes `dir` (mode 0755), or checks that the existing one is a directory owned by `uid`
/// and not writable by group or others (and gives it mode 0755).
fn private_dir(dir: &Path, uid: u32) -> std::result::Result<(), Refusal> {
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir)
                .map_err(io_refusal(format!("examining {}", dir.display())))?;
            if !meta.is_dir() {
                return Err(Refusal::NotOurs("not a directory".to_owned()));
            }
            trusted(&meta, uid)?;
        }
        Err(e) => return Err(Refusal::Io(format!("mkdir {}", dir.display()), e)),
    }
    // The umask may have taken bits away; others must be able to enter it (sudo).
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(io_refusal(format!("chmod 0755 {}", dir.display())))
}

/// Accepts what is owned by `uid` and writable by nobody else.
fn trusted(meta: &fs::Metadata, uid: u32) -> std::result::Result<(), Refusal> {
    if meta.uid() != uid {
        return Err(Refusal::NotOurs(format!(
            "owned by uid {}, not {uid}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Refusal::NotOurs(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Returns `dir/name` holding exactly `bytes`, mode 0755: the existing file if it is
/// ours, not writable by others and equal to `bytes`; otherwise a new file written under a
/// temporary name and renamed over it.
fn install(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    uid: u32,
) -> std::result::Result<PathBuf, Refusal> {
    let path = dir.join(name);
    if holds(&path, bytes, uid) {
        return Ok(path);
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write_new(&tmp, bytes).and_then(|()| {
        fs::rename(&tmp, &path).map_err(io_refusal(format!(
            "renaming {} to {}",
            tmp.display(),
            path.display()
        )))
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

/// Whether `path` is a regular file (not a symlink) owned by `uid`, not writable by
/// others, executable, and holding exactly `bytes`.
fn holds(path: &Path, bytes: &[u8], uid: u32) -> bool {
    let Ok(mut file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file()
        || trusted(&meta, uid).is_err()
        || meta.mode() & 0o755 != 0o755
        || meta.len() != bytes.len() as u64
    {
        return false;
    }
    let mut contents = Vec::with_capacity(bytes.len());
    file.read_to_end(&mut contents).is_ok() && contents == bytes
}

/// Creates `path` (which must not exist) with mode 0755 and `bytes` in it.
fn write_new(path: &Path, bytes: &[u8]) -> std::result::Result<(), Refusal> {
    let what = || format!("writing {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_refusal(what()))?;
    file.write_all(bytes).map_err(io_refusal(what()))?;
    // The umask may have taken bits away.
    file.set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(io_refusal(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rsyscall-libexec-test-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_missing_override_names_what_to_do() {
        let dir = scratch("missing");
        let err = helper_path_in("rsyscall-server", &dir).expect_err("missing");
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                Error::Helper {
                    name: "rsyscall-server",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains(LIBEXEC_ENV), "{msg}");
        assert!(msg.contains("unset"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
    }

    #[test]
    fn every_helper_is_embedded_and_is_a_static_elf_executable() {
        for name in [
            "rsyscall-server",
            "rsyscall-stdin-bootstrap",
            "rsyscall-unix-stub",
            "rsyscall-bootstrap",
        ] {
            let bytes = helper_bytes(name).unwrap_or_else(|| panic!("{name} is not embedded"));
            assert_eq!(&bytes[..4], b"\x7fELF", "{name}");
            // e_type EXEC (2): static, not PIE.
            assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 2, "{name}");
        }
        assert_eq!(helper_bytes("sh"), None);
        assert!(helper_contents("no-such-helper").is_err());
    }

    #[test]
    fn install_writes_then_reuses_then_repairs() {
        let dir = scratch("install");
        let uid = nix::unistd::geteuid().as_raw();
        private_dir(&dir, uid).unwrap_or_else(|_| panic!("mkdir {}", dir.display()));
        let meta = fs::symlink_metadata(&dir).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o755);

        let path = install(&dir, "helper", b"first", uid).unwrap_or_else(|_| panic!("install"));
        assert_eq!(fs::read(&path).expect("read"), b"first");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o755);
        let inode = meta.ino();

        // The same bytes again: the file is kept as it is.
        install(&dir, "helper", b"first", uid).unwrap_or_else(|_| panic!("again"));
        assert_eq!(fs::metadata(&path).expect("stat").ino(), inode);

        // Changed content (or another helper under that name) is replaced, by a new inode.
        fs::write(&path, b"tampered").expect("write");
        install(&dir, "helper", b"first", uid).unwrap_or_else(|_| panic!("repair"));
        assert_eq!(fs::read(&path).expect("read"), b"first");
        assert_ne!(fs::metadata(&path).expect("stat").ino(), inode);

        // A symlink in its place is replaced, not followed.
        let target = dir.join("target");
        fs::write(&target, b"first").expect("write");
        fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        install(&dir, "helper", b"first", uid).unwrap_or_else(|_| panic!("symlink"));
        assert!(fs::symlink_metadata(&path).expect("lstat").is_file());

        // No temporary file is left behind.
        let mut names: Vec<String> = fs::read_dir(&dir)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["helper", "target"]);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn concurrent_installs_never_show_a_partial_file() {
        let dir = scratch("concurrent");
        let uid = nix::unistd::geteuid().as_raw();
        private_dir(&dir, uid).unwrap_or_else(|_| panic!("mkdir {}", dir.display()));
        // Big enough that a write in place would be seen half done.
        let bytes: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let path = dir.join("helper");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut seen = 0;
                while !done.load(Ordering::Relaxed) {
                    // Absent before the first rename; complete whenever present.
                    if let Ok(got) = fs::read(&path) {
                        assert!(got == bytes, "read {} of {} bytes", got.len(), bytes.len());
                        seen += 1;
                    }
                }
                seen
            });
            let writers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..5 {
                            // Each writer tampers first, so that every round rewrites.
                            let _ = fs::remove_file(&path);
                            install(&dir, "helper", &bytes, uid)
                                .unwrap_or_else(|_| panic!("install"));
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().expect("writer");
            }
            done.store(true, Ordering::Relaxed);
            reader.join().expect("reader");
        });
        assert_eq!(fs::read(&path).expect("read"), bytes);
        assert_eq!(
            fs::read_dir(&dir).expect("readdir").count(),
            1,
            "temporaries left"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn untrusted_directories_are_refused() {
        let uid = nix::unistd::geteuid().as_raw();
        // Writable by others.
        let dir = scratch("writable");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(private_dir(&dir, uid), Err(Refusal::NotOurs(_))));
        // Someone else's (as far as the check knows: another uid is asked for).
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(matches!(
            private_dir(&dir, uid.wrapping_add(1)),
            Err(Refusal::NotOurs(_))
        ));
        assert!(private_dir(&dir, uid).is_ok());
        fs::remove_dir(&dir).expect("cleanup");
        // A symlink to a good directory.
        let real = scratch("real");
        let link = scratch("link");
        fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(matches!(private_dir(&link, uid), Err(Refusal::NotOurs(_))));
        fs::remove_file(&link).expect("cleanup");
        fs::remove_dir(&real).expect("cleanup");
    }

    #[test]
    fn the_embedded_directory_name_is_fixed_by_the_content() {
        let a = embedded_dir_name(1000, 0);
        assert_eq!(a, embedded_dir_name(1000, 0));
        assert!(a.starts_with("rsyscall-libexec-1000-"), "{a}");
        assert_eq!(a.len(), "rsyscall-libexec-1000-".len() + 16, "{a}");
        assert_eq!(embedded_dir_name(1000, 2), format!("{a}-2"));
        // FNV-1a's published test vector.
        let mut h = Fnv1a::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn built_helpers_are_found() {
        // With RSYSCALL_LIBEXEC_DIR set (as `cargo xtask test` does) the helper is there;
        // without it, the embedded one is written out and holds the embedded bytes.
        let path = helper_path("rsyscall-server").unwrap_or_else(|e| panic!("{e}"));
        assert!(path.ends_with("rsyscall-server"));
        let on_disk = fs::read(&path).expect("read");
        if override_dir().is_none() {
            assert_eq!(on_disk, helper_bytes("rsyscall-server").expect("embedded"));
            let parent = path.parent().and_then(Path::file_name).expect("dir");
            assert!(
                parent.to_string_lossy().starts_with(EMBEDDED_DIR_PREFIX),
                "{}",
                path.display()
            );
        }
        assert_eq!(
            helper_contents("rsyscall-server").expect("contents"),
            on_disk
        );
    }
}
