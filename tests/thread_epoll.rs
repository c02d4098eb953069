//! The event loop: Epoller, AsyncFileDescriptor, AsyncReadBuffer, async channels.
