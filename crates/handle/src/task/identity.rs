//! Identity and limit syscalls: uids, gids, groups, capabilities, rlimits, affinity.
