//! The OpenSSH test harness (`rsyscall_tests::ssh`) checked with the plain `ssh` client
//! only, no library code: each kind of host answers (or fails) the way the ssh-thread tests
//! will rely on.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rsyscall_tests::procs::children;
use rsyscall_tests::ssh::{NetnsSshd, SshEnv, SshTarget, find_program, output_within};
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

/// The names `ip netns list` shows.
fn netns_names() -> Vec<String> {
    let out = output_within(Command::new("ip").args(["netns", "list"]), LIMIT);
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Our children that are sshd processes.
fn sshd_children() -> Vec<i32> {
    children()
        .into_iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{}/comm", c.pid))
                .is_ok_and(|n| n.trim() == "sshd")
        })
        .map(|c| c.pid)
        .collect()
}

#[test]
fn netns_daemon_is_another_network_host() {
    let env = SshEnv::new();
    let daemon = NetnsSshd::start(&env);
    assert!(netns_names().iter().any(|n| n == daemon.netns()));
    assert!(sshd_children().contains(&(daemon.pid() as i32)));
    let out = ssh(
        daemon.target(),
        "readlink /proc/self/ns/net; echo $SSH_CONNECTION",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let theirs = lines.next().expect("readlink output");
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(theirs.starts_with("net:["), "{stdout}");
    assert_ne!(theirs, ours.to_str().unwrap());
    // The connection came over the veth pair, to the namespace's address.
    let connection: Vec<&str> = lines.next().expect("SSH_CONNECTION").split(' ').collect();
    assert_eq!(connection.len(), 4, "{stdout}");
    assert_eq!(connection[2], daemon.address().to_string());
    assert_eq!(connection[3], "22");
    let peer: std::net::Ipv4Addr = connection[0].parse().unwrap();
    assert_eq!(u32::from(peer), u32::from(daemon.address()) - 1);
    let name = daemon.netns().to_string();
    let pid = daemon.pid() as i32;
    drop(daemon);
    assert!(!netns_names().contains(&name), "{name} left behind");
    assert!(!sshd_children().contains(&pid), "sshd {pid} left behind");
}

#[test]
fn eight_netns_daemons_at_once() {
    let env = SshEnv::new();
    let before = netns_names();
    let daemons: Vec<NetnsSshd> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..8).map(|_| s.spawn(|| NetnsSshd::start(&env))).collect();
        starts
            .into_iter()
            .map(|h| h.join().expect("start"))
            .collect()
    });
    let mut addresses: Vec<_> = daemons.iter().map(NetnsSshd::address).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 8, "addresses shared: {addresses:?}");
    // One ssh to each, all running at once; each host says which address it was reached
    // at and which network namespace it is in.
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let runs: Vec<_> = daemons
            .iter()
            .map(|d| {
                s.spawn(|| {
                    ssh(
                        d.target(),
                        "set -- $SSH_CONNECTION; echo $3; readlink /proc/self/ns/net",
                    )
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().expect("ssh")).collect()
    });
    let mut namespaces = Vec::new();
    for (daemon, out) in daemons.iter().zip(&outputs) {
        assert!(out.status.success(), "{}: {out:?}", daemon.netns());
        let stdout = text(&out.stdout);
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some(daemon.address().to_string().as_str()));
        namespaces.push(lines.next().expect("readlink").to_string());
    }
    namespaces.sort();
    namespaces.dedup();
    assert_eq!(namespaces.len(), 8, "namespaces shared: {namespaces:?}");
    let names: Vec<String> = daemons.iter().map(|d| d.netns().to_string()).collect();
    let pids: Vec<i32> = daemons.iter().map(|d| d.pid() as i32).collect();
    assert!(pids.iter().all(|p| sshd_children().contains(p)));
    assert!(names.iter().all(|n| !before.contains(n)));
    drop(daemons);
    let after = netns_names();
    for name in &names {
        assert!(!after.contains(name), "{name} left behind");
    }
    // Other tests of this binary run sshd daemons of their own meanwhile: only ours count.
    let left: Vec<i32> = sshd_children()
        .into_iter()
        .filter(|p| pids.contains(p))
        .collect();
    assert_eq!(left, Vec::<i32>::new(), "sshd children left behind");
}

#[test]
fn a_missing_program_names_its_package() {
    let found = find_program("ssh", &["/usr/bin"], "openssh-client");
    assert!(found.is_absolute() && found.ends_with("ssh"), "{found:?}");
    let panic = std::panic::catch_unwind(|| {
        find_program("rsyscall-no-such-program", &["/usr/sbin"], "some-package")
    })
    .expect_err("found a program that does not exist");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("rsyscall-no-such-program")
            && message.contains("install the Debian package some-package"),
        "{message}"
    );
}

/// The pids of `parent`'s children.
fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(str::trim);
        if ppid == Some(parent.to_string().as_str()) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` is gone or a zombie (exited; its new parent may not have reaped it yet).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Starts `ssh -F cfg dest remote` with stdout piped, waits until ssh has a child (its
/// ProxyCommand) and, if `first_line`, until the remote command printed a line; then
/// SIGKILLs ssh, reaps it, and checks that the ProxyCommand ends by itself.
fn proxy_command_ends_with_killed_ssh(target: &SshTarget, remote: &str, first_line: bool) {
    use std::io::BufRead;
    let mut child = target
        .ssh_command()
        .arg(target.destination())
        .arg(remote)
        // Held open (and never written) so the remote command's stdin stays open too.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning ssh");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if first_line {
            let mut line = String::new();
            let mut stdout = std::io::BufReader::new(child.stdout.as_mut().unwrap());
            stdout.read_line(&mut line).unwrap();
            assert_eq!(line, "started\n");
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let proxies = children_of(child.id());
            if !proxies.is_empty() {
                break proxies;
            }
            assert!(Instant::now() < deadline, "ssh started no ProxyCommand");
            std::thread::sleep(Duration::from_millis(10));
        }
    }));
    child.kill().expect("SIGKILL ssh");
    child.wait().expect("reap ssh");
    let proxies = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let deadline = Instant::now() + LIMIT;
    while !proxies.iter().all(|&p| ended(p)) {
        assert!(
            Instant::now() < deadline,
            "ProxyCommand {proxies:?} outlived ssh"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn proxy_commands_end_when_ssh_is_killed() {
    let env = SshEnv::new();
    // sshd -i, mid-session: it reads EOF from the dead ssh (and its `cat`, EOF from sshd).
    proxy_command_ends_with_killed_ssh(&env.proxy_host(), "echo started; exec cat", true);
    // The silent host's cat, mid banner exchange (a timeout far beyond the test's bound).
    proxy_command_ends_with_killed_ssh(&env.silent_host(600), "true", false);
}
