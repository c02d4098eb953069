//! Persistent threads: a thread that keeps its fds across reconnects, outlives its
//! connection, and is attached to knowing only its socket path.
//!
//! Run with `cargo run --example persistent`. It removes everything it made: the socket
//! file (the thread removes it as it exits), the directory, and the thread itself.

use std::time::{Duration, Instant};

use rsyscall::{CLONE, Error, PersistentThread, local_thread};

fn main() -> Result<(), Error> {
    env_logger::init();
    let dir = std::env::temp_dir().join(format!("rsyscall-persistent-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|source| Error::Io {
        what: "creating the example's directory",
        source,
    })?;
    let result = async_io::block_on(tour(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn tour(dir: &std::path::Path) -> Result<(), Error> {
    let local = local_thread();
    let path = dir.join("thread.sock");

    // A child running the persistent server, listening at `path`.
    let thread = local.clone_persistent(&path).await?;
    let pid = thread.task().getpid().await?;
    println!("1. persistent thread {pid} listens at {}", path.display());

    // An fd in its table, then a reconnect: the fd is still valid, the table unchanged.
    let pipe = thread.pipe().await?;
    thread.reconnect(&local).await?;
    thread
        .task()
        .write_all_bytes(&pipe.write, b"written after a reconnect")
        .await?;
    let got = thread.task().read_bytes(&pipe.read, 64).await?;
    println!("2. after reconnecting: {:?}", String::from_utf8_lossy(&got));
    drop(pipe);

    // A persistent thread can clone ordinary children.
    let child = thread.clone(CLONE::empty()).await?;
    println!("3. it cloned child {}", child.task().getpid().await?);
    child.exit(0).await?.check().await?;

    // Detached from us: it would now survive this program's exit. Dropping our value
    // only closes our connection.
    thread.make_persistent().await?;
    drop(thread);

    // Knowing only the path, attach again (another program could do the same).
    let attached = PersistentThread::attach(&local, &path)
        .await
        .map_err(Error::from)?;
    println!(
        "4. attached to pid {} (its HOME is {:?})",
        attached.task().getpid().await?,
        attached.environ().get("HOME")
    );
    attached.exit(0).await?;
    println!("5. it exited and removed {}", path.display());

    // It is our child: the library reaps it in the background. Wait until it is gone so
    // that nothing outlives the example.
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(Error::invalid(
                "persistent example",
                "the thread did not go",
            ));
        }
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    Ok(())
}
