//! The event loop: where a thread's file descriptors are watched for readiness.

/// A thread's own epoll instance inside its process (being written).
#[derive(Debug)]
pub struct Epoller {
    _private: (),
}
