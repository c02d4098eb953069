//! The bench's spawning figures of issue 11: the context switches one spawn makes.

use std::collections::BTreeMap;

use super::{Plan, Runner};

/// Context switches so far, each as (voluntary, involuntary): of this process's live
/// threads by name (`voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` in
/// `/proc/self/task/*/status`, summed over threads of one name), of all its threads
/// including those that ended (`getrusage(RUSAGE_SELF)`), and of its reaped children
/// (`getrusage(RUSAGE_CHILDREN)`).
struct Switches {
    threads: BTreeMap<String, [u64; 2]>,
    all_threads: [u64; 2],
    children: [u64; 2],
}

fn context_switches() -> Result<Switches, String> {
    let mut threads = BTreeMap::new();
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    for task in tasks {
        let task = task.map_err(|e| format!("/proc/self/task: {e}"))?;
        // A thread may end between the listing and the read: it is skipped.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let mut name = String::new();
        let mut count = [0u64; 2];
        for line in status.lines() {
            let field = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|rest| rest.trim().parse::<u64>().ok())
            };
            if let Some(rest) = line.strip_prefix("Name:") {
                name = rest.trim().to_string();
            } else if let Some(v) = field("voluntary_ctxt_switches:") {
                count[0] = v;
            } else if let Some(v) = field("nonvoluntary_ctxt_switches:") {
                count[1] = v;
            }
        }
        let entry = threads.entry(name).or_insert([0, 0]);
        entry[0] += count[0];
        entry[1] += count[1];
    }
    let usage = |who| -> Result<[u64; 2], String> {
        // SAFETY: an all-zero rusage is a valid value of the plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable rusage.
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return Err(format!("getrusage: {}", std::io::Error::last_os_error()));
        }
        Ok([usage.ru_nvcsw as u64, usage.ru_nivcsw as u64])
    };
    Ok(Switches {
        threads,
        all_threads: usage(libc::RUSAGE_SELF)?,
        children: usage(libc::RUSAGE_CHILDREN)?,
    })
}

/// The context switches per operation of `n` operations of a runner, as a sentence.
fn switches_per_op(runner: &mut Runner, n: u32) -> Result<String, String> {
    let before = context_switches()?;
    runner(n)?;
    let after = context_switches()?;
    let per = |a: [u64; 2], b: [u64; 2]| {
        [0, 1].map(|i| a[i].saturating_sub(b[i]) as f64 / f64::from(n.max(1)))
    };
    let show = |[v, i]: [f64; 2]| format!("{:.2} ({v:.2} + {i:.2})", v + i);
    let mut live = [0.0; 2];
    let mut by_name = Vec::new();
    for (name, count) in &after.threads {
        let d = per(*count, before.threads.get(name).copied().unwrap_or([0, 0]));
        live[0] += d[0];
        live[1] += d[1];
        by_name.push(format!("`{name}` {}", show(d)));
    }
    let children = per(after.children, before.children);
    Ok(format!(
        "{} in all: {} in this process's live threads ({}), {} in all its threads by \
         getrusage(RUSAGE_SELF) (ended ones included), {} in children",
        show([live[0] + children[0], live[1] + children[1]]),
        show(live),
        by_name.join(", "),
        show(per(after.all_threads, before.all_threads)),
        show(children),
    ))
}

/// The note of "spawn /bin/true": context switches (wakeups) per spawn of each side.
pub(crate) fn spawn_wakeup_notes(plan: Plan) -> Result<Vec<String>, String> {
    let n = plan.iterations.max(10);
    let mut ours = super::ours_spawn()?;
    let mut baseline = super::baseline_spawn()?;
    ours(plan.warmup.max(1))?;
    baseline(plan.warmup.max(1))?;
    let ours = switches_per_op(&mut ours, n)?;
    let baseline = switches_per_op(&mut baseline, n)?;
    Ok(vec![format!(
        "context switches per spawn over {n} spawns, each as total (voluntary + \
         involuntary; the voluntary ones are the wakeups, the involuntary ones preemption \
         by the machine's other load): a thread's from /proc/self/task/*/status, children's \
         from getrusage(RUSAGE_CHILDREN), which counts reaped children, /bin/true after its \
         exec included. Ours: {ours}. Baseline: {baseline}"
    )])
}
