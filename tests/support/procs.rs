//! What /proc says about this test process (its open fds and child processes), and about
//! the fd tables of other processes.

/// How many fds this process has open.
pub fn open_fds() -> usize {
    open_fds_of(std::process::id() as i32)
}

/// How many fds the fd table of process `pid` (a pid in our pid namespace) has open.
pub fn open_fds_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("listing /proc/{pid}/fd: {e}"))
        .count()
}

/// One child process of ours, as /proc shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    /// Its pid.
    pub pid: i32,
    /// Whether it is a zombie (exited, not reaped).
    pub zombie: bool,
}

/// Every process /proc lists, each with its parent's pid.
fn processes() -> Vec<(Child, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // The process may exit between listing and reading: skip it then.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        let child = Child {
            pid,
            zombie: field("State:").starts_with('Z'),
        };
        out.push((child, field("PPid:").parse().unwrap_or(0)));
    }
    out
}

/// The processes whose parent is this process.
pub fn children() -> Vec<Child> {
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|&(_, ppid)| ppid == me)
        .map(|(child, _)| child)
        .collect()
}

/// Our descendants: our children, their children, and so on.
pub fn descendants() -> Vec<Child> {
    let procs = processes();
    let mut parents = vec![std::process::id() as i32];
    let mut out = Vec::new();
    while let Some(parent) = parents.pop() {
        for &(child, ppid) in &procs {
            if ppid == parent {
                parents.push(child.pid);
                out.push(child);
            }
        }
    }
    out
}

/// (children, zombies) of this process.
pub fn count_children() -> (usize, usize) {
    let c = children();
    (c.len(), c.iter().filter(|c| c.zombie).count())
}

/// Samples `measure` every 20 ms until it gives the same value five times in a row (at
/// most 5 seconds), and returns that value.
///
/// The service thread frees an exited child's memory and closes its helper's pidfd
/// asynchronously, a little after the child is waited for; a leak check that starts while
/// such work is pending would count it. Settling first, and then asserting that the usage
/// did not *grow*, keeps the check exact for leaks and blind to that background work.
pub async fn settled<T: PartialEq + Copy>(mut measure: impl FnMut() -> T) -> T {
    let mut last = measure();
    let mut same = 1;
    for _ in 0..250 {
        if same >= 5 {
            break;
        }
        async_io::Timer::after(std::time::Duration::from_millis(20)).await;
        let now = measure();
        if now == last {
            same += 1;
        } else {
            (last, same) = (now, 1);
        }
    }
    last
}
