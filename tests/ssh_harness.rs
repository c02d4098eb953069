//! The OpenSSH test harness (`rsyscall_tests::ssh`) checked with the plain `ssh` client
//! only, no library code: each kind of host answers (or fails) the way the ssh-thread tests
//! will rely on.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rsyscall_tests::ssh::{SshEnv, SshTarget, output_within};
use rsyscall_tests::tmp::TempDir;

/// Bound on any one ssh run that is expected to finish.
const LIMIT: Duration = Duration::from_secs(60);

/// `ssh -F <config> <dest> <remote>`, captured, bounded.
fn ssh(target: &SshTarget, remote: &str) -> Output {
    output_within(
        target.ssh_command().arg(target.destination()).arg(remote),
        LIMIT,
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn proxy_host_runs_a_command() {
    let env = SshEnv::new();
    let host = env.proxy_host();
    // The exact command line the harness documents, spelled out.
    let out = output_within(
        Command::new(env.ssh_program())
            .arg("-F")
            .arg(host.config_file())
            .arg(host.destination())
            .args(["echo", "hi"]),
        LIMIT,
    );
    assert!(out.status.success(), "{out:?}: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    // And it is us on the other side: same user, sshd's variables set.
    let out = ssh(
        &host,
        "id -un; test -n \"$SSH_CONNECTION\" && echo has-ssh-connection",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}\nhas-ssh-connection\n", env.user())
    );
}

#[test]
fn proxy_host_forwards_a_unix_socket() {
    let env = SshEnv::new();
    let host = env.proxy_host();
    let scratch = TempDir::new("ssh-forward");
    let remote = scratch.join("remote.sock");
    let local = scratch.join("local.sock");
    let listener = UnixListener::bind(&remote).expect("bind remote.sock");
    let mut child = host
        .ssh_command()
        .args(["-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("{}:{}", local.display(), remote.display()))
        .arg(host.destination())
        .arg("sleep 30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ssh -L");
    // Everything after the spawn is bounded, and ssh is killed and reaped whatever happens.
    let result = std::panic::catch_unwind(|| {
        let deadline = Instant::now() + LIMIT;
        let mut client = loop {
            match UnixStream::connect(&local) {
                Ok(stream) => break stream,
                Err(e) => {
                    assert!(Instant::now() < deadline, "connecting {local:?}: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        listener.set_nonblocking(false).unwrap();
        client.set_read_timeout(Some(LIMIT)).unwrap();
        client.write_all(b"ping from the client").unwrap();
        let (mut server, _) = listener.accept().expect("accept the forwarded connection");
        server.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0u8; 20];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping from the client");
        server.write_all(b"pong").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
    });
    let running = child.try_wait().expect("waitpid").is_none();
    child.kill().expect("kill ssh");
    child.wait().expect("reap ssh");
    if let Err(panic) = result {
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        eprintln!("ssh stderr: {stderr}");
        std::panic::resume_unwind(panic);
    }
    assert!(running, "ssh exited before it was killed");
}

#[test]
fn refused_host_denies_permission() {
    let env = SshEnv::new();
    let out = ssh(&env.refused_host(), "echo hi");
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn silent_host_times_out() {
    let env = SshEnv::new();
    let host = env.silent_host(2);
    assert_eq!(host.connect_timeout_secs(), 2);
    // Bounded well above ConnectTimeout, well below a hang: output_within panics (after
    // killing ssh) if ssh does not give up by itself.
    let out = output_within(
        host.ssh_command().arg(host.destination()).arg("echo hi"),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        text(&out.stderr).contains("timed out"),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn noexec_tmp_host_cannot_exec_from_tmp() {
    let env = SshEnv::new();
    let host = env.noexec_tmp_host();
    let name = format!("rsyscall-ssh-harness-{}", std::process::id());
    let script = |dir: &str| {
        format!(
            "f={dir}/{name}; printf '#!/bin/sh\\necho ran\\n' > \"$f\" && chmod +x \"$f\" && \
             \"$f\"; rc=$?; rm -f \"$f\"; exit $rc"
        )
    };
    let out = ssh(&host, &script("/tmp"));
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = ssh(&host, &script("\"$HOME\""));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "ran\n");
    // Only that sshd's view changed: our /tmp still runs programs.
    let out = ssh(&env.proxy_host(), &script("/tmp"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "ran\n");
    // And the mount namespace is the sshd's own.
    let out = ssh(&host, "readlink /proc/self/ns/mnt");
    assert!(out.status.success(), "{out:?}");
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(text(&out.stdout).trim(), ours.to_str().unwrap());
}

#[test]
fn non_sh_user_does_not_run_shell_code() {
    let env = SshEnv::new();
    let host = env.non_sh_user_host();
    let user = host.user().to_string();
    assert_ne!(user, env.user());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .expect("the throwaway user exists");
    assert!(line.ends_with(":/usr/bin/perl"), "{line}");
    let out = ssh(&host, "echo hi");
    assert!(!text(&out.stdout).contains("hi"), "{out:?}");
    assert!(!out.status.success(), "{out:?}");
    // It did log in: the failure is perl's, not ssh's (255).
    assert_ne!(out.status.code(), Some(255), "{}", text(&out.stderr));
    drop(host);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd.lines().any(|l| l.starts_with(&format!("{user}:"))),
        "user {user} was not deleted"
    );
}

#[test]
fn env_directory_is_removed_with_the_last_user() {
    let env = SshEnv::new();
    let dir = env.dir().to_path_buf();
    let host = env.proxy_host();
    drop(env);
    assert!(host.config_file().exists());
    let out = ssh(&host, "echo hi");
    assert_eq!(text(&out.stdout), "hi\n", "{out:?}");
    drop(host);
    assert!(!dir.exists(), "{dir:?} left behind");
}
