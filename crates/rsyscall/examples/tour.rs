//! A tour of rsyscall: clone a child, make syscalls in it, exec a program in it, wait.
//!
//! Run with `cargo run --example tour`; `RUST_LOG=rsyscall=trace cargo run --example tour`
//! also shows every syscall, with the thread it ran in, and each thread's creation, exec
//! and exit.

use rsyscall::{CLONE, Error, local_thread};

fn main() -> Result<(), Error> {
    env_logger::init();
    async_io::block_on(async {
        let parent = local_thread();
        println!("1. we are pid {}", parent.task().getpid().await?);

        // A pipe to capture the output of a program we will exec in the child. It is made
        // before the clone, so the child's fd table starts with a copy of it.
        let pipe = parent.pipe().await?;

        // A child process running a syscall server, sharing our address space.
        let child = parent.clone(CLONE::empty()).await?;
        println!(
            "2. cloned a child; the kernel gave it pid {:?}",
            child.pid()
        );

        // Every syscall below runs inside the child.
        let pid = child.task().getpid().await?;
        println!("3. getpid() run inside the child returns {pid}");

        let line = format!("4. this line was written by write(1, ...) inside pid {pid}\n");
        child
            .task()
            .write_all_bytes(&child.stdout(), line.as_bytes())
            .await?;

        // Give the child's copy of the pipe's write end to it as stdout, then exec.
        let write_end = child.inherit_fd(&pipe.write)?;
        child.task().dup2(&write_end, &child.stdout()).await?;
        drop(write_end);
        drop(pipe.write);
        let command = parent
            .environ()
            .which("sh")
            .await?
            .args(["-c", "echo \"hello from $0, pid $$\"; exit 7"]);
        println!("5. exec'ing in the child: {command}");
        let process = child.exec(command).await?;
        let output = parent.read_to_eof(&pipe.read).await?;
        print!("6. its output: {}", String::from_utf8_lossy(&output));
        let state = process.wait().await?;
        println!("7. it {state}");
        match process.check().await {
            Err(e @ Error::UncleanExit { .. }) => println!("8. check() reports: {e}"),
            other => println!("8. check() returned {other:?}"),
        }

        // run is clone + exec + check in one call; run_unchecked returns an unclean end
        // instead of failing. Both see the thread's environment, which can be changed.
        parent.environ().set("TOUR_GREETING", "hi")?;
        let command = parent
            .environ()
            .which("sh")
            .await?
            .args(["-c", "test \"$TOUR_GREETING\" = hi && exit 1"]);
        let state = parent.run_unchecked(command).await?;
        println!("9. run_unchecked: it {state}");
        parent.environ().remove("TOUR_GREETING");
        Ok(())
    })
}
