//! [`AsyncReadBuffer`]: reading exact byte counts, lines, length-prefixed strings and
//! fixed-size structs from a stream [`AsyncFileDescriptor`], keeping what was read past
//! the end of each item for the next one.

use std::fmt;

use rsyscall_handle::{Error, FixedSize, Result};

use crate::afd::AsyncFileDescriptor;

/// Bytes asked for by each read.
const CHUNK: usize = 16 * 1024;

/// A buffered reader over an [`AsyncFileDescriptor`].
///
/// Reads take whatever the fd has (up to 16 KiB at a time); bytes past the end of the item
/// asked for stay buffered for the next call. End of file in the middle of an item is an
/// error of kind [`std::io::ErrorKind::UnexpectedEof`] (as [`Error::Io`]); the bytes read
/// so far stay buffered.
pub struct AsyncReadBuffer {
    afd: AsyncFileDescriptor,
    /// Read from the fd; `buf[start..]` is not returned yet. Taking an item only moves
    /// `start`, so many small items cost no copying of what follows them.
    buf: Vec<u8>,
    start: usize,
}

impl fmt::Debug for AsyncReadBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncReadBuffer")
            .field("afd", &self.afd)
            .field("buffered", &self.buffered().len())
            .finish()
    }
}

/// The error for end of file before `what` was complete.
fn eof(what: &'static str, detail: String) -> Error {
    Error::Io {
        what,
        source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, detail),
    }
}

impl AsyncReadBuffer {
    /// A reader over `afd`, with nothing buffered.
    pub fn new(afd: AsyncFileDescriptor) -> Self {
        AsyncReadBuffer {
            afd,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The fd read from.
    pub fn afd(&self) -> &AsyncFileDescriptor {
        &self.afd
    }

    /// The bytes read from the fd and not yet returned.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The fd and the bytes read from it and not yet returned.
    pub fn into_parts(mut self) -> (AsyncFileDescriptor, Vec<u8>) {
        self.buf.drain(..self.start);
        (self.afd, self.buf)
    }

    /// Reads more; `false` at end of file.
    async fn fill(&mut self) -> Result<bool> {
        let got = self.afd.read_some_bytes(CHUNK).await?;
        if got.is_empty() {
            return Ok(false);
        }
        // Drop what was already returned once it is at least half the buffer, so the
        // buffer stays within twice what is pending and each byte moves O(1) times.
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(&got);
        Ok(true)
    }

    /// Takes the first `n` buffered bytes.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        out
    }

    /// The buffered bytes if any, else what one read gives (empty at end of file).
    ///
    /// # Errors
    /// As [`AsyncFileDescriptor::read`].
    pub async fn read_some(&mut self) -> Result<Vec<u8>> {
        if self.buffered().is_empty() {
            self.fill().await?;
        }
        let n = self.buffered().len();
        Ok(self.take(n))
    }

    /// Exactly `n` bytes.
    ///
    /// # Errors
    /// [`Error::Io`] (`UnexpectedEof`) at end of file before `n` bytes; as
    /// [`AsyncFileDescriptor::read`].
    pub async fn read_bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buffered().len() < n {
            if !self.fill().await? {
                return Err(eof(
                    "AsyncReadBuffer::read_bytes",
                    format!("end of file after {} of {n} bytes", self.buffered().len()),
                ));
            }
        }
        Ok(self.take(n))
    }

    /// The next line, without its `\n`.
    ///
    /// # Errors
    /// [`Error::Io`] (`UnexpectedEof`) at end of file before a `\n` (also with nothing
    /// read); as [`AsyncFileDescriptor::read`].
    pub async fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buffered()[searched..].iter().position(|&b| b == b'\n') {
                let mut line = self.take(searched + i + 1);
                line.pop();
                return Ok(line);
            }
            searched = self.buffered().len();
            if !self.fill().await? {
                return Err(eof(
                    "AsyncReadBuffer::read_line",
                    format!(
                        "end of file after {} bytes without a newline",
                        self.buffered().len()
                    ),
                ));
            }
        }
    }

    /// A length-prefixed string: a `u64` length, little-endian, then that many bytes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a length beyond the address space;
    /// [`Error::Io`] (`UnexpectedEof`) at end of file before the end of the string; as
    /// [`AsyncFileDescriptor::read`].
    pub async fn read_length_prefixed(&mut self) -> Result<Vec<u8>> {
        let head = self.read_bytes(8).await?;
        let mut len = [0u8; 8];
        len.copy_from_slice(&head);
        let len = u64::from_le_bytes(len);
        let n = usize::try_from(len).map_err(|_| {
            Error::invalid(
                "AsyncReadBuffer::read_length_prefixed",
                format!("a length of {len} bytes does not fit in memory"),
            )
        })?;
        match self.read_bytes(n).await {
            Ok(data) => Ok(data),
            Err(e) => {
                // Keep the stream as it was: the length goes back in front.
                let mut back = head;
                back.extend_from_slice(self.buffered());
                (self.buf, self.start) = (back, 0);
                Err(e)
            }
        }
    }

    /// A `T`, from its memory representation.
    ///
    /// # Errors
    /// [`Error::Io`] (`UnexpectedEof`) at end of file before `T::SIZE` bytes;
    /// [`Error::InvalidArgument`] if the bytes do not form a `T`; as
    /// [`AsyncFileDescriptor::read`].
    pub async fn read_struct<T: FixedSize>(&mut self) -> Result<T::Owned> {
        let bytes = self.read_bytes(T::SIZE).await?;
        T::from_bytes(&bytes)
    }
}
