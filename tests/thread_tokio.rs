//! The API under a multi-threaded tokio runtime.
