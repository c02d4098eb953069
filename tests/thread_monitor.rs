//! Child monitoring: wait, stop/continue, killpg, concurrent execs, pid namespaces, zombies.
