//! A hundred programs at once, from one task: every child is cloned, exec'd, read and
//! waited for concurrently, and the outputs come back in the order the programs were
//! started, whatever order they finish in.
//!
//! Each program is `sh -c 'echo N'` with its stdout on a pipe of ours. The futures of all
//! hundred are polled together by a small `join_all` written below with
//! `std::future::poll_fn` (no extra dependency; `futures::future::join_all` does the same),
//! on one `async_io::block_on`: no OS thread per program. A program's output is read
//! through an [`AsyncFileDescriptor`](rsyscall::thread::AsyncFileDescriptor), so waiting
//! for one never holds up the others.
//!
//! Run with `cargo run --example parallel`. Every program is waited for; nothing is left.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use rsyscall::{CLONE, Error, Thread, local_thread};

/// How many programs run at once.
const PROGRAMS: usize = 100;

fn main() -> Result<(), Error> {
    env_logger::init();
    async_io::block_on(async {
        let local = local_thread();
        let sh = local.environ().which("sh").await?;
        let live = Live::default();
        let start = Instant::now();
        let runs = (0..PROGRAMS)
            .map(|n| run(&local, sh.clone().args(["-c", &format!("echo {n}")]), &live))
            .collect();
        let outputs = join_all(runs).await;
        let elapsed = start.elapsed();

        // Collected in order: output n is program n's.
        let mut lines = Vec::new();
        for (n, output) in outputs.into_iter().enumerate() {
            let output = output?;
            if output != format!("{n}\n") {
                return Err(Error::invalid(
                    "parallel",
                    format!("program {n} printed {output:?}"),
                ));
            }
            lines.push(output.trim_end().to_owned());
        }
        println!("1. {PROGRAMS} programs ran at once in {elapsed:?}; their outputs, in order:");
        for row in lines.chunks(20) {
            println!("   {}", row.join(" "));
        }
        println!(
            "2. all {PROGRAMS} outputs in order, every program exited 0; up to {} children \
             were alive at the same time (cloned, not yet reaped)",
            live.peak.get()
        );
        Ok(())
    })
}

/// How many children have been cloned and not yet reaped, now and at most. (Counting from
/// the end of `exec` instead would undercount: an exec is known to be over only when the
/// connection to the child is seen hung up, and a short program such as `echo` has often
/// exited by the time its future is polled again.)
#[derive(Default)]
struct Live {
    now: Cell<usize>,
    peak: Cell<usize>,
}

/// Runs `command` in a fresh child of `parent` with stdout on a pipe; returns what it
/// printed, once it has exited cleanly.
async fn run(parent: &Thread, command: rsyscall::Command, live: &Live) -> Result<String, Error> {
    let pipe = parent.pipe().await?;
    let child = parent.clone(CLONE::empty()).await?;
    live.now.set(live.now.get() + 1);
    live.peak.set(live.peak.get().max(live.now.get()));
    let stdout = child.inherit_fd(&pipe.write)?;
    child.task().dup2(&stdout, &child.stdout()).await?;
    drop(stdout);
    drop(pipe.write);
    let process = child.exec(command).await?;

    let output = parent.make_afd(pipe.read, true).await?;
    let mut text = Vec::new();
    loop {
        let chunk = output.read_some_bytes(4096).await?;
        if chunk.is_empty() {
            break;
        }
        text.extend_from_slice(&chunk);
    }
    output.close().await?;
    let checked = process.check().await;
    live.now.set(live.now.get() - 1);
    checked?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Polls all `futures` together until every one is done; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
