//! A sandbox: a program run in fresh user, pid, mount and network namespaces, on a root
//! filesystem of its own entered through `pivot_root`, with its output captured here.
//!
//! The child is cloned straight into its new namespaces (`CLONE_NEWUSER | CLONE_NEWPID |
//! CLONE_NEWNS | CLONE_NEWNET`; the library writes the one-line uid and gid maps of the new
//! user namespace, so it needs no privilege). Then, by syscalls run inside it:
//! 1. every mount is made private, so nothing below propagates back to us;
//! 2. a tmpfs is mounted on an empty directory, the future root, and the host's `/usr`,
//!    `/bin`, `/sbin`, `/lib` and `/lib64` are bind-mounted into it read-only (those that
//!    exist; a symlink such as a merged-`/usr` system's `/bin -> usr/bin` is made again as
//!    a symlink);
//!    a fresh `/proc` is mounted there for the new pid and network namespaces;
//! 3. `pivot_root` makes the tmpfs the root, the old root is unmounted and its mount point
//!    removed, and `lo` is brought up;
//! 4. the child's stdout becomes a pipe of ours, and it execs `/bin/sh`, which reports its
//!    pid (1: it is the init of its pid namespace), the new root's listing and the network
//!    interfaces it sees (only `lo`, from `/proc/net/dev`).
//!
//! Run with `cargo run --example sandbox`. Linux must allow user namespaces
//! (`/proc/sys/user/max_user_namespaces` not 0). It removes everything it made: the mounts
//! live only in the child's mount namespace, which goes with it, and the empty directory
//! they were made on is removed at the end.

use rsyscall::structs::FileType;
use rsyscall::{AF, AT, CLONE, Command, Error, IFF, MNT, MS, SOCK, SockType, local_thread};

/// The host directories the sandbox sees.
const HOST_DIRS: [&str; 5] = ["/usr", "/bin", "/sbin", "/lib", "/lib64"];

/// What runs in the sandbox.
const SCRIPT: &str = r#"echo "pid $$"
echo "root: $(echo /*)"
echo "interfaces: $(sed -n 's/^ *\([^:]*\):.*/\1/p' /proc/net/dev)""#;

fn main() -> Result<(), Error> {
    env_logger::init();
    async_io::block_on(sandbox())
}

async fn sandbox() -> Result<(), Error> {
    let local = local_thread();
    // The root's mount point: an empty directory of ours. The tmpfs mounted on it exists
    // only in the child's mount namespace; here it stays empty.
    let root = local.mkdtemp("rsyscall-sandbox-").await?;
    // The program's stdout, made before the clone so that the child gets a copy.
    let pipe = local.pipe().await?;

    let child = local
        .clone(CLONE::NEWUSER | CLONE::NEWPID | CLONE::NEWNS | CLONE::NEWNET)
        .await?;
    println!(
        "1. cloned child {} into new namespaces; there it is pid {}",
        child.pid().map_or(0, |pid| pid.as_raw()),
        child.task().getpid().await?
    );

    // 1. Our mounts are shared with us until made private.
    child.mount("", "/", "", MS::REC | MS::PRIVATE, "").await?;

    // 2. The new root and what it holds of the host.
    let new_root = root.path().to_owned();
    child
        .mount(
            "tmpfs",
            &new_root,
            "tmpfs",
            MS::NOSUID | MS::NODEV,
            "mode=0755",
        )
        .await?;
    let mut made = Vec::new();
    for host_dir in HOST_DIRS {
        let inside = new_root.join(&host_dir[1..]);
        let stat = match child.task().lstat(host_dir).await {
            Ok(stat) => stat,
            Err(e) if e.errno() == Some(rsyscall::Errno::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        match stat.file_type() {
            FileType::Symlink => {
                let target = child.task().readlinkat(None, host_dir).await?;
                child
                    .task()
                    .symlinkat(target.as_slice(), None, &inside)
                    .await?;
                made.push(format!("{host_dir} (symlink)"));
            }
            FileType::Directory => {
                child.mkdir(&inside, 0o755).await?;
                child
                    .mount(host_dir, &inside, "", MS::BIND | MS::REC, "")
                    .await?;
                // A bind mount takes its flags from the mount it copies; read-only is a
                // remount. Flags the host locked (say nosuid) must be kept, so some hosts
                // refuse this with EPERM: then the directory stays writable.
                let read_only = MS::BIND | MS::REMOUNT | MS::RDONLY | MS::NOSUID | MS::NODEV;
                match child.mount("", &inside, "", read_only, "").await {
                    Ok(()) => made.push(format!("{host_dir} (read-only)")),
                    Err(e) if e.errno() == Some(rsyscall::Errno::EPERM) => {
                        made.push(format!("{host_dir} (read-write: {e})"))
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => continue,
        }
    }
    println!(
        "2. tmpfs root at {} with {}",
        new_root.display(),
        made.join(", ")
    );
    // A /proc of the new pid namespace (listing the sandbox's processes only) and of its
    // network namespace. The kernel allows it only while a full /proc is in sight in this
    // mount namespace, so before the old root goes.
    child.mkdir(new_root.join("proc"), 0o555).await?;
    child
        .mount(
            "proc",
            new_root.join("proc"),
            "proc",
            MS::NOSUID | MS::NODEV | MS::NOEXEC,
            "",
        )
        .await?;
    child.mkdir(new_root.join("old_root"), 0o700).await?;

    // 3. Into the new root; the old one is detached from the child's namespace.
    child
        .task()
        .pivot_root(&new_root, new_root.join("old_root"))
        .await?;
    child.task().chdir("/").await?;
    child.task().umount2("/old_root", MNT::DETACH).await?;
    child
        .task()
        .unlinkat(None, "/old_root", AT::REMOVEDIR)
        .await?;
    // A new network namespace has only a loopback interface, and it is down.
    let sock = child
        .socket(AF::INET, SockType::DGRAM, SOCK::empty())
        .await?;
    let flags = sock.siocgifflags(b"lo").await?;
    sock.siocsifflags(b"lo", flags | IFF::UP).await?;
    drop(sock);
    println!("3. pivot_root done, old root unmounted, lo up");

    // 4. The program, with stdout on our pipe.
    let stdout = child.inherit_fd(&pipe.write)?;
    child.task().dup2(&stdout, &child.stdout()).await?;
    drop(stdout);
    drop(pipe.write);
    let command = Command::new("/bin/sh", "sh").args(["-c", SCRIPT]);
    println!("4. exec'ing in the sandbox: {command}");
    let process = child.exec(command).await?;
    let output = local.read_to_eof(&pipe.read).await?;
    process.check().await?;
    println!("5. its output:");
    for line in String::from_utf8_lossy(&output).lines() {
        println!("   | {line}");
    }

    root.cleanup().await?;
    println!("6. it exited cleanly; {} removed", new_root.display());
    Ok(())
}
