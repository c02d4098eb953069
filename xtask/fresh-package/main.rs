//! The program of `cargo xtask fresh-package` (a step of `cargo xtask test`): a user's
//! program that depends on `rsyscall` by path, built with a fresh target directory, run with
//! `RSYSCALL_LIBEXEC_DIR` unset. Everything that execs a helper must work with the helpers
//! built into the library: a stub, a stdin-bootstrapped thread, a persistent thread
//! (reconnected and attached to again) and an ssh thread, through the per-connection sshd
//! `cargo xtask` sets up.
//!
//! It prints `helper NAME: PATH` for every helper it was given a path to (xtask checks them
//! too) and `ok: ...` after each part; any failure ends it with status 1 and a message.

use std::error::Error as StdError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rsyscall::structs::WaitId;
use rsyscall::thread::{SshHost, libexec};
use rsyscall::{
    CLONE, ChildState, Error, PersistentThread, Pid, StubServer, W, local_thread, stdin_bootstrap,
};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

const HELPERS: [&str; 4] = [
    "rsyscall-server",
    "rsyscall-stdin-bootstrap",
    "rsyscall-unix-stub",
    "rsyscall-bootstrap",
];

fn main() {
    if let Err(e) = async_io::block_on(run()) {
        eprintln!("FAILED: {e}");
        std::process::exit(1);
    }
    println!("all ok");
}

fn ensure(ok: bool, what: impl Into<String>) -> Result<()> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

async fn run() -> Result<()> {
    ensure(
        std::env::var_os(libexec::LIBEXEC_ENV).is_none(),
        format!(
            "{} is set: this program must use the embedded helpers",
            libexec::LIBEXEC_ENV
        ),
    )?;
    let scratch = PathBuf::from(
        std::env::var_os("RSYSCALL_FRESH_SCRATCH").ok_or("RSYSCALL_FRESH_SCRATCH is not set")?,
    );
    helpers()?;
    stub(&scratch).await?;
    bootstrap().await?;
    persistent(&scratch).await?;
    let config = std::env::var_os("RSYSCALL_FRESH_SSH_CONFIG")
        .ok_or("RSYSCALL_FRESH_SSH_CONFIG is not set: the ssh part needs an sshd")?;
    let destination = std::env::var("RSYSCALL_FRESH_SSH_DESTINATION")
        .map_err(|e| format!("RSYSCALL_FRESH_SSH_DESTINATION: {e}"))?;
    ssh(&destination, Path::new(&config)).await?;
    Ok(())
}

/// Every helper is written out in the private, content-addressed directory under the temp
/// dir, and holds exactly the embedded bytes.
fn helpers() -> Result<()> {
    let temp = std::env::temp_dir();
    for name in HELPERS {
        let path = libexec::helper_path(name)?;
        println!("helper {name}: {}", path.display());
        let dir = path.parent().ok_or("a helper path without a directory")?;
        ensure(
            dir.parent() == Some(temp.as_path())
                && dir.file_name().is_some_and(|n| {
                    n.to_string_lossy()
                        .starts_with(libexec::EMBEDDED_DIR_PREFIX)
                }),
            format!(
                "{} is not in a {}* directory of {}",
                path.display(),
                libexec::EMBEDDED_DIR_PREFIX,
                temp.display()
            ),
        )?;
        let embedded = libexec::helper_bytes(name).ok_or("a helper is not embedded")?;
        ensure(
            std::fs::read(&path)? == embedded,
            format!("{} differs from the embedded {name}", path.display()),
        )?;
    }
    println!("ok: helpers written out");
    Ok(())
}

/// A stub made with `StubServer::make`, run by a shell with arguments: its argv arrives,
/// it runs syscalls, and its exit status is the shell's to see.
async fn stub(scratch: &Path) -> Result<()> {
    let local = local_thread();
    let server = StubServer::make(&local, scratch, "mocked").await?;
    let wrapper = scratch.join("mocked");
    let script = format!("'{}' one 'two words'; exit $(($? + 1))", wrapper.display());
    let sh = local.environ().which("sh").await?.args(["-c", &script]);
    let child = local.clone(CLONE::empty()).await?;
    let shell = child.exec(sh).await?;
    let (argv, stub) = server.accept().await?;
    let expected: Vec<OsString> = vec![wrapper.into_os_string(), "one".into(), "two words".into()];
    ensure(
        argv == expected,
        format!("the stub's argv is {argv:?}, not {expected:?}"),
    )?;
    let pid = stub.task().getpid().await?;
    ensure(pid != shell.pid(), "the stub is the shell itself")?;
    stub.exit(41).await?;
    let state = shell.wait().await?;
    ensure(
        state == ChildState::Exited(42),
        format!("the shell ended with {state:?}, not Exited(42)"),
    )?;
    server.close().await?;
    println!("ok: stub (pid {pid}) got {argv:?}");
    Ok(())
}

/// A thread through `env`, which execs the stdin bootstrap in place.
async fn bootstrap() -> Result<()> {
    let local = local_thread();
    let env = local.environ().which("env").await?;
    let (launcher, thread) = stdin_bootstrap(&local, env).await?;
    let pid = thread.task().getpid().await?;
    ensure(
        pid == launcher.pid(),
        "the bootstrapped thread is not the launcher's process",
    )?;
    thread.exit(0).await?;
    let state = launcher.wait().await?;
    ensure(
        state == ChildState::Exited(0),
        format!("the launcher ended with {state:?}"),
    )?;
    println!("ok: stdin bootstrap through env (pid {pid})");
    Ok(())
}

/// A persistent thread keeps an fd across a reconnect and is attached to again by path.
async fn persistent(scratch: &Path) -> Result<()> {
    let local = local_thread();
    let path = scratch.join("persistent.sock");
    let thread = local.clone_persistent(&path).await?;
    let pid = thread.task().getpid().await?;
    let pipe = thread.pipe().await?;
    thread.reconnect(&local).await?;
    thread
        .task()
        .write_all_bytes(&pipe.write, b"after the reconnect")
        .await?;
    let got = thread.task().read_bytes(&pipe.read, 64).await?;
    ensure(got == b"after the reconnect", format!("read {got:?} back"))?;
    drop(pipe);
    thread.make_persistent().await?;
    drop(thread);
    let attached = PersistentThread::attach(&local, &path)
        .await
        .map_err(Error::from)?;
    let again = attached.task().getpid().await?;
    ensure(again == pid, format!("attached to pid {again}, not {pid}"))?;
    attached.exit(0).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        ensure(
            Instant::now() < deadline,
            "the persistent thread did not exit",
        )?;
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    println!("ok: persistent thread (pid {pid}) reconnected and attached");
    Ok(())
}

/// An ssh thread (its bootstrap sent from the embedded bytes) runs a program.
async fn ssh(destination: &str, config: &Path) -> Result<()> {
    let local = local_thread();
    // ssh does not wait for its ProxyCommand, the per-connection sshd: as a subreaper,
    // this program gets it when ssh ends and reaps it (init may not).
    local.task().set_child_subreaper(true).await?;
    let host = SshHost::new(destination).config_file(config);
    let (ssh, remote) = host.connect(&local).await?;
    let pid = remote.task().getpid().await?;
    let child = remote.clone(CLONE::empty()).await?;
    let sh = remote.environ().which("sh").await?.args(["-c", "exit 7"]);
    let state = child.exec(sh).await?.wait().await?;
    ensure(
        state == ChildState::Exited(7),
        format!("the remote shell ended with {state:?}"),
    )?;
    remote.exit(0).await?;
    drop(remote);
    ssh.check().await?;
    reap_orphaned_sshds().await?;
    println!("ok: ssh thread (remote pid {pid}) ran a program");
    Ok(())
}

/// Waits (at most 10 s) until no child of ours named `sshd` is left, reaping those that
/// ended, by pid, so that no child the library watches is taken from it.
async fn reap_orphaned_sshds() -> Result<()> {
    let ours = std::process::id().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = 0;
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // /proc/PID/stat: `pid (comm) state ppid ...`; comm may hold spaces.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((head, tail)) = stat.rsplit_once(") ") else {
                continue;
            };
            let mut fields = tail.split(' ');
            let (state, ppid) = (fields.next(), fields.next());
            if !head.ends_with("(sshd") || ppid != Some(ours.as_str()) {
                continue;
            }
            left += 1;
            if state == Some("Z") {
                local_thread()
                    .task()
                    .waitid(WaitId::Pid(Pid::new(pid)), W::EXITED)
                    .await?;
            }
        }
        if left == 0 {
            return Ok(());
        }
        ensure(
            Instant::now() < deadline,
            format!("{left} sshd processes did not end"),
        )?;
        async_io::Timer::after(Duration::from_millis(20)).await;
    }
}
