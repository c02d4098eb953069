//! Memory syscalls, on the local task and a clone child.
//!
//! The clone child shares our address space, so in both variants the mapping's bytes are
//! checked directly through `MemoryMapping::local_ptr`.

use std::ptr::NonNull;

use rsyscall::near::{self, Errno, MADV, MAP, PROT};
use rsyscall::{Error, O, local_thread};
use rsyscall_tests::tasks::on_local_and_child;
use rsyscall_tests::tmp::TempDir;

const PAGE: usize = 4096;

/// Reads `len` bytes at `p`.
///
/// # Safety
/// `p..p + len` must be mapped readable for the duration of the call.
unsafe fn peek(p: NonNull<u8>, len: usize) -> Vec<u8> {
    // SAFETY: the caller guarantees the range is mapped readable; volatile reads because
    // other mappings (and the kernel) change these bytes behind the compiler's back.
    (0..len)
        .map(|i| unsafe { p.as_ptr().add(i).read_volatile() })
        .collect()
}

/// Writes `data` at `p`.
///
/// # Safety
/// `p..p + data.len()` must be mapped writable and not used by anything else.
unsafe fn poke(p: NonNull<u8>, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        // SAFETY: the caller guarantees the range is ours and writable.
        unsafe { p.as_ptr().add(i).write_volatile(*b) };
    }
}

/// Where `map_far_away` tries to map: 16 TiB and up, far below the top-down area (just
/// under the stack, near 128 TiB) and far above the program and its heap.
const FAR_AWAY: u64 = 0x1000_0000_0000;

/// A private anonymous mapping of `len` bytes at the first free slot of `region` (one
/// region per test, so tests running at once never reuse each other's unmapped ranges),
/// far from where the kernel hands out addresses to other threads' mmaps.
async fn map_far_away(
    task: &rsyscall::Task,
    region: u64,
    len: usize,
    prot: PROT,
    label: &str,
) -> rsyscall::MemoryMapping {
    for slot in 0..64u64 {
        let addr = near::Address::new(FAR_AWAY + region * 0x100_0000_0000 + slot * 0x1_0000_0000);
        match task
            .mmap_at(addr, len, prot, MAP::PRIVATE | MAP::ANONYMOUS, None, 0)
            .await
        {
            Ok(map) => return map,
            Err(e) if e.errno() == Some(Errno::EEXIST) => continue,
            Err(e) => panic!("{label}: mmap_at {:#x}: {e}", addr.as_u64()),
        }
    }
    panic!("{label}: no free slot for a fixed mapping above {FAR_AWAY:#x}")
}

#[test]
fn anonymous_private_mapping_write_discard_protect_unmap() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        // Placed far below where the kernel puts mappings it chooses itself (it allocates
        // top-down from just under the stack), so that once unmapped, the range stays
        // free while other tests' threads map memory, and the ENOMEM check below cannot
        // be fooled by a mapping that landed in the hole.
        let map = map_far_away(task, 0, 2 * PAGE, PROT::READ | PROT::WRITE, label).await;
        assert_eq!(map.len(), 2 * PAGE, "{label}");
        assert_eq!(map.addr().as_u64() % PAGE as u64, 0, "{label}");
        let p = map.local_ptr().expect("the child shares our address space");
        // SAFETY: `map` owns two fresh read-write pages, mapped until munmap below.
        unsafe {
            assert_eq!(
                peek(p, 2 * PAGE),
                vec![0; 2 * PAGE],
                "{label}: fresh is zero"
            );
            poke(p, b"hello");
            poke(NonNull::new_unchecked(p.as_ptr().add(PAGE)), b"page two");
            assert_eq!(peek(p, 5), b"hello", "{label}");
        }
        // DONTNEED on the first page only: private anonymous pages read back as zeros.
        map.madvise_range(0, PAGE, MADV::DONTNEED)
            .await
            .expect("madvise DONTNEED");
        // SAFETY: still mapped read-write.
        unsafe {
            assert_eq!(
                peek(p, 5),
                vec![0; 5],
                "{label}: DONTNEED discarded page one"
            );
            let second = NonNull::new_unchecked(p.as_ptr().add(PAGE));
            assert_eq!(peek(second, 8), b"page two", "{label}: page two kept");
        }
        map.mprotect(PROT::READ).await.expect("mprotect READ");
        // SAFETY: mapped readable.
        unsafe {
            let second = NonNull::new_unchecked(p.as_ptr().add(PAGE));
            assert_eq!(
                peek(second, 8),
                b"page two",
                "{label}: readable after mprotect"
            );
        }
        map.mprotect_range(PAGE, PAGE, PROT::NONE)
            .await
            .expect("mprotect NONE on page two");
        map.madvise(MADV::WILLNEED).await.expect("madvise WILLNEED");
        let (addr, len) = (map.addr(), map.len());
        map.munmap().await.expect("munmap");
        // The range is gone: mprotect on it fails with ENOMEM.
        // SAFETY: the range was ours and is now unmapped; nothing else maps there (see
        // `map_far_away`), and if something did, read-write is what every mapping in this
        // test process (allocator arenas, heap, stacks) already has.
        let r = unsafe { near::mprotect(task.sysif(), addr, len, PROT::READ | PROT::WRITE) }.await;
        assert_eq!(
            r.err().and_then(|e| e.errno()),
            Some(Errno::ENOMEM),
            "{label}: mprotect after munmap"
        );
    });
}

#[test]
fn madv_remove_zeroes_a_shared_anonymous_mapping() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let map = task
            .mmap(
                PAGE,
                PROT::READ | PROT::WRITE,
                MAP::SHARED | MAP::ANONYMOUS,
                None,
                0,
            )
            .await
            .expect("mmap");
        let p = map.local_ptr().expect("local address space");
        // SAFETY: `map` owns a fresh read-write page.
        unsafe {
            poke(p, b"to be removed");
            assert_eq!(peek(p, 13), b"to be removed", "{label}");
        }
        map.madvise(MADV::REMOVE).await.expect("madvise REMOVE");
        // SAFETY: still mapped read-write.
        assert_eq!(unsafe { peek(p, PAGE) }, vec![0; PAGE], "{label}: zeroed");
        map.munmap().await.expect("munmap");
    });
}

#[test]
fn shared_file_mapping_sees_file_writes_and_writes_the_file() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let tmp = TempDir::new("mem-file");
        let path = tmp.join("file");
        let mut content = b"original contents".to_vec();
        content.resize(PAGE, b'.');
        std::fs::write(&path, &content).expect("create the file");
        let fd = task
            .open(path.as_os_str().as_encoded_bytes(), O::RDWR, 0)
            .await
            .expect("open");
        let map = fd
            .mmap(PAGE, PROT::READ | PROT::WRITE, MAP::SHARED, 0)
            .await
            .expect("mmap the file");
        let p = map.local_ptr().expect("local address space");
        // SAFETY: `map` owns a read-write page mapping the file.
        assert_eq!(unsafe { peek(p, 17) }, b"original contents", "{label}");
        // A write to the file shows in the mapping (same page cache).
        task.write_all_bytes(&fd, b"ORIGINAL").await.expect("write");
        // SAFETY: as above.
        assert_eq!(unsafe { peek(p, 17) }, b"ORIGINAL contents", "{label}");
        // A write through the mapping shows in the file.
        // SAFETY: as above; nothing else writes these bytes.
        unsafe { poke(NonNull::new_unchecked(p.as_ptr().add(9)), b"CONTENTS") };
        let on_disk = std::fs::read(&path).expect("read the file");
        assert_eq!(&on_disk[..17], b"ORIGINAL CONTENTS", "{label}");
        // DONTNEED on a shared file mapping drops our view, not the data.
        map.madvise(MADV::DONTNEED).await.expect("madvise");
        // SAFETY: as above.
        assert_eq!(unsafe { peek(p, 17) }, b"ORIGINAL CONTENTS", "{label}");
        map.munmap().await.expect("munmap");
        drop(fd);
        std::fs::remove_file(&path).expect("remove");
    });
}

#[test]
fn mmap_refuses_bad_input_before_sending() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let rw = PROT::READ | PROT::WRITE;
        let anon = MAP::PRIVATE | MAP::ANONYMOUS;
        for flags in [anon | MAP::FIXED, anon | MAP::FIXED_NOREPLACE] {
            let r = task.mmap(PAGE, rw, flags, None, 0).await;
            assert!(
                matches!(r, Err(Error::InvalidArgument { .. })),
                "{label}: {flags:?}: {r:?}"
            );
        }
        let r = task.mmap(PAGE, rw, MAP::PRIVATE, None, 0).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: file mapping without fd: {r:?}"
        );
        let tmp = TempDir::new("mem-bad");
        let path = tmp.join("bad");
        std::fs::write(&path, vec![0u8; PAGE]).expect("create the file");
        let fd = task
            .open(path.as_os_str().as_encoded_bytes(), O::RDONLY, 0)
            .await
            .expect("open");
        let r = task.mmap(PAGE, rw, anon, Some(&fd), 0).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: anonymous with fd: {r:?}"
        );
        let r = fd.mmap(PAGE, PROT::READ, MAP::SHARED, u64::MAX).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{label}: offset beyond off_t: {r:?}"
        );
        // What only the kernel knows is its error: a zero length, writable shared mapping
        // of a read-only fd.
        let r = task.mmap(0, rw, anon, None, 0).await;
        assert_eq!(
            r.err().and_then(|e| e.errno()),
            Some(Errno::EINVAL),
            "{label}"
        );
        let r = fd.mmap(PAGE, rw, MAP::SHARED, 0).await;
        assert_eq!(
            r.err().and_then(|e| e.errno()),
            Some(Errno::EACCES),
            "{label}"
        );
        // Ranges outside the mapping, or not page aligned, are refused.
        let map = fd
            .mmap(PAGE, PROT::READ, MAP::SHARED, 0)
            .await
            .expect("mmap");
        for (offset, len) in [(0, PAGE + 1), (PAGE, 1), (usize::MAX, 2), (1, 1)] {
            let r = map.madvise_range(offset, len, MADV::DONTNEED).await;
            assert!(
                matches!(r, Err(Error::InvalidArgument { .. })),
                "{label}: madvise {offset}+{len}: {r:?}"
            );
            let r = map.mprotect_range(offset, len, PROT::NONE).await;
            assert!(
                matches!(r, Err(Error::InvalidArgument { .. })),
                "{label}: mprotect {offset}+{len}: {r:?}"
            );
        }
        // MADV_REMOVE on a read-only mapping is the kernel's refusal.
        let r = map.madvise(MADV::REMOVE).await;
        assert!(r.err().and_then(|e| e.errno()).is_some(), "{label}");
        map.munmap().await.expect("munmap");
        // An fd of another table is a mismatch, found before sending.
        if label == "child" {
            let local_fd = local_thread()
                .task()
                .open(path.as_os_str().as_encoded_bytes(), O::RDONLY, 0)
                .await
                .expect("open locally");
            let r = task
                .mmap(PAGE, PROT::READ, MAP::SHARED, Some(&local_fd), 0)
                .await;
            assert!(matches!(r, Err(Error::Mismatch(_))), "{r:?}");
        }
        drop(fd);
        std::fs::remove_file(&path).expect("remove");
    });
}

#[test]
fn mmap_at_places_exactly_and_never_replaces() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let rw = PROT::READ | PROT::WRITE;
        let anon = MAP::PRIVATE | MAP::ANONYMOUS;
        let first = map_far_away(task, 1, 2 * PAGE, rw, label).await;
        let p = first.local_ptr().expect("local address space");
        // SAFETY: `first` owns two fresh read-write pages.
        unsafe { poke(p, b"mine") };
        // Overlapping the second page: EEXIST, and the first mapping is untouched.
        let second_page = near::Address::new(first.addr().as_u64() + PAGE as u64);
        let r = task.mmap_at(second_page, 2 * PAGE, rw, anon, None, 0).await;
        assert_eq!(
            r.err().and_then(|e| e.errno()),
            Some(Errno::EEXIST),
            "{label}: overlap"
        );
        // SAFETY: still mapped read-write.
        assert_eq!(unsafe { peek(p, 4) }, b"mine", "{label}: not replaced");
        // Right after it: placed exactly there.
        let after = near::Address::new(first.addr().as_u64() + 2 * PAGE as u64);
        let next = task
            .mmap_at(after, PAGE, rw, anon, None, 0)
            .await
            .expect("mmap_at a free range");
        assert_eq!(next.addr(), after, "{label}");
        // Bad input is refused before sending.
        for (addr, flags) in [
            (near::Address::NULL, anon),
            (near::Address::new(after.as_u64() + 1), anon),
            (after, anon | MAP::FIXED),
        ] {
            let r = task.mmap_at(addr, PAGE, rw, flags, None, 0).await;
            assert!(
                matches!(r, Err(Error::InvalidArgument { .. })),
                "{label}: {addr:?} {flags:?}: {r:?}"
            );
        }
        next.munmap().await.expect("munmap");
        first.munmap().await.expect("munmap");
    });
}

#[test]
fn dropping_a_mapping_unmaps_it() {
    on_local_and_child(|thread, label| async move {
        let task = thread.task();
        let map = map_far_away(task, 2, PAGE, PROT::READ | PROT::WRITE, label).await;
        let (addr, len) = (map.addr(), map.len());
        drop(map);
        // The child shares our address space, so its mappings are unmapped at once too.
        // SAFETY: the range was ours and is now unmapped; nothing else maps there (see
        // `map_far_away`).
        let r = unsafe { near::mprotect(task.sysif(), addr, len, PROT::READ) }.await;
        assert_eq!(
            r.err().and_then(|e| e.errno()),
            Some(Errno::ENOMEM),
            "{label}: the dropped mapping is gone"
        );
    });
}
