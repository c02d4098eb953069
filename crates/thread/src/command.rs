//! `Command` (what to exec) and `Environment` (a thread's environment variables and PATH
//! lookup).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rsyscall_handle::{Error, Result};

/// A program to exec: its path, its argv (argv\[0\] included) and changes to the
/// environment it inherits from the thread that execs it.
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
        let mut vars = base.vars.clone();
        for (k, v) in &self.env {
            match v {
                Some(v) => vars.insert(k.clone(), v.clone()),
                None => vars.remove(k),
            };
        }
        vars.into_iter()
            .map(|(mut k, v)| {
                k.push("=");
                k.push(v);
                k
            })
            .collect()
    }

    /// Checks that no string has an interior NUL, which exec could not express.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |s: &OsStr| s.as_bytes().contains(&0);
        if bad(&self.path) || self.argv.iter().any(|a| bad(a)) {
            return Err(Error::InvalidArgument {
                what: "exec",
                detail: format!("a path or argument of {self} contains a NUL byte"),
            });
        }
        if self
            .env
            .iter()
            .any(|(k, v)| bad(k) || k.as_bytes().contains(&b'=') || v.as_deref().is_some_and(bad))
        {
            return Err(Error::InvalidArgument {
                what: "exec",
                detail: "an environment variable name contains '=' or NUL, or a value contains NUL"
                    .into(),
            });
        }
        Ok(())
    }
}

/// A thread's environment variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl Environment {
    /// The local process's environment.
    pub fn from_local() -> Self {
        Environment {
            vars: std::env::vars_os().collect(),
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
        Environment { vars }
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
}
