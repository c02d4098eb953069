//! Scratch directories for tests, removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the temp dir, removed (with its contents) when dropped, so also
/// when the test panics.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a new, empty directory whose name contains `name`, this process's id and a
    /// counter, so that no two tests (or test runs) share one.
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("rsyscall-test-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside it.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// Removes it now, returning the error that dropping it would ignore.
    pub fn remove(self) -> std::io::Result<()> {
        std::fs::remove_dir_all(&self.0)
        // Dropping `self` afterwards finds nothing left to remove.
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
