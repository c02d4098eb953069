//! Mocking a program with the unix stub: a shell script that mails a report through
//! `sendmail` runs our stub instead, and we take over the process it started: we read the
//! message on its stdin, look at its arguments, and choose the exit status the script
//! sees. Then the time from running a stub to `accept` returning, against running a
//! wrapper script of `/bin/true` the same way.
//!
//! Run with `cargo run --example mock_program`: nothing needs to be built or installed
//! first, as the stub comes embedded in the library and is written out on first use
//! (`rsyscall::thread::libexec`). It removes everything it made: the wrapper, the socket
//! and its directory.

use std::time::{Duration, Instant};

use rsyscall::{ChildState, Error, StubServer, local_thread};

fn main() -> Result<(), Error> {
    env_logger::init();
    async_io::block_on(tour())
}

async fn tour() -> Result<(), Error> {
    let local = local_thread();
    // A directory for the mock, put first on the script's PATH.
    let bin = local.mkdtemp("rsyscall-mock-program-").await?;
    let server = StubServer::make(&local, bin.path(), "sendmail").await?;
    println!(
        "1. {} runs the stub, which connects to {}",
        bin.path().join("sendmail").display(),
        server.socket_path().unwrap_or_default().display()
    );

    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = "printf 'Subject: nightly report\\n\\nall green\\n' | sendmail -t ops@example.com \
                  && echo 'script: mail sent' || echo \"script: sendmail failed with $?\"";
    let sh = local.environ().which("sh").await?;
    let command = sh.args(["-c", script]).env("PATH", &path);

    // Twice: accepted the first time, refused with EX_TEMPFAIL (75) the second.
    for (round, status) in [(2, 0), (3, 75)] {
        let script = local.clone(rsyscall::CLONE::empty()).await?;
        let script = script.exec(command.clone()).await?;
        let (argv, stub) = server.accept().await?;
        let message = stub.read_to_eof(&stub.stdin()).await?;
        println!(
            "{round}. the script ran {argv:?} with {:?} on stdin; answering {status}",
            String::from_utf8_lossy(&message)
        );
        stub.exit(status).await?;
        if script.wait().await? != ChildState::Exited(0) {
            return Err(Error::invalid("mock_program", "the script failed"));
        }
    }

    // Accept latency: running the wrapper until accept returns a thread (then exiting
    // it), against running a #!/bin/sh wrapper that execs /bin/true.
    let rounds = 20;
    let wrapper = bin.path().join("sendmail");
    let mut stub_time = Duration::ZERO;
    for _ in 0..rounds {
        let start = Instant::now();
        let child = local.clone(rsyscall::CLONE::empty()).await?;
        let process = child
            .exec(rsyscall::Command::new(&wrapper, "sendmail"))
            .await?;
        let (_, stub) = server.accept().await?;
        stub_time += start.elapsed();
        stub.exit(0).await?;
        process.wait().await?;
    }
    let true_wrapper = bin.path().join("true-wrapper");
    local
        .spit(
            true_wrapper.as_path(),
            b"#!/bin/sh\nexec /bin/true \"$0\" \"$@\"\n",
            0o755,
        )
        .await?;
    let mut true_time = Duration::ZERO;
    for _ in 0..rounds {
        let start = Instant::now();
        let child = local.clone(rsyscall::CLONE::empty()).await?;
        let process = child
            .exec(rsyscall::Command::new(&true_wrapper, "true"))
            .await?;
        process.wait().await?;
        true_time += start.elapsed();
    }
    println!(
        "4. mean over {rounds}: wrapper run to accept returning {:?}; wrapper of /bin/true \
         run to exit {:?}",
        stub_time / rounds,
        true_time / rounds
    );

    server.close().await?;
    bin.cleanup().await?;
    println!("5. wrapper, socket and directories removed");
    Ok(())
}
