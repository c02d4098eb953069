//! Real OpenSSH hosts for the tests, started and torn down by the tests themselves.
//!
//! [`SshEnv::new`] makes a private scratch directory holding an ed25519 host key, an ed25519
//! user key, an `authorized_keys`, a throwaway `sshd_config` and a `known_hosts` that lists
//! the host key under the alias [`HOST_KEY_ALIAS`]. From it come [`SshTarget`]s: a client
//! `ssh_config` file plus a destination, such that
//!
//! ```text
//! ssh -F <target.config_file()> <target.destination()> echo hi
//! ```
//!
//! prints `hi`, with `BatchMode`, strict host key checking against our `known_hosts` only,
//! `IdentitiesOnly` with our user key, and the current user (root in CI). The `-F` file
//! replaces `~/.ssh/config` and `/etc/ssh/ssh_config`, so nothing of the machine's own ssh
//! setup (agent, keys, known hosts) is used.
//!
//! Two kinds of host:
//! - per-connection: the config's `ProxyCommand` runs `sshd -i` on our `sshd_config`, so each
//!   ssh connection gets its own sshd talking over the ProxyCommand's pipes: no daemon, no
//!   port ([`SshEnv::proxy_host`], and the fault variants [`SshEnv::refused_host`],
//!   [`SshEnv::silent_host`], [`SshEnv::noexec_tmp_host`], [`SshEnv::all_noexec_host`],
//!   [`SshEnv::non_sh_user_host`]);
//! - daemons: [`NetnsSshd::start`] runs `sshd -D` in a network namespace of its own, joined
//!   to ours by a veth pair, so the host is another network host with its own address
//!   ([`NetnsSshd::start_on_port`]: on another port than 22; [`NetnsSshd::start_behind`]:
//!   joined to another daemon's namespace instead of ours, reachable only through it).
//!
//! Every ProxyCommand process is a child of the ssh client and ends with it (ssh hangs it up
//! when it exits; `sshd -i` and the silent host's `cat` also end when ssh's end of their
//! pipes closes, so even a SIGKILLed ssh leaves nothing). What is left to tear down is files
//! (the [`SshEnv`]'s directory, removed when its last user is dropped), the throwaway user of
//! [`SshEnv::non_sh_user_host`], and the namespace daemons; all go on drop.
//!
//! Missing programs make [`SshEnv::new`] (or the constructor that needs them) panic with a
//! message naming the Debian package to install. Everything here expects to run as root
//! (sshd's privilege separation, `ip netns`, `mount`, `useradd`), as the tests do in CI.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::tmp::TempDir;

/// The name our `known_hosts` lists the host key under; every target's config sets it as
/// `HostKeyAlias`, so the same key is checked whatever address a host has.
pub const HOST_KEY_ALIAS: &str = "rsyscall-test-sshd";

/// The `ConnectTimeout` (seconds) of the targets that are expected to answer: a bound on
/// connecting and the banner exchange, so a broken host cannot hang a test.
pub const CONNECT_TIMEOUT_SECS: u32 = 30;

/// The login shell of [`SshEnv::non_sh_user_host`]'s user: perl, which is not a POSIX shell
/// and is on every Debian (perl-base is Essential), so the test behaves the same everywhere.
/// sshd runs `perl -c 'COMMAND'`, which takes `COMMAND` as a script *file* name.
pub const NON_SH_SHELL: &str = "/usr/bin/perl";

/// The scratch directory and keys the targets share; see the [module docs](self).
///
/// Cloning is cheap and shares the directory, which is removed when the last clone and
/// the last [`SshTarget`] made from it are dropped.
#[derive(Clone)]
pub struct SshEnv {
    inner: Arc<EnvInner>,
}

struct EnvInner {
    dir: TempDir,
    ssh: PathBuf,
    sshd: PathBuf,
    user: String,
}

/// Counter for names unique within this process (users, namespaces, config files).
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// `name` found in one of `dirs` or on `PATH`, executable; panics naming `package` if it
/// is in none of them. What every constructor here uses to find its programs.
pub fn find_program(name: &str, dirs: &[&str], package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = dirs.iter().map(|d| Path::new(d).join(name)).collect();
    candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    candidates
        .into_iter()
        .find(|p| {
            p.is_absolute()
                && std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found (in {dirs:?} or on PATH): install the Debian package {package}"
            )
        })
}

/// Runs `cmd` to completion; panics with its output if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` to completion; on failure returns a message instead of panicking (for drops).
fn run_quiet(cmd: &mut Command) -> Result<(), String> {
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("running {cmd:?}: {e}")),
    }
}

/// `s` single-quoted for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The name of the user with our effective uid (the owner of `/proc/self`).
fn current_user() -> String {
    let uid = std::fs::metadata("/proc/self")
        .expect("stat /proc/self")
        .uid();
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| panic!("no /etc/passwd entry for uid {uid}"))
}

/// Makes an ed25519 key pair at `path` (and `path.pub`), returning the public key line.
fn keygen(ssh_keygen: &Path, path: &Path) -> String {
    run(Command::new(ssh_keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rsyscall-test", "-f"])
        .arg(path));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("reading a .pub key");
    public.trim().to_string()
}

impl SshEnv {
    /// A fresh environment: keys, `authorized_keys`, `sshd_config` and `known_hosts` in a new
    /// scratch directory. Also makes sure `/run/sshd` (sshd's privilege-separation
    /// directory) exists. Panics, naming the package, if `ssh`, `sshd` or `ssh-keygen` is
    /// missing.
    // Not `Default`: this makes files and may panic, which `default()` should not hide.
    #[allow(clippy::new_without_default)]
    pub fn new() -> SshEnv {
        let ssh = find_program("ssh", &["/usr/bin"], "openssh-client");
        let ssh_keygen = find_program("ssh-keygen", &["/usr/bin"], "openssh-client");
        let sshd = find_program("sshd", &["/usr/sbin"], "openssh-server");
        if let Err(e) = std::fs::create_dir_all("/run/sshd") {
            panic!("creating /run/sshd (sshd's privilege separation directory): {e}");
        }
        let dir = TempDir::new("ssh");
        // Config files name paths unquoted in places (ProxyCommand's %-tokens, sh words):
        // keep to characters that mean nothing there.
        let dir_str = dir.path().to_str().expect("temp dir path is UTF-8");
        assert!(
            dir_str
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
            "the temp dir {dir_str:?} has characters ssh config files would misread; set TMPDIR"
        );
        // The non-root user of non_sh_user_host must be able to read authorized_keys.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the ssh temp dir");

        let host_key = keygen(&ssh_keygen, &dir.join("host_key"));
        let user_key = keygen(&ssh_keygen, &dir.join("user_key"));
        keygen(&ssh_keygen, &dir.join("other_key"));
        std::fs::write(dir.join("authorized_keys"), format!("{user_key}\n"))
            .expect("writing authorized_keys");
        std::fs::write(
            dir.join("known_hosts"),
            format!("{HOST_KEY_ALIAS} {host_key}\n"),
        )
        .expect("writing known_hosts");
        let sshd_config = format!(
            "\
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
StreamLocalBindUnlink yes
LogLevel ERROR
",
            dir = dir_str
        );
        std::fs::write(dir.join("sshd_config"), sshd_config).expect("writing sshd_config");
        SshEnv {
            inner: Arc::new(EnvInner {
                dir,
                ssh,
                sshd,
                user: current_user(),
            }),
        }
    }

    /// The scratch directory holding the keys and config files.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// The ssh client program found (`/usr/bin/ssh` or on `PATH`).
    pub fn ssh_program(&self) -> &Path {
        &self.inner.ssh
    }

    /// The sshd program found (`/usr/sbin/sshd` or on `PATH`).
    pub fn sshd_program(&self) -> &Path {
        &self.inner.sshd
    }

    /// The throwaway `sshd_config` all our sshds run with.
    pub fn sshd_config(&self) -> PathBuf {
        self.inner.dir.join("sshd_config")
    }

    /// The user the targets log in as (the current user), except
    /// [`SshEnv::non_sh_user_host`].
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// The private key in `authorized_keys`, the targets' `IdentityFile`.
    pub fn identity_file(&self) -> PathBuf {
        self.inner.dir.join("user_key")
    }

    /// A client config for `alias` with our keys and options plus `extra` lines, written to
    /// a new file in the scratch directory.
    fn target(
        &self,
        alias: &str,
        identity: &str,
        user: &str,
        connect_timeout: u32,
        extra: &str,
        guard: Option<Arc<TempUser>>,
    ) -> SshTarget {
        let dir = self.dir().to_str().expect("UTF-8 temp dir");
        let config = format!(
            "\
Host {alias}
    User {user}
    IdentityFile \"{dir}/{identity}\"
    IdentitiesOnly yes
    IdentityAgent none
    BatchMode yes
    StrictHostKeyChecking yes
    UserKnownHostsFile \"{dir}/known_hosts\"
    GlobalKnownHostsFile /dev/null
    HostKeyAlias {HOST_KEY_ALIAS}
    UpdateHostKeys no
    CheckHostIP no
    ConnectTimeout {connect_timeout}
    ControlMaster no
    ControlPath none
    ForwardAgent no
    ForwardX11 no
    LogLevel ERROR
{extra}"
        );
        let path = self
            .inner
            .dir
            .join(format!("ssh_config-{alias}-{}", next_id()));
        std::fs::write(&path, config).expect("writing an ssh_config");
        SshTarget {
            env: self.clone(),
            config: path,
            alias: alias.to_string(),
            user: user.to_string(),
            connect_timeout,
            _user_guard: guard,
        }
    }

    /// The `ProxyCommand` line that runs our sshd per connection on `sshd_config`.
    fn proxy_sshd(&self) -> String {
        format!(
            "    ProxyCommand {} -i -f {}\n",
            self.inner.sshd.display(),
            self.sshd_config().display()
        )
    }

    /// The per-connection host: its `ProxyCommand` runs `sshd -i -f <sshd_config>`, so each
    /// connection starts its own sshd on the ProxyCommand's pipes (no daemon, no port).
    pub fn proxy_host(&self) -> SshTarget {
        let user = self.user().to_string();
        self.target(
            "proxy",
            "user_key",
            &user,
            CONNECT_TIMEOUT_SECS,
            &self.proxy_sshd(),
            None,
        )
    }

    /// Like [`SshEnv::proxy_host`], but the client offers a key that is not in
    /// `authorized_keys`: ssh exits 255 with `Permission denied (publickey)` on stderr.
    pub fn refused_host(&self) -> SshTarget {
        let user = self.user().to_string();
        self.target(
            "refused",
            "other_key",
            &user,
            CONNECT_TIMEOUT_SECS,
            &self.proxy_sshd(),
            None,
        )
    }

    /// A host that never answers: the `ProxyCommand` is a `cat` that swallows what ssh
    /// sends and never writes, and `ConnectTimeout` is `connect_timeout_secs`. OpenSSH
    /// (checked with 9.2) applies `ConnectTimeout` to the banner exchange too, so ssh exits
    /// 255 with `Connection timed out during banner exchange` after that many seconds.
    /// The `cat` ends when ssh does (it reads EOF), so nothing outlives ssh.
    pub fn silent_host(&self, connect_timeout_secs: u32) -> SshTarget {
        let user = self.user().to_string();
        // ssh runs `exec cat ...` through sh: stdout (ssh's read end) stays open as fd 3,
        // unwritten, while stdout proper goes to /dev/null.
        self.target(
            "silent",
            "user_key",
            &user,
            connect_timeout_secs,
            "    ProxyCommand cat 3>&1 >/dev/null\n",
            None,
        )
    }

    /// A per-connection host whose sshd runs in a private mount namespace where `/tmp` is a
    /// fresh `noexec` tmpfs: files written there cannot be executed (exit 126), while the
    /// home directory works as usual. The scratch directory stays visible at its path (bind
    /// mounted back on top of the new `/tmp`), so sshd still finds its config and keys.
    /// Needs `unshare` and `mount` (util-linux, mount).
    pub fn noexec_tmp_host(&self) -> SshTarget {
        let unshare = find_program("unshare", &["/usr/bin"], "util-linux");
        let mount = find_program("mount", &["/usr/bin", "/bin"], "mount");
        let dir = self.dir().to_str().expect("UTF-8 temp dir");
        // The shell keeps the scratch directory as its cwd, through which it is bound back
        // after the tmpfs hides it (`--no-canonicalize`: mount must not turn `.` back into
        // the path, which by then names the empty directory on the tmpfs).
        let script = format!(
            "\
set -e
cd {dir}
{mount} -t tmpfs -o noexec,nosuid,nodev,mode=1777 rsyscall-test-noexec /tmp
mkdir -p {dir}
{mount} --no-canonicalize --bind . {dir}
exec {sshd} -i -f {config}
",
            dir = sh_quote(dir),
            mount = sh_quote(&mount.display().to_string()),
            sshd = sh_quote(&self.inner.sshd.display().to_string()),
            config = sh_quote(&self.sshd_config().display().to_string()),
        );
        self.mount_namespace_host("noexec", &unshare, &script)
    }

    /// A per-connection host whose sshd is run by `script` (which ends by exec'ing it) in a
    /// private mount namespace made by `unshare`; `name` labels the target and the script.
    fn mount_namespace_host(&self, name: &str, unshare: &Path, script: &str) -> SshTarget {
        let script_path = self.inner.dir.join(format!("{name}-sshd-{}.sh", next_id()));
        std::fs::write(&script_path, script)
            .unwrap_or_else(|e| panic!("writing the {name} sshd script: {e}"));
        let user = self.user().to_string();
        self.target(
            name,
            "user_key",
            &user,
            CONNECT_TIMEOUT_SECS,
            &format!(
                "    ProxyCommand {} -m --propagation private /bin/sh {}\n",
                unshare.display(),
                script_path.display()
            ),
            None,
        )
    }

    /// A per-connection host where no directory the bootstrap may run from allows it: its
    /// sshd runs in a private mount namespace where `/tmp`, `/dev/shm`, `/var/tmp` and the
    /// user's home directory (from `/etc/passwd`) are bind mounted onto themselves and
    /// remounted `noexec`. Their contents are the real ones, seen from here too (so what a
    /// connection leaves there can be checked), but nothing in them can be executed there.
    /// sshd runs without PAM, so the session has no `$XDG_RUNTIME_DIR`. Needs `unshare`
    /// and `mount` (util-linux, mount).
    pub fn all_noexec_host(&self) -> SshTarget {
        let unshare = find_program("unshare", &["/usr/bin"], "util-linux");
        let mount = find_program("mount", &["/usr/bin", "/bin"], "mount");
        let home = home_of(self.user());
        let mut script = String::from("set -e\n");
        for dir in ["/tmp", "/dev/shm", "/var/tmp", home.as_str()] {
            if !Path::new(dir).is_dir() {
                continue;
            }
            script.push_str(&format!(
                "{mount} --bind {dir} {dir}\n{mount} -o remount,bind,noexec {dir}\n",
                mount = sh_quote(&mount.display().to_string()),
                dir = sh_quote(dir),
            ));
        }
        script.push_str(&format!(
            "exec {sshd} -i -f {config}\n",
            sshd = sh_quote(&self.inner.sshd.display().to_string()),
            config = sh_quote(&self.sshd_config().display().to_string()),
        ));
        self.mount_namespace_host("allnoexec", &unshare, &script)
    }

    /// A throwaway user (made with `useradd`, unique to this process, deleted when dropped)
    /// whose login shell is `shell` and whose home directory is in the scratch directory.
    /// Our user key logs in as it (`authorized_keys` is shared by every user). Needs
    /// `useradd`/`userdel` (passwd).
    pub fn temp_user(&self, shell: &str) -> TempUser {
        TempUser::new(self.dir(), shell)
    }

    /// The `known_hosts` file listing the host key under [`HOST_KEY_ALIAS`].
    pub fn known_hosts_file(&self) -> PathBuf {
        self.inner.dir.join("known_hosts")
    }

    /// A per-connection host that logs in as a throwaway user (made with `useradd`, unique
    /// to this process) whose login shell is [`NON_SH_SHELL`], not a POSIX shell: a remote
    /// command such as `echo hi` is not run as shell code. The user is deleted (`userdel`)
    /// when the last clone of the target is dropped. Needs `useradd`/`userdel` (passwd).
    pub fn non_sh_user_host(&self) -> SshTarget {
        let user = TempUser::new(self.dir(), NON_SH_SHELL);
        let name = user.name.clone();
        self.target(
            "nonsh",
            "user_key",
            &name,
            CONNECT_TIMEOUT_SECS,
            &self.proxy_sshd(),
            Some(Arc::new(user)),
        )
    }
}

/// What a client needs to reach one host: a config file for `ssh -F` and a destination.
///
/// Cloning is cheap; the files (and the throwaway user of [`SshEnv::non_sh_user_host`])
/// live until the last clone, and the [`SshEnv`], are dropped.
#[derive(Clone)]
pub struct SshTarget {
    env: SshEnv,
    config: PathBuf,
    alias: String,
    user: String,
    connect_timeout: u32,
    _user_guard: Option<Arc<TempUser>>,
}

impl SshTarget {
    /// The client config file, to pass as `ssh -F <file>`.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// The destination to give ssh along with [`SshTarget::config_file`]: a `Host` alias
    /// of that file, which sets everything else (user, key, known hosts, how to connect).
    pub fn destination(&self) -> String {
        self.alias.clone()
    }

    /// The user it logs in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Its `ConnectTimeout` in seconds.
    pub fn connect_timeout_secs(&self) -> u32 {
        self.connect_timeout
    }

    /// The environment it comes from.
    pub fn env(&self) -> &SshEnv {
        &self.env
    }

    /// `ssh -F <config_file>`: add options, then [`SshTarget::destination`] and a command.
    pub fn ssh_command(&self) -> Command {
        let mut cmd = Command::new(self.env.ssh_program());
        cmd.arg("-F").arg(&self.config);
        cmd
    }
}

/// How long [`NetnsSshd::start`] waits for its sshd to accept connections.
pub const DAEMON_START_LIMIT: Duration = Duration::from_secs(15);

/// How long dropping a [`NetnsSshd`] waits for its sshd to exit after SIGTERM before it
/// sends SIGKILL.
const DAEMON_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Counter for the network namespaces of this process (their names and subnets).
static NETNS_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// An sshd daemon (`sshd -D`) in a network namespace of its own, a separate network host:
/// the test makes the namespace (`ip netns add`), a veth pair between it and ours, and a
/// private /30 with our end at `.1` and the namespace's at `.2`, where sshd listens on
/// port 22 (or the port given to [`NetnsSshd::start_on_port`]). Its target connects there
/// directly (`HostName`, no ProxyCommand), with the same keys and options as the
/// per-connection hosts.
///
/// [`NetnsSshd::start_behind`] makes a host reachable only from another one: the other end
/// of its veth pair is in the front host's namespace instead of ours, so from here it can
/// be reached only by jumping through the front host (`ssh -J`).
///
/// The /30 is `10.0.0.0/8` block number `(pid % 16384) * 256 + counter % 256`, so test
/// processes running at once do not pick the same one (unless their pids are equal modulo
/// 16384); a block that overlaps any route or address already in our namespace (the
/// machine's own networks, another test's namespace) is skipped for the next one.
///
/// Dropping it stops sshd (SIGTERM, then SIGKILL after a bound), reaps it, and deletes the
/// veth pair and the namespace. Failures there are printed to stderr, never panics.
pub struct NetnsSshd {
    netns: String,
    host_veth: String,
    /// The namespace holding `host_veth`: `None` for ours, the front host's for
    /// [`NetnsSshd::start_behind`].
    host_veth_netns: Option<String>,
    address: Ipv4Addr,
    port: u16,
    target: Option<SshTarget>,
    sshd: Option<Child>,
    ip: PathBuf,
}

/// The first IPv4 address (with prefix length) of `line` of `ip -o route`/`ip -o addr`.
fn first_prefix(line: &str) -> Option<(u32, u32)> {
    line.split_whitespace().find_map(|word| {
        let (addr, len) = match word.split_once('/') {
            Some((a, l)) => (a, l.parse::<u32>().ok()?),
            None => (word, 32),
        };
        let addr: Ipv4Addr = addr.parse().ok()?;
        Some((u32::from(addr), len.min(32)))
    })
}

/// Whether `a/alen` and `b/blen` share an address.
fn overlaps((a, alen): (u32, u32), (b, blen): (u32, u32)) -> bool {
    let len = alen.min(blen);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

impl NetnsSshd {
    /// Makes the namespace and veth pair, starts sshd in it, and waits (at most
    /// [`DAEMON_START_LIMIT`]) until it accepts TCP connections from our side. Panics (after
    /// undoing what it did) if anything fails, with sshd's stderr. Needs `ip` (iproute2).
    pub fn start(env: &SshEnv) -> NetnsSshd {
        NetnsSshd::launch(env, 22, None)
    }

    /// Like [`NetnsSshd::start`], with sshd listening on `port` instead of 22 (its target's
    /// config says so).
    pub fn start_on_port(env: &SshEnv, port: u16) -> NetnsSshd {
        NetnsSshd::launch(env, port, None)
    }

    /// Like [`NetnsSshd::start`], but the host is joined to `front`'s namespace instead of
    /// ours: its veth peer (with the /30's `.1`) is in `front`'s namespace, so only `front`
    /// (and ssh jumping through it) can reach it; from our namespace it has no route. Its
    /// target's config reaches it through `ProxyJump` to `front`'s target (so the config
    /// file names both hosts). Readiness is checked from a thread of ours that joined
    /// `front`'s namespace. Drop it before `front`.
    pub fn start_behind(env: &SshEnv, front: &NetnsSshd) -> NetnsSshd {
        NetnsSshd::launch(env, 22, Some(front))
    }

    fn launch(env: &SshEnv, port: u16, front: Option<&NetnsSshd>) -> NetnsSshd {
        let ip = find_program(
            "ip",
            &["/usr/sbin", "/sbin", "/usr/bin", "/bin"],
            "iproute2",
        );
        let pid = std::process::id();
        // Blocks already routed here: the machine's networks, other tests' namespaces.
        let mut taken = Vec::new();
        for args in [
            &["-4", "-o", "route", "show", "table", "all"][..],
            &["-4", "-o", "addr", "show"][..],
        ] {
            let out = run(Command::new(&ip).args(args));
            for line in out.lines() {
                // `ip -o addr` lines start with the interface; the route ones with the
                // prefix (or `default`, a /0 that is no conflict).
                let line = line.split_once(" inet ").map_or(line, |(_, rest)| rest);
                if let Some((prefix, len)) = first_prefix(line)
                    && len > 0
                {
                    taken.push((prefix, len));
                }
            }
        }
        let (n, base) = (0..256)
            .find_map(|_| {
                let n = NETNS_COUNTER.fetch_add(1, Ordering::Relaxed);
                let block = ((pid as usize % 16384) << 8) | (n % 256);
                let base = (10u32 << 24) | ((block as u32) << 2);
                (!taken.iter().any(|&t| overlaps(t, (base, 30)))).then_some((n, base))
            })
            .expect("no free /30 in 10.0.0.0/8 for a test network namespace");
        let mut daemon = NetnsSshd {
            netns: format!("rsyscall-{pid}-{n}"),
            host_veth: format!("rsh{pid:x}n{:x}", n % 256),
            host_veth_netns: front.map(|f| f.netns.clone()),
            address: Ipv4Addr::from(base + 2),
            port,
            target: None,
            sshd: None,
            ip: ip.clone(),
        };
        let ns_veth = format!("rsn{pid:x}n{:x}", n % 256);
        let ours = format!("{}/30", Ipv4Addr::from(base + 1));
        let theirs = format!("{}/30", daemon.address);
        // `ip` run in the namespace of our end of the veth pair: ours, or the front host's.
        let here = || {
            let mut cmd = Command::new(&ip);
            if let Some(front) = &daemon.host_veth_netns {
                cmd.args(["-n", front]);
            }
            cmd
        };
        run(Command::new(&ip).args(["netns", "add", &daemon.netns]));
        run(here()
            .args(["link", "add", &daemon.host_veth, "type", "veth"])
            .args(["peer", "name", &ns_veth, "netns", &daemon.netns]));
        run(here().args(["addr", "add", &ours, "dev", &daemon.host_veth]));
        run(here().args(["link", "set", &daemon.host_veth, "up"]));
        let ns = &daemon.netns;
        run(Command::new(&ip).args(["-n", ns, "addr", "add", &theirs, "dev", &ns_veth]));
        run(Command::new(&ip).args(["-n", ns, "link", "set", &ns_veth, "up"]));
        run(Command::new(&ip).args(["-n", ns, "link", "set", "lo", "up"]));

        let log_path = env.inner.dir.join(format!("sshd-{ns}.log"));
        let log = std::fs::File::create(&log_path).expect("creating the sshd log");
        // `ip netns exec` execs sshd in place (no fork), so the child is sshd itself.
        let child = Command::new(&ip)
            .args(["netns", "exec", ns])
            .arg(env.sshd_program())
            .args(["-D", "-e", "-f"])
            .arg(env.sshd_config())
            .arg("-o")
            .arg(format!("ListenAddress={}:{port}", daemon.address))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning sshd in {ns}: {e}"));
        daemon.sshd = Some(child);
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let socket = SocketAddr::from((daemon.address, port));
        let deadline = Instant::now() + DAEMON_START_LIMIT;
        loop {
            let child = daemon.sshd.as_mut().expect("sshd child");
            if let Some(status) = child.try_wait().expect("waitpid sshd") {
                panic!(
                    "sshd in {ns} exited ({status}) before accepting: {}",
                    log_text()
                );
            }
            let accepted = match &daemon.host_veth_netns {
                None => TcpStream::connect_timeout(&socket, Duration::from_millis(500)).is_ok(),
                Some(front) => connects_from(front, socket),
            };
            if accepted {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "sshd in {ns} did not accept on {socket} within {DAEMON_START_LIMIT:?}: {}",
                    log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let user = env.user().to_string();
        let mut extra = format!("    HostName {}\n    Port {port}\n", daemon.address);
        if let Some(front) = front {
            // The front host's section is appended to this file too, so that the jump
            // host's alias resolves here (ssh passes `-F` on to the ssh it runs for -J).
            let front_config = std::fs::read_to_string(front.config_file())
                .expect("reading the front host's ssh_config");
            extra.push_str(&format!(
                "    ProxyJump {}\n{front_config}",
                front.destination()
            ));
        }
        daemon.target = Some(env.target(
            &daemon.netns,
            "user_key",
            &user,
            CONNECT_TIMEOUT_SECS,
            &extra,
            None,
        ));
        daemon
    }

    /// The target to give ssh: its config file and destination.
    pub fn target(&self) -> &SshTarget {
        self.target.as_ref().expect("started")
    }

    /// Shorthand for `self.target().config_file()`.
    pub fn config_file(&self) -> &Path {
        self.target().config_file()
    }

    /// Shorthand for `self.target().destination()`.
    pub fn destination(&self) -> String {
        self.target().destination()
    }

    /// The address sshd listens on, inside the namespace.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The port sshd listens on (22 unless given to [`NetnsSshd::start_on_port`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address of the other end of its veth pair (the /30's `.1`): ours, or, for
    /// [`NetnsSshd::start_behind`], the front host's address on that link.
    pub fn peer_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) - 1)
    }

    /// The network namespace's name (as `ip netns list` shows it).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The pid of the sshd daemon (our child).
    pub fn pid(&self) -> u32 {
        self.sshd.as_ref().expect("started").id()
    }
}

impl Drop for NetnsSshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            stop(&mut child, &self.netns);
        }
        // Deleting one end of the veth pair deletes both; the namespace would too, unless a
        // process (an sshd session) still keeps it alive.
        let mut del = Command::new(&self.ip);
        if let Some(front) = &self.host_veth_netns {
            del.args(["-n", front]);
        }
        let link = run_quiet(del.args(["link", "del", &self.host_veth]));
        // Gone already if the front host's namespace was deleted first.
        if let Err(e) = link
            && !e.contains("Cannot find device")
            && !e.contains("Cannot open network namespace")
        {
            eprintln!("ssh harness: {e}");
        }
        if let Err(e) = run_quiet(Command::new(&self.ip).args(["netns", "del", &self.netns])) {
            eprintln!("ssh harness: {e}");
        }
    }
}

/// Whether a TCP connection to `socket` succeeds (within 500 ms) from network namespace
/// `netns` (a name of `ip netns`): tried on a thread of ours that joins that namespace
/// (`setns` changes only the calling thread's network namespace) and then ends.
fn connects_from(netns: &str, socket: SocketAddr) -> bool {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            use std::os::fd::AsRawFd;
            // SAFETY: setns changes only this thread's network namespace; `ns` is an open
            // fd of a network namespace file, valid for the call.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "setns into {path}: {}",
                std::io::Error::last_os_error()
            );
            TcpStream::connect_timeout(&socket, Duration::from_millis(500)).is_ok()
        })
        .join()
        .expect("the thread that joined the namespace")
    })
}

/// Stops `child` with SIGTERM, then SIGKILL after [`DAEMON_STOP_LIMIT`], and reaps it;
/// failures go to stderr.
fn stop(child: &mut Child, what: &str) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory effects; `pid` is our unreaped child, so it names that
    // process and no other.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        eprintln!(
            "ssh harness: SIGTERM to sshd {pid} ({what}): {}",
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + DAEMON_STOP_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => break,
            Err(e) => {
                eprintln!("ssh harness: waiting for sshd {pid} ({what}): {e}");
                return;
            }
        }
    }
    eprintln!("ssh harness: sshd {pid} ({what}) ignored SIGTERM; killing it");
    if let Err(e) = child.kill() {
        eprintln!("ssh harness: SIGKILL to sshd {pid} ({what}): {e}");
    }
    if let Err(e) = child.wait() {
        eprintln!("ssh harness: reaping sshd {pid} ({what}): {e}");
    }
}

/// The home directory of `user` in `/etc/passwd`.
fn home_of(user: &str) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 7 && fields[0] == user).then(|| fields[5].to_string())
        })
        .unwrap_or_else(|| panic!("no /etc/passwd entry for {user}"))
}

/// A throwaway local user, deleted on drop ([`SshEnv::temp_user`]).
pub struct TempUser {
    name: String,
    uid: u32,
}

impl TempUser {
    /// A new user with login shell `shell` and a home directory under `dir`.
    fn new(dir: &Path, shell: &str) -> TempUser {
        let useradd = find_program("useradd", &["/usr/sbin", "/sbin"], "passwd");
        find_program("userdel", &["/usr/sbin", "/sbin"], "passwd");
        assert!(
            Path::new(shell).exists(),
            "{shell} not found: install the package that provides it"
        );
        let name = format!("rsyt{}x{}", std::process::id(), next_id());
        let home = dir.join(format!("home-{name}"));
        // `-p '*'`: no password, but not a locked account, which sshd (without PAM) would
        // refuse. Other tests may be adding users at the same time: useradd then fails to
        // lock /etc/passwd and is retried.
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let result = run_quiet(
                Command::new(&useradd)
                    .args([
                        "-r", "-M", "-N", "-g", "65534", "-p", "*", "-s", shell, "-d",
                    ])
                    .arg(&home)
                    .arg(&name),
            );
            match result {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("useradd {name}: {e} (before: {last})"),
            }
        }
        let mut user = TempUser { name, uid: 0 };
        std::fs::create_dir(&home).expect("creating the throwaway user's home");
        let uid = run(Command::new("id").arg("-u").arg(&user.name));
        user.uid = uid.trim().parse().expect("id -u prints a number");
        std::os::unix::fs::chown(&home, Some(user.uid), Some(65534)).expect("chown the home");
        user
    }

    /// Its login name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let Some(userdel) = ["/usr/sbin/userdel", "/sbin/userdel"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            eprintln!("ssh harness: userdel not found; user {} is left", self.name);
            return;
        };
        // Retried: /etc/passwd may be locked by another test, or a session of the user
        // may still be ending.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match run_quiet(Command::new(userdel).arg(&self.name)) {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("ssh harness: deleting user {}: {e}", self.name);
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Runs `cmd` (stdin null, stdout and stderr captured) and waits at most `limit` for it;
/// on timeout kills and reaps it, then panics. For the tests' plain `ssh` runs.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}
