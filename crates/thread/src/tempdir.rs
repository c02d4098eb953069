//! Temporary directories: [`Thread::mkdtemp`] makes a private directory under the
//! thread's temporary directory; [`TempDir`] removes it with everything in it, on demand
//! ([`TempDir::cleanup`]) or when dropped.

use std::ffi::OsString;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rsyscall_handle::structs::FileType;
use rsyscall_handle::{BoxFuture, Error, FileDescriptor, Result, Task, local_namespaces};
use rsyscall_near::{AT, Errno, O};

use crate::background::Critical;
use crate::thread::Thread;

/// How many names [`Thread::mkdtemp`] tries before giving up.
const ATTEMPTS: usize = 100;

/// The length of the random suffix.
const SUFFIX_LEN: usize = 12;

/// A random name suffix of letters and digits.
fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    // RandomState is seeded from the OS's randomness; mix in a counter and the time so
    // that successive names differ.
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    let mut x = h.finish();
    let mut s = String::with_capacity(SUFFIX_LEN);
    for _ in 0..SUFFIX_LEN {
        s.push(char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize]));
        x /= ALPHABET.len() as u64;
        if x == 0 {
            x = std::hash::RandomState::new().build_hasher().finish();
        }
    }
    s
}

/// A directory made by [`Thread::mkdtemp`], removed with its contents by
/// [`TempDir::cleanup`] or when dropped.
///
/// Dropping cannot wait for syscalls, so a dropped `TempDir` is removed with `std::fs` in
/// the local process, which sees the same files only if the thread shares our mount
/// namespace (and has the same root directory: a thread that `chroot`ed sees other
/// paths). When the thread has its own mount namespace, dropping logs a warning that the
/// directory was left behind: call [`TempDir::cleanup`] there.
pub struct TempDir {
    thread: Thread,
    path: PathBuf,
    /// Set once the directory was removed or handed over.
    done: bool,
}

impl fmt::Debug for TempDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TempDir({}, {:?})", self.path.display(), self.thread)
    }
}

impl Thread {
    /// Makes a new directory `<tmpdir>/<prefix><random suffix>` with mode `0o700` (before
    /// the thread's umask) through this thread, where `<tmpdir>` is the thread's
    /// [`Environment::tmpdir`](crate::Environment::tmpdir) (`$TMPDIR`, else `/tmp`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a prefix containing `/` or NUL, or if
    /// every one of 100 random names was taken; the errors of `mkdirat` (`ENOENT` without
    /// the temporary directory, `EACCES`...).
    pub async fn mkdtemp(&self, prefix: &str) -> Result<TempDir> {
        if prefix.contains(['/', '\0']) {
            return Err(Error::invalid(
                "mkdtemp",
                format!("prefix {prefix:?} contains '/' or NUL"),
            ));
        }
        // A critical part (crate::background): dropped after a mkdirat was sent, it still
        // learns whether the directory was made, and the TempDir then removes it.
        let (this, prefix) = (self.duplicate(), prefix.to_owned());
        Critical::new(async move { this.mkdtemp_now(&prefix).await }).await
    }

    /// [`Thread::mkdtemp`]'s attempts.
    async fn mkdtemp_now(&self, prefix: &str) -> Result<TempDir> {
        let base = self.inner.environ.tmpdir();
        for _ in 0..ATTEMPTS {
            let path = base.join(format!("{prefix}{}", random_suffix()));
            match self.task().mkdirat(None, &path, 0o700).await {
                Ok(()) => {
                    return Ok(TempDir {
                        thread: self.duplicate(),
                        path,
                        done: false,
                    });
                }
                Err(e) if e.errno() == Some(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::invalid(
            "mkdtemp",
            format!(
                "{ATTEMPTS} random names under {} were all taken",
                base.display()
            ),
        ))
    }
}

impl TempDir {
    /// The directory's path, as its thread sees it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The thread that made it.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Keeps the directory: it is no longer removed; returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.done = true;
        std::mem::take(&mut self.path)
    }

    /// Removes the directory and everything in it through its thread (listing with
    /// `getdents64`, removing with `unlinkat`, never following symlinks). A directory
    /// already gone is not an error.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a filesystem is mounted somewhere inside (it is left
    /// alone: unmount it first); the errors of `openat`, `getdents64` and `unlinkat`. The
    /// directory is not removed on drop after a failure.
    pub async fn cleanup(mut self) -> Result<()> {
        self.done = true;
        remove_tree(self.thread.task(), &self.path).await
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.thread.task().namespaces().mountns != local_namespaces().mountns {
            log::warn!(
                "temporary directory {} of {:?} left behind: the thread has its own mount \
                 namespace, so it can only be removed with TempDir::cleanup",
                self.path.display(),
                self.thread
            );
            return;
        }
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("removing temporary directory {}: {e}", self.path.display()),
        }
    }
}

/// Removes `path` and everything under it through `task`.
async fn remove_tree(task: &Task, path: &Path) -> Result<()> {
    let dir = match task
        .open(path, O::RDONLY | O::DIRECTORY | O::NOFOLLOW, 0)
        .await
    {
        Ok(dir) => dir,
        Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let dev = dir.fstat().await;
    let result = match dev {
        Ok(st) => remove_contents(task, &dir, st.dev, path.as_os_str().to_owned()).await,
        Err(e) => Err(e),
    };
    let closed = dir.close().await;
    result?;
    closed?;
    task.unlinkat(None, path, AT::REMOVEDIR).await
}

/// Removes everything in the directory `dir` (on device `dev`; `shown` names it in
/// errors).
fn remove_contents<'a>(
    task: &'a Task,
    dir: &'a FileDescriptor,
    dev: u64,
    shown: OsString,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let entries = dir.getdents_all().await?;
        for entry in entries {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let is_dir = match entry.kind {
                FileType::Directory => true,
                FileType::Unknown => {
                    task.fstatat(Some(dir), &entry.name, AT::SYMLINK_NOFOLLOW)
                        .await?
                        .file_type()
                        == FileType::Directory
                }
                _ => false,
            };
            if !is_dir {
                task.unlinkat(Some(dir), &entry.name, AT::empty()).await?;
                continue;
            }
            let mut sub_shown = shown.clone().into_vec();
            sub_shown.push(b'/');
            sub_shown.extend_from_slice(&entry.name);
            let sub_shown = OsString::from_vec(sub_shown);
            let sub = task
                .openat(
                    Some(dir),
                    &entry.name,
                    O::RDONLY | O::DIRECTORY | O::NOFOLLOW,
                    0,
                )
                .await?;
            let result = async {
                let st = sub.fstat().await?;
                if st.dev != dev {
                    return Err(Error::invalid(
                        "TempDir::cleanup",
                        format!(
                            "a filesystem is mounted at {}; unmount it first",
                            Path::new(sub_shown.as_os_str()).display()
                        ),
                    ));
                }
                remove_contents(task, &sub, dev, sub_shown.clone()).await
            }
            .await;
            let closed = sub.close().await;
            result?;
            closed?;
            task.unlinkat(Some(dir), &entry.name, AT::REMOVEDIR).await?;
        }
        Ok(())
    })
}
