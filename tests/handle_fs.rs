//! Filesystem syscalls, on the local task and a clone child.
//!
//! Each test works in a fresh directory under /tmp (made with std::fs, removed at the
//! end); a clone child shares our mount namespace, so the absolute paths work for both.
//! Syscalls that change per-process state shared through `CLONE_FS` (chdir, fchdir,
//! umask) run only in a child cloned without `CLONE_FS`, and we check ours is unchanged.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rsyscall::handle::structs::{FileType, Stat, Timespec};
use rsyscall::handle::{Error, FileDescriptor, Task};
use rsyscall::near::{AT, RENAME, STATX};
use rsyscall::{CLONE, Errno, O, local_thread};
use rsyscall_tests::errors::{errno, is_invalid};
use rsyscall_tests::tasks::{exit_cleanly, on_local_and_child, run};
use rsyscall_tests::tmp::TempDir;

async fn open_dir(task: &Task, path: &Path) -> FileDescriptor {
    task.openat(None, path, O::RDONLY | O::DIRECTORY, 0)
        .await
        .expect("open directory")
}

async fn names(dir: &FileDescriptor) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = dir
        .getdents_all()
        .await
        .expect("getdents")
        .into_iter()
        .map(|d| d.name)
        .collect();
    names.sort();
    names
}

#[test]
fn getdents_lists_dot_entries_then_new_files() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("getdents");
        let dir = open_dir(task, tmp.path()).await;
        let entries = dir.getdents_all().await.expect("getdents");
        let mut found: Vec<&[u8]> = entries.iter().map(|d| &d.name[..]).collect();
        found.sort();
        assert_eq!(found, [&b"."[..], b".."], "{label}");
        assert!(
            entries.iter().all(|d| d.kind == FileType::Directory),
            "{label}: {entries:?}"
        );
        // At the end of the directory: nothing more.
        assert!(
            dir.getdents().await.expect("getdents").is_empty(),
            "{label}"
        );

        let file = task
            .openat(Some(&dir), "file", O::CREAT | O::WRONLY, 0o644)
            .await
            .expect("create file");
        let dir = open_dir(task, tmp.path()).await;
        let entries = dir.getdents_all().await.expect("getdents");
        let entry = entries
            .iter()
            .find(|d| d.name == b"file")
            .unwrap_or_else(|| panic!("{label}: no entry for the new file in {entries:?}"));
        assert_eq!(entry.kind, FileType::Regular, "{label}");
        assert_eq!(entry.name_os(), "file");
        assert_eq!(
            entry.ino,
            file.fstat().await.expect("fstat").ino,
            "{label}: inode"
        );
        assert_eq!(names(&open_dir(task, tmp.path()).await).await.len(), 3);
    })
}

#[test]
fn getdents_into_a_buffer_and_too_small_a_buffer() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("getdents-buf");
        std::fs::write(tmp.join("a-file-with-a-long-name"), b"").expect("create");
        let dir = open_dir(task, tmp.path()).await;
        // 16 bytes cannot hold even the 19-byte header of one record: EINVAL.
        let small = task.malloc_bytes(16).await.expect("malloc");
        let r = dir.getdents64(small).await;
        assert_eq!(errno(r), Some(Errno::EINVAL), "{label}");
        // A large enough buffer is filled and split.
        let buf = task.malloc_bytes(4096).await.expect("malloc");
        let (filled, rest) = dir.getdents64(buf).await.expect("getdents64");
        assert!(filled.size() > 0, "{label}");
        assert_eq!(filled.size() + rest.size(), 4096, "{label}");
        let entries = filled.read().await.expect("parse");
        assert_eq!(entries.len(), 3, "{label}: {entries:?}");
        assert!(entries.iter().any(|d| d.name == b"a-file-with-a-long-name"));
        // Then the end of the directory.
        let (filled, _) = dir.getdents64(rest).await.expect("getdents64");
        assert_eq!(filled.size(), 0, "{label}");
        assert!(filled.read().await.expect("parse").is_empty());
    })
}

#[test]
fn getdents_on_a_removed_directory_is_enoent() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("getdents-removed");
        let sub = tmp.join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let dir = open_dir(task, &sub).await;
        std::fs::remove_dir(&sub).expect("rmdir");
        assert_eq!(errno(dir.getdents().await), Some(Errno::ENOENT), "{label}");
        // getdents64 on a regular file is ENOTDIR.
        std::fs::write(tmp.join("f"), b"").expect("create");
        let file = task
            .openat(None, tmp.join("f"), O::RDONLY, 0)
            .await
            .expect("open");
        assert_eq!(
            errno(file.getdents().await),
            Some(Errno::ENOTDIR),
            "{label}"
        );
    })
}

#[test]
fn mkdirat_then_unlinkat_removedir() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("mkdirat");
        let dir = open_dir(task, tmp.path()).await;
        task.mkdirat(Some(&dir), "sub", 0o755)
            .await
            .expect("mkdirat");
        let st = task.stat(tmp.join("sub")).await.expect("stat");
        assert_eq!(st.file_type(), FileType::Directory, "{label}");
        assert!(tmp.join("sub").is_dir());
        assert_eq!(
            errno(task.mkdirat(Some(&dir), "sub", 0o755).await),
            Some(Errno::EEXIST),
            "{label}"
        );
        // Without AT_REMOVEDIR a directory is not unlinked.
        assert_eq!(
            errno(task.unlinkat(Some(&dir), "sub", AT::empty()).await),
            Some(Errno::EISDIR),
            "{label}"
        );
        // A non-empty directory is not removed.
        std::fs::write(tmp.join("sub/f"), b"").expect("create");
        assert_eq!(
            errno(task.unlinkat(Some(&dir), "sub", AT::REMOVEDIR).await),
            Some(Errno::ENOTEMPTY),
            "{label}"
        );
        std::fs::remove_file(tmp.join("sub/f")).expect("rm");
        task.unlinkat(Some(&dir), "sub", AT::REMOVEDIR)
            .await
            .expect("rmdir");
        assert!(!tmp.join("sub").exists(), "{label}");
        assert_eq!(errno(task.stat(tmp.join("sub")).await), Some(Errno::ENOENT));
    })
}

#[test]
fn unlinkat_removes_a_file() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("unlinkat");
        std::fs::write(tmp.join("f"), b"x").expect("create");
        task.unlinkat(None, tmp.join("f"), AT::empty())
            .await
            .expect("unlinkat");
        assert!(!tmp.join("f").exists(), "{label}");
        assert_eq!(
            errno(task.unlinkat(None, tmp.join("f"), AT::empty()).await),
            Some(Errno::ENOENT),
            "{label}"
        );
        // AT_REMOVEDIR on a file is ENOTDIR.
        std::fs::write(tmp.join("g"), b"x").expect("create");
        assert_eq!(
            errno(task.unlinkat(None, tmp.join("g"), AT::REMOVEDIR).await),
            Some(Errno::ENOTDIR),
            "{label}"
        );
    })
}

#[test]
fn tmpfile_gets_a_name_through_proc_self_fd() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("tmpfile");
        let file = task
            .openat(None, tmp.path(), O::TMPFILE | O::RDWR, 0o600)
            .await
            .expect("O_TMPFILE");
        task.write_all_bytes(&file, b"anonymous")
            .await
            .expect("write");
        let dir = open_dir(task, tmp.path()).await;
        assert_eq!(names(&dir).await.len(), 2, "{label}: not linked yet");
        let proc_path = format!("/proc/self/fd/{}", file.near().as_raw());
        task.linkat(None, &proc_path, Some(&dir), "linked", AT::SYMLINK_FOLLOW)
            .await
            .expect("linkat");
        assert_eq!(
            std::fs::read(tmp.join("linked")).expect("read"),
            b"anonymous",
            "{label}"
        );
        assert_eq!(file.fstat().await.expect("fstat").nlink, 1, "{label}");
        // An ordinary hard link; then EEXIST for a taken name.
        task.linkat(Some(&dir), "linked", Some(&dir), "second", AT::empty())
            .await
            .expect("linkat");
        assert_eq!(file.fstat().await.expect("fstat").nlink, 2, "{label}");
        assert_eq!(
            errno(
                task.linkat(Some(&dir), "linked", None, tmp.join("second"), AT::empty())
                    .await
            ),
            Some(Errno::EEXIST),
            "{label}"
        );
    })
}

#[test]
fn renameat2_renames_and_noreplace_refuses() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("rename");
        std::fs::write(tmp.join("a"), b"A").expect("create");
        std::fs::write(tmp.join("b"), b"B").expect("create");
        let dir = open_dir(task, tmp.path()).await;
        task.renameat2(Some(&dir), "a", None, tmp.join("c"), RENAME::empty())
            .await
            .expect("rename");
        assert!(!tmp.join("a").exists(), "{label}");
        assert_eq!(std::fs::read(tmp.join("c")).expect("read"), b"A");
        let r = task
            .renameat2(Some(&dir), "c", Some(&dir), "b", RENAME::NOREPLACE)
            .await;
        assert_eq!(errno(r), Some(Errno::EEXIST), "{label}");
        assert_eq!(std::fs::read(tmp.join("b")).expect("read"), b"B");
        assert_eq!(std::fs::read(tmp.join("c")).expect("read"), b"A");
        task.renameat2(Some(&dir), "c", Some(&dir), "b", RENAME::EXCHANGE)
            .await
            .expect("exchange");
        assert_eq!(std::fs::read(tmp.join("b")).expect("read"), b"A", "{label}");
        assert_eq!(std::fs::read(tmp.join("c")).expect("read"), b"B", "{label}");
        task.renameat2(Some(&dir), "c", Some(&dir), "b", RENAME::empty())
            .await
            .expect("replace");
        assert_eq!(std::fs::read(tmp.join("b")).expect("read"), b"B", "{label}");
        assert!(!tmp.join("c").exists());
    })
}

#[test]
fn symlinkat_then_readlinkat() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("symlink");
        let dir = open_dir(task, tmp.path()).await;
        task.symlinkat("some/target", Some(&dir), "link")
            .await
            .expect("symlinkat");
        assert_eq!(
            std::fs::read_link(tmp.join("link")).expect("read_link"),
            Path::new("some/target")
        );
        assert_eq!(
            task.readlinkat(Some(&dir), "link")
                .await
                .expect("readlinkat"),
            b"some/target",
            "{label}"
        );
        let st = task.lstat(tmp.join("link")).await.expect("lstat");
        assert_eq!(st.file_type(), FileType::Symlink, "{label}");
        assert_eq!(st.size, 11);
        // A target longer than the first buffer is read whole (the retry path).
        let long = vec![b'x'; 3000];
        task.symlinkat(&long, None, tmp.join("long"))
            .await
            .expect("symlinkat");
        assert_eq!(
            task.readlinkat(None, tmp.join("long"))
                .await
                .expect("readlinkat"),
            long,
            "{label}"
        );
        // The buffer form truncates silently.
        let buf = task.malloc_bytes(4).await.expect("malloc");
        let (filled, rest) = task
            .readlinkat_into(Some(&dir), "link", buf)
            .await
            .expect("readlinkat");
        assert_eq!(filled.read().await.expect("read"), b"some", "{label}");
        assert_eq!(rest.size(), 0);
        // Not a symlink: EINVAL.
        assert_eq!(
            errno(task.readlinkat(None, tmp.path()).await),
            Some(Errno::EINVAL),
            "{label}"
        );
    })
}

#[test]
fn readlinkat_of_proc_self_fd_gives_the_path() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("proc-fd");
        let path = tmp.join("named-file");
        let file = task
            .openat(None, &path, O::CREAT | O::RDWR, 0o600)
            .await
            .expect("create");
        let target = task
            .readlinkat(None, format!("/proc/self/fd/{}", file.near().as_raw()))
            .await
            .expect("readlinkat");
        assert_eq!(target, path.as_os_str().as_bytes(), "{label}");
    })
}

#[test]
fn fstat_and_statx_follow_writes_and_fchmod() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("stat");
        let path = tmp.join("f");
        let file = task
            .openat(None, &path, O::CREAT | O::RDWR, 0o600)
            .await
            .expect("create");
        let st = file.fstat().await.expect("fstat");
        assert_eq!(st.size, 0, "{label}");
        assert_eq!(st.file_type(), FileType::Regular, "{label}");
        task.write_all_bytes(&file, b"hello, world")
            .await
            .expect("write");
        let st = file.fstat().await.expect("fstat");
        assert_eq!(st.size, 12, "{label}");
        assert_eq!(st.permissions(), 0o600, "{label}");
        assert_eq!(st.uid, our_uid(), "{label}");

        file.fchmod(0o640).await.expect("fchmod");
        let st = file.fstat().await.expect("fstat");
        assert_eq!(st.permissions(), 0o640, "{label}");
        // The path forms agree, and with what std sees.
        let by_path = task.stat(&path).await.expect("stat");
        assert_eq!(
            (by_path.ino, by_path.size, by_path.mode),
            (st.ino, 12, st.mode)
        );
        let dir = open_dir(task, tmp.path()).await;
        let at = task
            .fstatat(Some(&dir), "f", AT::empty())
            .await
            .expect("fstatat");
        assert_eq!(at.ino, st.ino);
        let empty = task
            .fstatat(Some(&file), "", AT::EMPTY_PATH)
            .await
            .expect("fstatat AT_EMPTY_PATH");
        assert_eq!(empty.ino, st.ino);
        let meta = std::fs::metadata(&path).expect("metadata");
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&meta),
            st.ino,
            "{label}"
        );

        let stx = file
            .statx(STATX::SIZE | STATX::MODE | STATX::INO)
            .await
            .expect("statx");
        assert!(stx.has(STATX::SIZE | STATX::MODE | STATX::INO), "{label}");
        assert_eq!(stx.size, 12, "{label}");
        assert_eq!(stx.permissions(), 0o640, "{label}");
        assert_eq!(stx.file_type(), FileType::Regular);
        assert_eq!(stx.ino, st.ino);
        let stx = task
            .statx(None, &path, AT::empty(), STATX::BASIC_STATS)
            .await
            .expect("statx");
        assert_eq!((stx.size, stx.nlink), (12, 1), "{label}");
        assert_eq!(stx.mtime.to_timespec(), st.mtime, "{label}");

        // fchmodat by path, and fchmodat2 with a flag.
        task.fchmodat(None, &path, 0o604, AT::empty())
            .await
            .expect("fchmodat");
        assert_eq!(file.fstat().await.expect("fstat").permissions(), 0o604);
        task.fchmodat(Some(&dir), "f", 0o644, AT::SYMLINK_NOFOLLOW)
            .await
            .expect("fchmodat2");
        assert_eq!(file.fstat().await.expect("fstat").permissions(), 0o644);
        assert_eq!(
            errno(task.stat(tmp.join("missing")).await),
            Some(Errno::ENOENT)
        );
    })
}

/// Our uid, read from /proc (the child has the same credentials).
fn our_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("Uid line")
}

/// Our gid, read from /proc.
fn our_gid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Gid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("Gid line")
}

#[test]
fn utimensat_sets_times() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("utimensat");
        let path = tmp.join("f");
        std::fs::write(&path, b"x").expect("create");
        let before = task.stat(&path).await.expect("stat");
        let mtime = Timespec {
            sec: 1_000_000_000,
            nsec: 123_456_789,
        };
        task.utimensat(None, &path, [Timespec::UTIME_OMIT, mtime], AT::empty())
            .await
            .expect("utimensat");
        let after = task.stat(&path).await.expect("stat");
        assert_eq!(after.mtime, mtime, "{label}");
        assert_eq!(after.atime, before.atime, "{label}: atime omitted");
        let atime = Timespec {
            sec: 2_000_000,
            nsec: 0,
        };
        task.utimensat(None, &path, [atime, Timespec::UTIME_OMIT], AT::empty())
            .await
            .expect("utimensat");
        let after = task.stat(&path).await.expect("stat");
        assert_eq!((after.atime, after.mtime), (atime, mtime), "{label}");
        // UTIME_NOW through the fd form.
        let file = task.openat(None, &path, O::RDWR, 0).await.expect("open");
        file.futimens([Timespec::UTIME_OMIT, Timespec::UTIME_NOW])
            .await
            .expect("futimens");
        let now = file.fstat().await.expect("fstat");
        assert!(now.mtime > mtime, "{label}: {:?}", now.mtime);
        assert_eq!(now.atime, atime, "{label}");
        // Nanoseconds out of range: EINVAL from the kernel.
        let bad = Timespec {
            sec: 0,
            nsec: 1_000_000_000,
        };
        assert_eq!(
            errno(task.utimensat(None, &path, [bad, bad], AT::empty()).await),
            Some(Errno::EINVAL),
            "{label}"
        );
    })
}

#[test]
fn faccessat_checks_permissions() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("access");
        let path = tmp.join("f");
        std::fs::write(&path, b"x").expect("create");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        task.access(&path, libc::F_OK).await.expect("access");
        let dir = open_dir(task, tmp.path()).await;
        task.faccessat(Some(&dir), "f", libc::R_OK, AT::EACCESS)
            .await
            .expect("faccessat");
        // No execute bit at all: refused even for root.
        assert_eq!(
            errno(
                task.faccessat(Some(&dir), "f", libc::X_OK, AT::empty())
                    .await
            ),
            Some(Errno::EACCES),
            "{label}"
        );
        assert_eq!(
            errno(
                task.faccessat(Some(&dir), "nope", libc::F_OK, AT::empty())
                    .await
            ),
            Some(Errno::ENOENT),
            "{label}"
        );
    })
}

#[test]
fn fchown_to_our_own_ids() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("fchown");
        let file = task
            .openat(None, tmp.join("f"), O::CREAT | O::RDWR, 0o600)
            .await
            .expect("create");
        let (uid, gid) = (our_uid(), our_gid());
        file.fchown(Some(uid), Some(gid)).await.expect("fchown");
        file.fchown(None, None).await.expect("fchown unchanged");
        let st = file.fstat().await.expect("fstat");
        assert_eq!((st.uid, st.gid), (uid, gid), "{label}");
        assert!(
            is_invalid(&file.fchown(Some(u32::MAX), None).await),
            "{label}"
        );
    })
}

#[test]
fn bad_input_is_refused_before_sending() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("bad-input");
        let mut with_nul = tmp.path().as_os_str().as_bytes().to_vec();
        with_nul.extend_from_slice(b"/a\0b");
        // Were the path sent, the kernel would read it up to the NUL and make "a".
        assert!(
            is_invalid(&task.mkdirat(None, &with_nul, 0o755).await),
            "{label}"
        );
        assert!(
            is_invalid(
                &task
                    .openat(None, &with_nul, O::CREAT | O::WRONLY, 0o600)
                    .await
            ),
            "{label}"
        );
        assert!(is_invalid(
            &task.symlinkat(&with_nul, None, &with_nul).await
        ));
        assert!(is_invalid(&task.symlinkat("target", None, &with_nul).await));
        assert!(is_invalid(
            &task
                .renameat2(None, tmp.path(), None, &with_nul, RENAME::empty())
                .await
        ));
        assert!(is_invalid(&task.chdir(&with_nul).await));
        assert!(!tmp.join("a").exists(), "{label}: something was sent");
        assert!(tmp.path().exists(), "{label}: the rename was sent");
        // Mode bits the kernel would drop.
        assert!(is_invalid(
            &task.mkdirat(None, tmp.join("m"), 0o40755).await
        ));
        assert!(!tmp.join("m").exists());
        assert!(is_invalid(&task.umask(0o1022).await));
        let file = task
            .openat(None, tmp.join("f"), O::CREAT | O::RDWR, 0o600)
            .await
            .expect("create");
        assert!(is_invalid(&file.fchmod(0o100644).await));
        assert_eq!(file.fstat().await.expect("fstat").permissions(), 0o600);
    })
}

#[test]
fn an_fd_of_another_table_is_a_mismatch() {
    run(async {
        let tmp = TempDir::new("mismatch");
        let local = local_thread();
        let dir = open_dir(local.task(), tmp.path()).await;
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let r = child.task().mkdirat(Some(&dir), "sub", 0o755).await;
        assert!(matches!(r, Err(Error::Mismatch(_))), "{r:?}");
        let r = child.task().fstatat(Some(&dir), "", AT::EMPTY_PATH).await;
        assert!(matches!(r, Err(Error::Mismatch(_))), "{r:?}");
        assert!(!tmp.join("sub").exists());
        exit_cleanly(child, "child").await;
    })
}

#[test]
fn chdir_getcwd_fchdir_in_a_child_without_clone_fs() {
    run(async {
        let ours = std::env::current_dir().expect("cwd");
        let local = local_thread();
        // Reading our own working directory changes nothing.
        assert_eq!(
            local.task().getcwd().await.expect("getcwd"),
            ours.as_os_str().as_bytes()
        );
        let tmp = TempDir::new("chdir");
        std::fs::create_dir(tmp.join("sub")).expect("mkdir");
        std::fs::write(tmp.join("sub/marker"), b"here").expect("create");
        let child = local.clone(CLONE::empty()).await.expect("clone");
        let task = child.task();
        task.chdir(tmp.path()).await.expect("chdir");
        assert_eq!(
            task.getcwd().await.expect("getcwd"),
            tmp.path().as_os_str().as_bytes()
        );
        // Relative paths now resolve in the new directory.
        task.chdir("sub").await.expect("chdir relative");
        let marker = task
            .openat(None, "marker", O::RDONLY, 0)
            .await
            .expect("open relative");
        assert_eq!(task.read_bytes(&marker, 16).await.expect("read"), b"here");
        assert_eq!(
            task.getcwd().await.expect("getcwd"),
            tmp.join("sub").as_os_str().as_bytes()
        );
        // fchdir back to the top.
        let top = open_dir(task, tmp.path()).await;
        top.fchdir().await.expect("fchdir");
        assert_eq!(
            task.getcwd().await.expect("getcwd"),
            tmp.path().as_os_str().as_bytes()
        );
        assert_eq!(errno(task.chdir("missing").await), Some(Errno::ENOENT));
        assert_eq!(errno(marker.fchdir().await), Some(Errno::ENOTDIR));
        // A removed working directory: getcwd says ENOENT.
        task.chdir("sub").await.expect("chdir");
        std::fs::remove_file(tmp.join("sub/marker")).expect("rm");
        std::fs::remove_dir(tmp.join("sub")).expect("rmdir");
        assert_eq!(errno(task.getcwd().await), Some(Errno::ENOENT));
        // A long working directory needs the larger-buffer retry.
        let mut deep = tmp.path().to_path_buf();
        for _ in 0..10 {
            deep.push("d".repeat(60));
        }
        std::fs::create_dir_all(&deep).expect("mkdir -p");
        task.chdir(&deep).await.expect("chdir deep");
        assert_eq!(
            task.getcwd().await.expect("getcwd"),
            deep.as_os_str().as_bytes()
        );
        // Our own working directory did not move.
        assert_eq!(std::env::current_dir().expect("cwd"), ours);
        assert_eq!(
            local.task().getcwd().await.expect("getcwd"),
            ours.as_os_str().as_bytes()
        );
        exit_cleanly(child, "child").await;
    })
}

/// The umask of the test process, from /proc.
fn our_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .expect("Umask line")
}

#[test]
fn umask_in_a_child_without_clone_fs() {
    run(async {
        let ours = our_umask();
        let child = local_thread().clone(CLONE::empty()).await.expect("clone");
        let task = child.task();
        let tmp = TempDir::new("umask");
        let old = task.umask(0o077).await.expect("umask");
        assert_eq!(old, ours, "the child starts with a copy of our umask");
        task.mkdirat(None, tmp.join("d"), 0o777)
            .await
            .expect("mkdirat");
        let st: Stat = task.stat(tmp.join("d")).await.expect("stat");
        assert_eq!(st.permissions(), 0o700);
        assert_eq!(task.umask(0o022).await.expect("umask"), 0o077);
        task.mkdirat(None, tmp.join("e"), 0o777)
            .await
            .expect("mkdirat");
        assert_eq!(
            task.stat(tmp.join("e")).await.expect("stat").permissions(),
            0o755
        );
        assert_eq!(our_umask(), ours, "our own umask did not change");
        exit_cleanly(child, "child").await;
    })
}
