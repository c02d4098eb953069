//! Every `SshHost` builder option in real connections (issue 9 section 2): a host given only
//! by `port`, `user`, `identity` and `option` (no `-F` file), one reached through
//! `proxy_command`, one reachable only through a jump host (`proxy_jump`), and the bootstrap
//! binary given with `bootstrap_helper`. Each test also checks, in the arguments ssh got
//! (logged by a wrapper, `LoggingSsh`), that the option became the ssh flag it names, and
//! where it matters that the connection fails without it, so the option is what made it
//! work.
//!
//! The hosts are this machine (`rsyscall_tests::ssh`): `NetnsSshd` daemons in network
//! namespaces of their own, and per-connection `sshd -i`. Every await that could hang is
//! bounded; every ssh process a test starts is waited for.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rsyscall::{AsyncChildProcess, ChildState, Error, Thread, local_thread};
use rsyscall_handle::SshFailure;
use rsyscall_tests::ssh::{HOST_KEY_ALIAS, NetnsSshd, SshEnv};
use rsyscall_tests::ssh_leaks::LoggingSsh;
use rsyscall_tests::tmp::TempDir;
use rsyscall_thread::SshHost;

/// Bound on one step (a connect, a wait).
const STEP: Duration = Duration::from_secs(60);

/// `fut`, or a panic naming `what` once `limit` has passed.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    futures_lite::future::or(fut, async {
        async_io::Timer::after(limit).await;
        panic!("{what}: not done within {limit:?}");
    })
    .await
}

/// Runs a test body, bounded by 4 minutes.
fn run<T>(name: &str, f: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = async_io::block_on(within(Duration::from_secs(240), name, f));
    eprintln!("{name}: {:?}", start.elapsed());
    out
}

/// The options that make a host of `env` trusted and our key the one offered, given as
/// `-o` options instead of a config file: the known hosts file and the alias the host key
/// is listed under, strict checking, and nothing of the machine's own keys or agent.
fn trust(host: SshHost, env: &SshEnv) -> SshHost {
    host.identity(env.identity_file())
        .option(format!(
            "UserKnownHostsFile={}",
            env.known_hosts_file().display()
        ))
        .option("GlobalKnownHostsFile=/dev/null")
        .option(format!("HostKeyAlias={HOST_KEY_ALIAS}"))
        .option("StrictHostKeyChecking=yes")
        .option("IdentitiesOnly=yes")
        .option("IdentityAgent=none")
        .option("LogLevel=ERROR")
}

/// Connects from the local thread, bounded.
async fn connect(host: &SshHost) -> (AsyncChildProcess, Thread) {
    within(STEP, "connect", host.connect(&local_thread()))
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", host.destination()))
}

/// Exits the remote thread; ssh must then exit with 0.
async fn finish(ssh: AsyncChildProcess, remote: Thread) {
    within(STEP, "remote exit", remote.exit(0))
        .await
        .expect("remote exit");
    drop(remote);
    let state = within(STEP, "ssh wait", ssh.wait())
        .await
        .expect("ssh wait");
    assert_eq!(state, ChildState::Exited(0));
}

/// The kind of the [`Error::Ssh`] of a failed connect (and ssh's stderr); panics on another
/// result.
fn failure<T>(r: rsyscall::Result<T>, what: &str) -> (SshFailure, String) {
    match r {
        Err(Error::Ssh { kind, stderr, .. }) => (kind, stderr),
        Err(e) => panic!("{what}: expected Error::Ssh, got {e:?}"),
        Ok(_) => panic!("{what}: expected a failure, got a thread"),
    }
}

/// Whether `args` holds `flag` immediately followed by `value`.
fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// The index of `-o value` in `args`; panics if absent.
fn option_at(args: &[String], value: &str) -> usize {
    args.windows(2)
        .position(|w| w[0] == "-o" && w[1] == value)
        .unwrap_or_else(|| panic!("no `-o {value}` in {args:?}"))
}

/// The namespace of the network namespace link of `/proc/<pid>/ns/net`, read here.
fn netns_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .expect("a daemon's netns")
        .to_string_lossy()
        .into_owned()
}

/// The remote thread's network namespace, read through it.
async fn remote_netns(remote: &Thread) -> String {
    let ns = within(
        STEP,
        "readlink",
        remote.task().readlinkat(None, &b"/proc/self/ns/net"[..]),
    )
    .await
    .expect("readlink /proc/self/ns/net");
    String::from_utf8_lossy(&ns).into_owned()
}

/// `SSH_CONNECTION` of the remote session (client address, client port, server address,
/// server port), from the remote thread's environment.
fn ssh_connection(remote: &Thread) -> Vec<String> {
    let environ = remote.environ();
    let value = environ
        .get("SSH_CONNECTION")
        .expect("SSH_CONNECTION in the remote environment")
        .to_string_lossy()
        .into_owned();
    let fields: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    assert_eq!(fields.len(), 4, "SSH_CONNECTION {value:?}");
    fields
}

#[test]
fn port_user_identity_and_options_alone_reach_a_daemon() {
    let env = SshEnv::new();
    // Not port 22, so that `port` is needed; another user than ours, so that `user` is.
    let daemon = NetnsSshd::start_on_port(&env, 2222);
    let user = env.temp_user("/bin/sh");
    let ssh = LoggingSsh::new(&env);
    let address = daemon.address().to_string();
    let base = SshHost::new(&address).program(ssh.path());
    let host = trust(base.clone().port(2222).user(user.name()), &env);
    run("builder options alone", async {
        // Each option matters: without the port ssh goes to 22, where nothing listens...
        let r = within(
            STEP,
            "connect without port",
            trust(base.clone().user(user.name()), &env).connect(&local_thread()),
        )
        .await;
        let (kind, stderr) = failure(r, "without port");
        assert_eq!(kind, SshFailure::Unreachable, "{stderr}");
        assert!(stderr.contains("Connection refused"), "{stderr}");
        // ...and without the identity nothing offered is in authorized_keys.
        let r = within(
            STEP,
            "connect without identity",
            base.clone()
                .port(2222)
                .user(user.name())
                .option(format!(
                    "UserKnownHostsFile={}",
                    env.known_hosts_file().display()
                ))
                .option(format!("HostKeyAlias={HOST_KEY_ALIAS}"))
                .option("IdentitiesOnly=yes")
                .option("IdentityAgent=none")
                .connect(&local_thread()),
        )
        .await;
        let (kind, stderr) = failure(r, "without identity");
        assert_eq!(kind, SshFailure::AuthenticationRefused, "{stderr}");

        let (process, remote) = connect(&host).await;
        let uid = within(STEP, "getuid", remote.task().getuid())
            .await
            .expect("getuid");
        assert_eq!(uid, user.uid(), "the remote thread runs as the user given");
        assert_eq!(
            remote_netns(&remote).await,
            netns_of(daemon.pid()),
            "the thread is in the daemon's network namespace"
        );
        let conn = ssh_connection(&remote);
        assert_eq!(conn[2], address, "{conn:?}");
        assert_eq!(conn[3], "2222", "{conn:?}");
        finish(process, remote).await;
    });
    let argvs = ssh.argvs();
    assert_eq!(argvs.len(), 3, "{argvs:?}");
    let (_, args) = &argvs[2];
    assert!(!args.iter().any(|a| a == "-F"), "no config file: {args:?}");
    assert!(has_pair(args, "-p", "2222"), "{args:?}");
    assert!(has_pair(args, "-l", user.name()), "{args:?}");
    let identity = env.identity_file();
    assert!(has_pair(args, "-i", identity.to_str().unwrap()), "{args:?}");
    // The user's options come before ours, so that theirs win (ssh keeps the first).
    let theirs = option_at(args, "StrictHostKeyChecking=yes");
    let ours = option_at(args, "BatchMode=yes");
    assert!(theirs < ours, "{args:?}");
    // The destination is the address, after every option.
    let dest = args
        .iter()
        .position(|a| *a == address)
        .expect("destination");
    assert!(dest > ours && dest > theirs, "{args:?}");
    drop(daemon);
}

#[test]
fn proxy_command_alone_reaches_a_per_connection_sshd() {
    let env = SshEnv::new();
    let ssh = LoggingSsh::new(&env);
    let command = format!(
        "{} -i -f {}",
        env.sshd_program().display(),
        env.sshd_config().display()
    );
    // A name that resolves nowhere: only the proxy command can reach the host.
    let host = trust(
        SshHost::new("rsyscall-no-such-host.invalid")
            .program(ssh.path())
            .proxy_command(&command),
        &env,
    );
    run("proxy_command", async {
        let (process, remote) = connect(&host).await;
        // The remote thread descends from ssh: bootstrap, script, sshd's session, the
        // `sshd -i` the proxy command ran (ssh's child).
        let pid = within(STEP, "getpid", remote.task().getpid())
            .await
            .expect("getpid")
            .as_raw();
        let ssh_pid = process.pid().as_raw();
        let mut chain = vec![pid];
        let mut at = pid;
        while at > 1 && at != ssh_pid {
            at = ppid(at).unwrap_or_else(|| panic!("ppid of {at} (chain {chain:?})"));
            chain.push(at);
        }
        assert_eq!(
            at, ssh_pid,
            "the remote thread descends from ssh: {chain:?}"
        );
        finish(process, remote).await;
    });
    let argvs = ssh.argvs();
    assert_eq!(argvs.len(), 1, "{argvs:?}");
    let (_, args) = &argvs[0];
    assert!(!args.iter().any(|a| a == "-F"), "no config file: {args:?}");
    option_at(args, &format!("ProxyCommand={command}"));
}

/// The parent of process `pid`, from `/proc/PID/stat`.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn proxy_jump_reaches_a_host_only_its_jump_host_can_reach() {
    let env = SshEnv::new();
    let front = NetnsSshd::start(&env);
    let back = NetnsSshd::start_behind(&env, &front);
    // No link of ours reaches the back host's network (its veth peer is in the front
    // host's namespace). Whether a connection there fails from here depends on our default
    // route (a gateway may accept anything), so what shows that ssh went through the jump
    // host is where the back host's sshd saw the connection come from (below).
    let ssh = LoggingSsh::new(&env);
    let address = back.address().to_string();
    // The jump host's own ssh reads only the config file (ssh passes -F on, not -o): the
    // front host's alias is defined there; the back host is given by options alone.
    let host = trust(
        SshHost::new(&address)
            .program(ssh.path())
            .config_file(front.config_file()),
        &env,
    )
    .proxy_jump(front.destination());
    run("proxy_jump", async {
        let (process, remote) = connect(&host).await;
        assert_eq!(
            remote_netns(&remote).await,
            netns_of(back.pid()),
            "the thread is in the back host's network namespace"
        );
        // sshd there saw the connection come from the front host's end of their link, an
        // address that exists only in the front host's namespace.
        let conn = ssh_connection(&remote);
        assert_eq!(conn[0], back.peer_address().to_string(), "{conn:?}");
        assert!(
            std::net::TcpListener::bind((back.peer_address(), 0)).is_err(),
            "{} is not an address of ours",
            back.peer_address()
        );
        assert_eq!(conn[2], address, "{conn:?}");
        // Channels go through both hops.
        let pid = within(STEP, "getpid", remote.task().getpid())
            .await
            .expect("getpid");
        assert!(pid.as_raw() > 0);
        finish(process, remote).await;
    });
    let argvs = ssh.argvs();
    assert_eq!(argvs.len(), 1, "{argvs:?}");
    let (_, args) = &argvs[0];
    assert!(has_pair(args, "-J", &front.destination()), "{args:?}");
    drop(back);
    drop(front);
}

#[test]
fn bootstrap_helper_is_the_binary_sent() {
    let env = SshEnv::new();
    let target = env.proxy_host();
    let real = rsyscall_thread::libexec::helper_path("rsyscall-bootstrap")
        .expect("the helper")
        .canonicalize()
        .expect("the helper's path");
    // A "helper" of our own: a script that notes each mode it runs in, then runs the real
    // one. It is what gets copied to the host and run there.
    let dir = TempDir::new("ssh-helper");
    let log = dir.join("modes");
    let wrapper = dir.join("my-bootstrap");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ssh = LoggingSsh::new(&env);
    let host = SshHost::new(target.destination())
        .config_file(target.config_file())
        .program(ssh.path());
    run("bootstrap_helper", async {
        let (process, remote) = connect(&host.clone().bootstrap_helper(&wrapper)).await;
        let exe = within(
            STEP,
            "readlink",
            remote.task().readlinkat(None, &b"/proc/self/exe"[..]),
        )
        .await
        .expect("readlink");
        assert_eq!(Path::new(&*String::from_utf8_lossy(&exe)), real);
        finish(process, remote).await;
        // The script ran as the probe, then the two modes of the bootstrap.
        let modes = std::fs::read_to_string(&log).expect("the helper's log");
        assert_eq!(modes, "probe\nsocket\nrsyscall\n");

        // A helper that is not there: a typed error before ssh runs.
        let missing = dir.join("missing");
        let r = within(
            STEP,
            "connect with a missing helper",
            host.clone()
                .bootstrap_helper(&missing)
                .connect(&local_thread()),
        )
        .await;
        match r {
            Err(Error::Helper { detail, .. }) => {
                assert!(detail.contains(missing.to_str().unwrap()), "{detail}")
            }
            Err(e) => panic!("expected Error::Helper, got {e:?}"),
            Ok(_) => panic!("expected Error::Helper, got a thread"),
        }
    });
    assert_eq!(ssh.runs().len(), 1, "ssh ran only for the first connect");
}
