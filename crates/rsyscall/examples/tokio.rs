//! rsyscall inside a tokio application: its futures are plain futures, so they run on
//! tokio's multi-threaded runtime unchanged, next to tokio's own (here `tokio::spawn` and
//! `tokio::time::timeout`).
//!
//! 1. Several tasks are spawned with `tokio::spawn`; each clones a child of the local
//!    thread, gives it a pipe as stdout, execs `/bin/echo` in it, reads the output through
//!    an [`AsyncFileDescriptor`](rsyscall::thread::AsyncFileDescriptor) (no worker thread
//!    blocks while the program runs) and waits for it. They run concurrently on tokio's worker threads.
//! 2. One task puts `tokio::time::timeout` around waiting for a `sleep 30`: the timeout
//!    fires, the wait future is dropped (which is allowed at any await), and the program is
//!    then killed and reaped.
//!
//! Run with `cargo run --example tokio`. Every child is waited for; nothing is left.

use std::time::Duration;

use rsyscall::{CLONE, ChildState, Command, Error, Signal, local_thread};

/// How many tasks each run a program.
const TASKS: usize = 4;

#[tokio::main]
async fn main() -> Result<(), Error> {
    env_logger::init();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        tasks.push(tokio::spawn(echo(i)));
    }
    for task in tasks {
        let (i, output, worker) = task
            .await
            .map_err(|e| Error::invalid("tokio::spawn", format!("a task did not finish: {e}")))??;
        println!(
            "1. task {i} (finished on {worker}): echo said {:?}",
            output.trim_end()
        );
    }

    let timed = tokio::spawn(timeout_a_wait()).await.map_err(|e| {
        Error::invalid(
            "tokio::spawn",
            format!("the timeout task did not finish: {e}"),
        )
    })??;
    println!("{timed}");
    Ok(())
}

/// Runs `/bin/echo` in a fresh child with its output on a pipe; returns `i`, the output,
/// and the worker thread the task was on when it finished.
async fn echo(i: usize) -> Result<(usize, String, String), Error> {
    let local = local_thread();
    let pipe = local.pipe().await?;
    let child = local.clone(CLONE::empty()).await?;
    let stdout = child.inherit_fd(&pipe.write)?;
    child.task().dup2(&stdout, &child.stdout()).await?;
    drop(stdout);
    drop(pipe.write);
    let pid = child.task().getpid().await?;
    let command = Command::new("/bin/echo", "echo").arg(format!("hello from task {i}, pid {pid}"));
    let process = child.exec(command).await?;

    // Read to EOF without blocking the worker: the read end is registered with the
    // reactor the library uses (async-io's, on a thread of its own), and awaiting it
    // yields to tokio.
    let output = local.make_afd(pipe.read, true).await?;
    let mut text = Vec::new();
    loop {
        let chunk = output.read_some_bytes(4096).await?;
        if chunk.is_empty() {
            break;
        }
        text.extend_from_slice(&chunk);
    }
    output.close().await?;
    process.check().await?;
    let worker = std::thread::current()
        .name()
        .unwrap_or("an unnamed thread")
        .to_owned();
    Ok((i, String::from_utf8_lossy(&text).into_owned(), worker))
}

/// Starts `sleep 30`, gives up waiting after 200 ms with `tokio::time::timeout`, then
/// kills it and reaps it; returns what happened.
async fn timeout_a_wait() -> Result<String, Error> {
    let local = local_thread();
    let child = local.clone(CLONE::empty()).await?;
    let sleep = child
        .exec(Command::new("/bin/sleep", "sleep").arg("30"))
        .await?;
    let waited = tokio::time::timeout(Duration::from_millis(200), sleep.wait()).await;
    if waited.is_ok() {
        return Err(Error::invalid("timeout", "sleep 30 ended within 200 ms"));
    }
    sleep.kill(Signal::SIGKILL).await?;
    let state = sleep.wait().await?;
    if state != ChildState::Killed(Signal::SIGKILL) {
        return Err(Error::invalid("timeout", format!("sleep {state}")));
    }
    Ok(format!(
        "2. tokio::time::timeout gave up waiting for sleep 30 (pid {}) after 200 ms; \
         then it was killed and reaped: it {state}",
        sleep.pid()
    ))
}
