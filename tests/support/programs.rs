//! Commands for the programs the tests exec, found on the local thread's `PATH`.

use rsyscall::{Command, local_thread};

/// `sh -c script`.
pub async fn sh(script: &str) -> Command {
    local_thread()
        .environ()
        .which("sh")
        .await
        .expect("sh on PATH")
        .args(["-c", script])
}

/// `sleep 1000`: a program that runs until it is killed.
pub async fn sleeper() -> Command {
    local_thread()
        .environ()
        .which("sleep")
        .await
        .expect("sleep on PATH")
        .arg("1000")
}
