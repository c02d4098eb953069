//! A throwaway per-connection sshd for the bench's ssh figures, made with std only (xtask
//! does not depend on the tests' support crate).
//!
//! [`BenchSshd::shared`] makes a private directory holding an ed25519 host key and user key
//! (by `ssh-keygen`), an `authorized_keys`, a `known_hosts`, an `sshd_config` and a client
//! `ssh_config` whose one host, [`BenchSshd::DESTINATION`], has `ProxyCommand sshd -i`: each
//! ssh connection starts its own sshd on the ProxyCommand's pipes (no daemon, no port), and
//! the `-F` file keeps the machine's own ssh setup (agent, keys, known hosts) out of it.
//! Every side of every ssh figure uses the same one while any of them is set up; the
//! directory is removed when the last user drops it. Runs as root (sshd's privilege
//! separation), as the bench does in CI.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};

/// The keys and config files of the per-connection sshd; see the module docs.
pub struct BenchSshd {
    dir: PathBuf,
    ssh: PathBuf,
}

impl BenchSshd {
    /// The destination to give ssh with [`BenchSshd::config_file`].
    pub const DESTINATION: &'static str = "rsyscall-bench-sshd";

    /// The sshd every ssh figure shares: the live one, or a new one.
    pub fn shared() -> Result<Arc<BenchSshd>, String> {
        static SHARED: Mutex<Weak<BenchSshd>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = shared.upgrade() {
            return Ok(live);
        }
        let made = Arc::new(BenchSshd::new()?);
        *shared = Arc::downgrade(&made);
        Ok(made)
    }

    fn new() -> Result<BenchSshd, String> {
        let ssh = program("ssh", "/usr/bin", "openssh-client")?;
        let keygen = program("ssh-keygen", "/usr/bin", "openssh-client")?;
        let sshd = program("sshd", "/usr/sbin", "openssh-server")?;
        std::fs::create_dir_all("/run/sshd")
            .map_err(|e| format!("creating /run/sshd (sshd's privilege separation): {e}"))?;
        let dir = std::env::temp_dir().join(format!("rsyscall-bench-sshd-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let made = BenchSshd { dir, ssh };
        // From here on, dropping `made` removes the directory.
        let d = made
            .dir
            .to_str()
            .ok_or("the temporary directory is not UTF-8")?;
        if !d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        {
            return Err(format!(
                "the temporary directory {d:?} has characters ssh config files would misread; \
                 set TMPDIR"
            ));
        }
        std::fs::set_permissions(&made.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {d}: {e}"))?;
        let host_key = made.keygen(&keygen, "host_key")?;
        let user_key = made.keygen(&keygen, "user_key")?;
        made.write("authorized_keys", &format!("{user_key}\n"))?;
        made.write(
            "known_hosts",
            &format!("{} {host_key}\n", Self::DESTINATION),
        )?;
        made.write(
            "sshd_config",
            &format!(
                "HostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile none\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\nLogLevel ERROR\n"
            ),
        )?;
        made.write(
            "ssh_config",
            &format!(
                "Host {host}\n    IdentityFile {d}/user_key\n    IdentitiesOnly yes\n    \
                 IdentityAgent none\n    BatchMode yes\n    StrictHostKeyChecking yes\n    \
                 UserKnownHostsFile {d}/known_hosts\n    GlobalKnownHostsFile /dev/null\n    \
                 HostKeyAlias {host}\n    UpdateHostKeys no\n    CheckHostIP no\n    \
                 ControlMaster no\n    ControlPath none\n    LogLevel ERROR\n    \
                 ProxyCommand {sshd} -i -f {d}/sshd_config\n",
                host = Self::DESTINATION,
                sshd = sshd.display(),
            ),
        )?;
        Ok(made)
    }

    /// The client config to give ssh (`-F`) or `SshHost::config_file`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// The ssh client found.
    pub fn ssh(&self) -> &Path {
        &self.ssh
    }

    /// `ssh -F <config> [args] DESTINATION`, ready for the remote command.
    pub fn ssh_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.ssh);
        command
            .arg("-F")
            .arg(self.config_file())
            .args(args)
            .arg(Self::DESTINATION)
            .stdin(Stdio::null());
        command
    }

    /// Makes an ed25519 key pair `name`, `name.pub`; returns the public key line.
    fn keygen(&self, keygen: &Path, name: &str) -> Result<String, String> {
        let path = self.dir.join(name);
        let out = Command::new(keygen)
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "rsyscall-bench",
                "-f",
            ])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running ssh-keygen: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ssh-keygen: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let public = std::fs::read_to_string(path.with_extension("pub"))
            .map_err(|e| format!("reading {name}.pub: {e}"))?;
        Ok(public.trim().to_string())
    }

    fn write(&self, name: &str, text: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(name), text).map_err(|e| format!("writing {name}: {e}"))
    }
}

impl Drop for BenchSshd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `name` in `dir` or on `PATH`; an error naming the Debian package if it is in neither.
fn program(name: &str, dir: &str, package: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from(dir))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_absolute() && p.is_file())
        .ok_or_else(|| format!("`{name}` not found: install the Debian package {package}"))
}
