//! `Command` (what to exec) and `Environment` (a thread's environment variables and PATH
//! lookup).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use rsyscall_handle::structs::FileType;
use rsyscall_handle::{Error, Result, Task};
use rsyscall_near::O;

/// A program to exec: its path, its argv (argv\[0\] included) and changes to the
/// environment it inherits from the thread that execs it.
///
/// # Examples
///
/// ```
/// # use rsyscall_thread::local_thread;
/// # use rsyscall_near::CLONE;
/// # use rsyscall_thread::Command;
/// # async_io::block_on(async {
/// let cmd = Command::new("/bin/sh", "sh").arg("-c").arg("exit 0");
/// assert_eq!(cmd.path(), "/bin/sh");
/// assert_eq!(cmd.argv(), ["sh", "-c", "exit 0"]);
/// let child = local_thread().clone(CLONE::empty()).await?;
/// child.exec(cmd).await?.check().await?;
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    path: OsString,
    argv: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.to_string_lossy())?;
        for a in self.argv.iter().skip(1) {
            write!(f, " {}", a.to_string_lossy())?;
        }
        Ok(())
    }
}

impl Command {
    /// Runs `path` with argv\[0\] set to `argv0`.
    pub fn new(path: impl Into<OsString>, argv0: impl Into<OsString>) -> Self {
        Command {
            path: path.into(),
            argv: vec![argv0.into()],
            env: Vec::new(),
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.argv.push(a.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the program.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_thread::local_thread;
    /// # use rsyscall_near::CLONE;
    /// # use rsyscall_thread::Command;
    /// # async_io::block_on(async {
    /// let cmd = Command::new("/bin/sh", "sh")
    ///     .args(["-c", r#"test "$GREETING" = hello"#])
    ///     .env("GREETING", "hello");
    /// let child = local_thread().clone(CLONE::empty()).await?;
    /// child.exec(cmd).await?.check().await?;
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable for the program.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// The path exec'd.
    pub fn path(&self) -> &OsStr {
        &self.path
    }

    /// The argv, argv\[0\] included.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// The environment the program gets when exec'd from a thread with `base`.
    pub fn environment(&self, base: &Environment) -> Vec<OsString> {
        // The final effect of the updates, last one winning; the base is not copied.
        let mut updates: BTreeMap<&OsStr, Option<&OsStr>> = BTreeMap::new();
        for (k, v) in &self.env {
            updates.insert(k, v.as_deref());
        }
        let join = |k: &OsStr, v: &OsStr| {
            let mut kv = OsString::with_capacity(k.len() + 1 + v.len());
            kv.push(k);
            kv.push("=");
            kv.push(v);
            kv
        };
        let mut out = Vec::with_capacity(base.vars.len() + updates.len());
        for (k, v) in &base.vars {
            match updates.remove(k.as_os_str()) {
                None => out.push(join(k, v)),
                Some(Some(new)) => out.push(join(k, new)),
                Some(None) => {}
            }
        }
        out.extend(
            updates
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| join(k, v))),
        );
        out
    }

    /// The command as one line for `sh -c`: each word shell-quoted, so that the shell runs
    /// exactly this program with exactly these arguments and environment changes.
    ///
    /// - Environment changes come first, as `KEY='value'` assignments; if one removes a
    ///   variable or names one that is not a valid shell name, they are given to `env`
    ///   instead (`env -u KEY 'KEY2=value' ...`).
    /// - A path without `/` is written `./path`: exec does not search `PATH`, and the
    ///   shell must not either. A path containing `=` is quoted (and, after `env`, run
    ///   through `sh -c 'exec "$0" "$@"'`) so that it is not read as an assignment.
    /// - argv\[0\] cannot be chosen from a POSIX shell: the program gets the path as
    ///   argv\[0\].
    /// - Bytes that are not UTF-8 are written as `"$(printf '\ooo')"`, which restores
    ///   them exactly. (A NUL byte, which exec refuses anyway, is dropped by the shell.)
    pub fn in_shell_form(&self) -> String {
        // The final effect of the updates, last one winning, as exec would see them.
        let mut updates: BTreeMap<&OsStr, Option<&OsStr>> = BTreeMap::new();
        for (k, v) in &self.env {
            updates.insert(k, v.as_deref());
        }
        let mut words = Vec::new();
        let plain = updates
            .iter()
            .all(|(k, v)| v.is_some() && is_shell_name(k.as_bytes()));
        if plain {
            for (k, v) in &updates {
                let v = v.map(OsStr::as_bytes).unwrap_or_default();
                words.push(format!(
                    "{}={}",
                    String::from_utf8_lossy(k.as_bytes()),
                    shell_quote(v)
                ));
            }
        } else {
            words.push("env".to_owned());
            for (k, _) in updates.iter().filter(|(_, v)| v.is_none()) {
                words.push("-u".to_owned());
                words.push(shell_quote(k.as_bytes()));
            }
            for (k, v) in &updates {
                if let Some(v) = v {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    words.push(shell_quote(&kv));
                }
            }
        }
        let mut path = self.path.as_bytes().to_vec();
        if !path.contains(&b'/') {
            path.splice(0..0, *b"./");
        }
        if path.contains(&b'=') {
            if !plain {
                // `env` would take the path for an assignment: let a shell exec it.
                words.extend(["sh", "-c", "'exec \"$0\" \"$@\"'"].map(str::to_owned));
            }
            // Quoted, so that the shell does not take it for an assignment either.
            words.push(quote_always(&path));
        } else {
            words.push(shell_quote(&path));
        }
        for a in self.argv.iter().skip(1) {
            words.push(shell_quote(a.as_bytes()));
        }
        words.join(" ")
    }

    /// Checks what `exec` cannot check once the environment is flattened to `K=V` strings.
    pub(crate) fn validate(&self) -> Result<()> {
        // NUL bytes in the path, argv and envp are refused by `Task::exec_image`; a name
        // with '=' would silently become another variable there.
        if self.env.iter().any(|(k, _)| k.as_bytes().contains(&b'=')) {
            return Err(Error::InvalidArgument {
                what: "exec",
                detail: "an environment variable name contains '='".into(),
            });
        }
        Ok(())
    }
}

/// Whether `s` can be the name in a shell assignment (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_shell_name(s: &[u8]) -> bool {
    match s.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        None => false,
    }
}

/// Quotes `s` as one shell word that expands to exactly these bytes.
fn shell_quote(s: &[u8]) -> String {
    if s.is_empty() {
        return "''".to_owned();
    }
    let safe = |b: &u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(b);
    if s.iter().all(safe) {
        // All ASCII, so this is valid UTF-8.
        return String::from_utf8_lossy(s).into_owned();
    }
    quote_always(s)
}

/// Quotes `s` as one shell word that expands to exactly these bytes, never leaving it
/// bare.
fn quote_always(s: &[u8]) -> String {
    if s.is_empty() {
        return "''".to_owned();
    }
    let mut out = String::new();
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid();
        if !valid.is_empty() {
            out.push('\'');
            out.push_str(&valid.replace('\'', "'\\''"));
            out.push('\'');
        }
        if !chunk.invalid().is_empty() {
            out.push_str("\"$(printf '");
            for b in chunk.invalid() {
                out.push_str(&format!("\\{b:03o}"));
            }
            out.push_str("')\"");
        }
    }
    out
}

/// How long after a directory's last change its listing is not cached: a file created in
/// the same tick of the filesystem's clock would leave the modification time unchanged.
const UNSTABLE_LISTING: Duration = Duration::from_secs(2);

/// The listing of one `PATH` directory, valid while the directory's identity and
/// modification time stay the same.
#[derive(Debug)]
struct DirListing {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    names: HashSet<Vec<u8>>,
}

/// Listings of `PATH` directories, keyed by directory.
#[derive(Debug, Default)]
struct PathCache {
    dirs: HashMap<OsString, DirListing>,
}

/// A thread's environment variables, and a cache of the listings of its `PATH`
/// directories (shared by clones of the value, so threads cloned from one another share
/// it).
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
    path_cache: Arc<Mutex<PathCache>>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("vars", &self.vars)
            .finish_non_exhaustive()
    }
}

/// Environments are equal when their variables are (the caches do not count).
impl PartialEq for Environment {
    fn eq(&self, other: &Self) -> bool {
        self.vars == other.vars
    }
}

impl Eq for Environment {}

/// Whether a `which` lookup error means "not here, try the next directory".
fn skippable(e: &Error) -> bool {
    e.errno().is_some()
}

impl Environment {
    /// The local process's environment.
    pub fn from_local() -> Self {
        Environment {
            vars: std::env::vars_os().collect(),
            path_cache: Arc::default(),
        }
    }

    /// From `KEY=VALUE` strings (entries without `=` are skipped).
    pub fn from_strings<I: IntoIterator<Item = Vec<u8>>>(strings: I) -> Self {
        let vars = strings
            .into_iter()
            .filter_map(|s| {
                let eq = s.iter().position(|&b| b == b'=')?;
                let (k, v) = s.split_at(eq);
                Some((
                    OsString::from_vec(k.to_vec()),
                    OsString::from_vec(v[1..].to_vec()),
                ))
            })
            .collect();
        Environment {
            vars,
            path_cache: Arc::default(),
        }
    }

    /// A variable's value.
    pub fn get(&self, key: impl AsRef<OsStr>) -> Option<&OsStr> {
        self.vars.get(key.as_ref()).map(OsString::as_os_str)
    }

    /// Sets a variable.
    pub fn set(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        self.vars.insert(key.into(), value.into());
    }

    /// Removes a variable.
    pub fn remove(&mut self, key: impl AsRef<OsStr>) {
        self.vars.remove(key.as_ref());
    }

    /// The directories of `PATH`, in order (empty entries skipped).
    pub fn path_dirs(&self) -> Vec<OsString> {
        self.get("PATH")
            .map(|p| {
                p.as_bytes()
                    .split(|&b| b == b':')
                    .filter(|d| !d.is_empty())
                    .map(|d| OsString::from_vec(d.to_vec()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The directory for temporary files: `$TMPDIR` if it is an absolute path, else
    /// `/tmp`.
    pub fn tmpdir(&self) -> PathBuf {
        match self.get("TMPDIR") {
            Some(d) if d.as_bytes().first() == Some(&b'/') => PathBuf::from(d),
            _ => PathBuf::from("/tmp"),
        }
    }

    /// A [`Command`] for `sh`, found in `PATH` through `task` (see
    /// [`Environment::which_cached`]).
    ///
    /// # Errors
    /// As [`Environment::which_cached`].
    pub async fn sh(&self, task: &Task) -> Result<Command> {
        self.which_cached(task, "sh").await
    }

    /// Finds `name` in `PATH` as `task` sees its filesystem and returns a [`Command`] for
    /// it with argv\[0\] `name`. A name containing `/` is not searched for: it is checked
    /// where it is (relative to `task`'s working directory unless absolute), like a name
    /// found on `PATH`.
    ///
    /// Directory listings are cached, keyed by directory and checked against its device,
    /// inode and modification time (one `stat` per directory searched), so a new
    /// executable is noticed at the next lookup. A listing is not cached while its
    /// directory changed within the last two seconds (by the local clock), since a file
    /// created in the same tick of the filesystem clock would not change the
    /// modification time. A name found in a listing, or given with a `/`, is then checked
    /// to be a regular file that `task` may execute.
    ///
    /// # Errors
    /// [`Error::NotFound`] with the directories searched (or the path itself) if there is
    /// no such executable; [`Error::InvalidArgument`] for an empty name or one with a NUL
    /// byte; a lost connection to `task`.
    pub async fn which_cached(&self, task: &Task, name: &str) -> Result<Command> {
        which_in(&self.path_cache, self.path_dirs(), task, name).await
    }
}

/// Finds `name` as [`Environment::which_cached`] does, in the directories `dirs` (the
/// `PATH` of an environment) with the listings cached in `path_cache`.
async fn which_in(
    path_cache: &Mutex<PathCache>,
    dirs: Vec<OsString>,
    task: &Task,
    name: &str,
) -> Result<Command> {
    if name.is_empty() || name.contains('\0') {
        return Err(Error::invalid(
            "which",
            format!("{name:?} is not a program name"),
        ));
    }
    let not_found = |searched: Vec<PathBuf>| Error::NotFound {
        name: name.to_owned(),
        searched,
    };
    if name.contains('/') {
        return match executable(task, OsStr::new(name)).await {
            Ok(true) => Ok(Command::new(name, name)),
            Ok(false) => Err(not_found(vec![PathBuf::from(name)])),
            Err(e) if skippable(&e) => Err(not_found(vec![PathBuf::from(name)])),
            Err(e) => Err(e),
        };
    }
    for dir in &dirs {
        match lookup_in(path_cache, task, dir, name.as_bytes()).await {
            Ok(Some(path)) => return Ok(Command::new(path, name)),
            Ok(None) => {}
            Err(e) if skippable(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Err(not_found(dirs.into_iter().map(PathBuf::from).collect()))
}

/// `dir/name` if `dir`'s listing (cached in `path_cache`) has `name` and it is an
/// executable regular file.
async fn lookup_in(
    path_cache: &Mutex<PathCache>,
    task: &Task,
    dir: &OsStr,
    name: &[u8],
) -> Result<Option<OsString>> {
    let st = task.stat(dir).await?;
    let key = (st.dev, st.ino, (st.mtime.sec, st.mtime.nsec));
    let cached = {
        let cache = path_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .dirs
            .get(dir)
            .filter(|l| (l.dev, l.ino, l.mtime) == key)
            .map(|l| l.names.contains(name))
    };
    let listed = match cached {
        Some(listed) => listed,
        None => {
            let fd = task.open(dir, O::RDONLY | O::DIRECTORY, 0).await?;
            let entries = fd.getdents_all().await;
            fd.close().await?;
            let names: HashSet<Vec<u8>> = entries?.into_iter().map(|e| e.name).collect();
            let listed = names.contains(name);
            let changed = SystemTime::UNIX_EPOCH
                + Duration::new(
                    u64::try_from(st.mtime.sec).unwrap_or(0),
                    u32::try_from(st.mtime.nsec).unwrap_or(0),
                );
            let stable = SystemTime::now()
                .duration_since(changed)
                .is_ok_and(|age| age >= UNSTABLE_LISTING);
            let mut cache = path_cache.lock().unwrap_or_else(|e| e.into_inner());
            if stable {
                cache.dirs.insert(
                    dir.to_owned(),
                    DirListing {
                        dev: key.0,
                        ino: key.1,
                        mtime: key.2,
                        names,
                    },
                );
            } else {
                cache.dirs.remove(dir);
            }
            listed
        }
    };
    if !listed {
        return Ok(None);
    }
    let mut path = dir.as_bytes().to_vec();
    if path.last() != Some(&b'/') {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    let path = OsString::from_vec(path);
    Ok(executable(task, &path).await?.then_some(path))
}

/// Whether `path` is a regular file that `task` may execute: `Ok(false)` for another
/// kind of file, a syscall error (`ENOENT`, `EACCES`...) if it is missing or not
/// executable.
async fn executable(task: &Task, path: &OsStr) -> Result<bool> {
    let target = task.stat(path).await?;
    if target.file_type() != FileType::Regular {
        return Ok(false);
    }
    task.access(path, libc::X_OK).await?;
    Ok(true)
}

/// A thread's environment, which its handles may change: every handle to the thread sees
/// the change, and a thread cloned from it starts with a copy.
///
/// Cloning it takes a copy of the current variables in a new cell (sharing the `PATH`
/// listing cache), as a child thread gets.
pub(crate) struct SharedEnvironment(RwLock<Environment>);

impl Clone for SharedEnvironment {
    fn clone(&self) -> Self {
        SharedEnvironment(RwLock::new(self.read().clone()))
    }
}

impl SharedEnvironment {
    pub(crate) fn new(env: Environment) -> Self {
        SharedEnvironment(RwLock::new(env))
    }

    /// The variables, for reading without a copy (do not hold across an await).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Environment> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The variables, for changing.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Environment> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Environment::tmpdir`].
    pub(crate) fn tmpdir(&self) -> PathBuf {
        self.read().tmpdir()
    }

    /// Finds `name` as [`Environment::which_cached`] does, with the `PATH` the thread has
    /// now; the variables are not copied, nor locked during the lookup.
    pub(crate) async fn which(&self, task: &Task, name: &str) -> Result<Command> {
        let (dirs, cache) = {
            let env = self.read();
            (env.path_dirs(), Arc::clone(&env.path_cache))
        };
        which_in(&cache, dirs, task, name).await
    }
}
