//! Commands for the programs the tests exec, found on the local thread's `PATH`.

use rsyscall::{AsyncChildProcess, Command, Thread, local_thread, stdin_bootstrap};

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

/// `name` found on the local thread's `PATH`.
pub async fn which(name: &str) -> Command {
    local_thread()
        .environ()
        .which(name)
        .await
        .unwrap_or_else(|e| panic!("{name} on PATH: {e}"))
}

/// A thread through `env`: the launcher execs the helper, so it *is* the thread's process.
pub async fn env_thread() -> (AsyncChildProcess, Thread) {
    stdin_bootstrap(&local_thread(), which("env").await)
        .await
        .expect("stdin_bootstrap through env")
}
