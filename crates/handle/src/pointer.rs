//! The pointer family: `Pointer<T>` (allocated, contents unknown), `WrittenPointer<T>` (we
//! wrote a `T`), `ReadablePointer<T>` (a syscall filled it), `LinearPointer<T>` (it holds
//! resources and must be read exactly once).
//!
//! Each owns its allocation. Operations that change what a pointer holds consume it and
//! return the new pointer(s), so stale views of memory cannot be kept by accident.

use std::fmt;
use std::marker::PhantomData;

use rsyscall_far as far;
use rsyscall_near::Address;

use crate::error::{Error, Result};
use crate::memory::{Allocation, Unmerged};
use crate::structs::Struct;

/// An allocation in some address space, sized for a `T`, whose contents are unknown.
///
/// # Examples
///
/// Each operation consumes the pointer and returns what the memory holds now:
///
/// ```
/// # use rsyscall_handle::Task;
/// # async_io::block_on(async {
/// let task = Task::local();
/// let ptr = task.malloc_bytes(10).await?;
/// let (head, tail) = ptr.split(4)?;
/// assert_eq!((head.size(), tail.size()), (4, 6));
/// let written = head.write(&b"abcd"[..]).await?;
/// assert_eq!(written.read().await?, b"abcd");
/// // A pointer is tied to its address space; `far` names it with that space.
/// assert_eq!(written.far().space, task.namespaces().address_space);
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
pub struct Pointer<T: ?Sized + Struct> {
    alloc: Allocation,
    _t: PhantomData<fn(&T)>,
}

impl<T: ?Sized + Struct> fmt::Debug for Pointer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Pointer<{}>({:?}, {} bytes)",
            std::any::type_name::<T>(),
            self.alloc.addr(),
            self.alloc.len()
        )
    }
}

impl<T: ?Sized + Struct> Pointer<T> {
    /// A pointer over `alloc`.
    pub fn from_allocation(alloc: Allocation) -> Self {
        Pointer {
            alloc,
            _t: PhantomData,
        }
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.alloc.len()
    }

    /// The address, meaningful in its address space only.
    pub fn near(&self) -> Address {
        self.alloc.addr()
    }

    /// The address with its address space.
    pub fn far(&self) -> far::Pointer {
        self.alloc.far()
    }

    /// The underlying allocation.
    pub fn allocation(&self) -> &Allocation {
        &self.alloc
    }

    /// Gives up the typing.
    pub fn into_allocation(self) -> Allocation {
        self.alloc
    }

    /// The same memory, viewed as holding a `U` (its contents unknown, so this is safe).
    pub fn cast<U: ?Sized + Struct>(self) -> Pointer<U> {
        Pointer::from_allocation(self.alloc)
    }

    /// Writes `value` and returns the pointer as a [`WrittenPointer`]. If the value is
    /// shorter than the pointer, the pointer is first cut to the value's size (the rest is
    /// freed).
    ///
    /// # Examples
    ///
    /// A shorter value cuts the pointer to its size; a longer one is refused:
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let written = task.malloc_bytes(8).await?.write(&b"abc"[..]).await?;
    /// assert_eq!(written.size(), 3);
    /// let small = task.malloc_bytes(2).await?;
    /// assert!(small.write(&b"abc"[..]).await.is_err());
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the value is larger than the pointer (the pointer is
    /// freed); the transport's errors.
    pub async fn write(self, value: &T) -> Result<WrittenPointer<T>> {
        self.write_bytes(&value.to_bytes()).await
    }

    /// [`Pointer::write`] of a value already serialized to `bytes`.
    pub(crate) async fn write_bytes(self, bytes: &[u8]) -> Result<WrittenPointer<T>> {
        if bytes.len() > self.size() {
            return Err(Error::invalid(
                "Pointer::write",
                format!(
                    "a value of {} bytes does not fit in {} bytes",
                    bytes.len(),
                    self.size()
                ),
            ));
        }
        let ptr = if bytes.len() < self.size() {
            self.split(bytes.len())?.0
        } else {
            self
        };
        ptr.alloc.write(0, bytes).await?;
        Ok(WrittenPointer { ptr })
    }

    /// Splits into the first `at` bytes and the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rsyscall_handle::Task;
    /// # async_io::block_on(async {
    /// let task = Task::local();
    /// let ptr = task.malloc_bytes(16).await?;
    /// let addr = ptr.near().as_u64();
    /// let (a, b) = ptr.split(10)?;
    /// assert_eq!(b.near().as_u64(), addr + 10);
    /// let whole = a.merge(b).map_err(|_| "not adjacent").unwrap();
    /// assert_eq!(whole.size(), 16);
    /// assert!(task.malloc_bytes(4).await?.split(5).is_err());
    /// # Ok::<(), rsyscall_handle::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `at` is past the end.
    pub fn split(self, at: usize) -> Result<(Pointer<T>, Pointer<T>)> {
        let (a, b) = self.alloc.split(at)?;
        Ok((Pointer::from_allocation(a), Pointer::from_allocation(b)))
    }

    /// Joins two adjacent pointers (`self` first) back into one.
    ///
    /// # Errors
    /// Gives both back if they are not adjacent pieces of one allocation's arena.
    pub fn merge(
        self,
        other: Pointer<T>,
    ) -> std::result::Result<Pointer<T>, Box<Unmerged<Pointer<T>>>> {
        match self.alloc.merge(other.alloc) {
            Ok(a) => Ok(Pointer::from_allocation(a)),
            Err(u) => {
                let Unmerged {
                    error,
                    first,
                    second,
                } = *u;
                Err(Box::new(Unmerged {
                    error,
                    first: Pointer::from_allocation(first),
                    second: Pointer::from_allocation(second),
                }))
            }
        }
    }

    /// Splits off the last `size` bytes, moved down so they start at a multiple of
    /// `alignment` (for preparing stacks): returns the rest and the end part.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad alignment or a pointer too small.
    pub fn split_from_end<U: ?Sized + Struct>(
        self,
        size: usize,
        alignment: usize,
    ) -> Result<(Pointer<T>, Pointer<U>)> {
        if !alignment.is_power_of_two() {
            return Err(Error::invalid(
                "split_from_end",
                format!("alignment {alignment}"),
            ));
        }
        let end = self.near().as_u64() + self.size() as u64;
        let start = end
            .checked_sub(size as u64)
            .map(|s| s & !(alignment as u64 - 1))
            .filter(|&s| s >= self.near().as_u64())
            .ok_or_else(|| {
                Error::invalid(
                    "split_from_end",
                    format!(
                        "{size} bytes aligned to {alignment} do not fit in {}",
                        self.size()
                    ),
                )
            })?;
        let at = (start - self.near().as_u64()) as usize;
        let (rest, tail) = self.split(at)?;
        let (value, _slack) = tail.split(size)?;
        Ok((rest, value.cast()))
    }

    /// Writes `value` at the end of this pointer, aligned to `alignment` (for stacks):
    /// returns the rest and the written part.
    ///
    /// # Errors
    /// As [`Pointer::split_from_end`] and [`Pointer::write`].
    pub async fn write_to_end<U: ?Sized + Struct>(
        self,
        value: &U,
        alignment: usize,
    ) -> Result<(Pointer<T>, WrittenPointer<U>)> {
        let bytes = value.to_bytes();
        let (rest, end) = self.split_from_end::<U>(bytes.len(), alignment)?;
        Ok((rest, end.write_bytes(&bytes).await?))
    }

    /// Declares that a syscall wrote a `T` into the first `len` bytes: returns them as a
    /// [`ReadablePointer`] and the rest.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `len` is past the end.
    pub fn filled(self, len: usize) -> Result<(ReadablePointer<T>, Pointer<T>)> {
        let (a, b) = self.split(len)?;
        Ok((ReadablePointer { ptr: a }, b))
    }

    /// Declares that a syscall wrote a `T` holding resources (such as fds) into the first
    /// `len` bytes: returns them as a [`LinearPointer`] and the rest.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `len` is past the end.
    pub fn filled_linear(self, len: usize) -> Result<(LinearPointer<T>, Pointer<T>)> {
        let (a, b) = self.split(len)?;
        Ok((LinearPointer { ptr: Some(a) }, b))
    }

    /// Frees the memory now (dropping does the same).
    pub fn free(self) {}
}

/// A pointer to memory holding a `T` that we wrote.
///
/// # Examples
///
/// What [`Task::ptr`](crate::Task::ptr) and [`Pointer::write`] return, ready to lend to a syscall that reads it:
///
/// ```
/// # use rsyscall_handle::Task;
/// # async_io::block_on(async {
/// let task = Task::local();
/// let pipe = task.pipe().await?;
/// let msg = task.ptr(&b"ping"[..]).await?;
/// assert_eq!(msg.read().await?, b"ping");
/// let (sent, _) = pipe.write.write(msg).await?;
/// assert_eq!(sent.size(), 4);
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
pub struct WrittenPointer<T: ?Sized + Struct> {
    ptr: Pointer<T>,
}

impl<T: ?Sized + Struct> fmt::Debug for WrittenPointer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Written{:?}", self.ptr)
    }
}

/// A pointer to memory a syscall filled with a `T`.
///
/// # Examples
///
/// What a syscall that fills a buffer gives back, for instance [`FileDescriptor::read`](crate::FileDescriptor::read):
///
/// ```
/// # use rsyscall_handle::Task;
/// # async_io::block_on(async {
/// let task = Task::local();
/// let pipe = task.pipe().await?;
/// task.write_all_bytes(&pipe.write, b"pong").await?;
/// let (got, _) = pipe.read.read(task.malloc_bytes(64).await?).await?;
/// assert_eq!(got.size(), 4);
/// assert_eq!(got.read().await?, b"pong");
/// // Done with the contents: reuse the memory as an uninitialized buffer.
/// let buf = got.into_pointer();
/// assert_eq!(buf.size(), 4);
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
pub struct ReadablePointer<T: ?Sized + Struct> {
    ptr: Pointer<T>,
}

impl<T: ?Sized + Struct> fmt::Debug for ReadablePointer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Readable{:?}", self.ptr)
    }
}

macro_rules! initialized_pointer {
    ($name:ident) => {
        impl<T: ?Sized + Struct> $name<T> {
            /// Reads and parses the value.
            ///
            /// # Errors
            /// The transport's errors; [`Error::InvalidArgument`] if the bytes do not parse.
            pub async fn read(&self) -> Result<T::Owned> {
                let bytes = self.ptr.alloc.read(0, self.ptr.size()).await?;
                T::from_bytes(&bytes)
            }

            /// The pointer, forgetting that it holds a value.
            pub fn into_pointer(self) -> Pointer<T> {
                self.ptr
            }

            /// The pointer, still holding the value.
            pub fn pointer(&self) -> &Pointer<T> {
                &self.ptr
            }

            /// Its size in bytes.
            pub fn size(&self) -> usize {
                self.ptr.size()
            }

            /// The address, meaningful in its address space only.
            pub fn near(&self) -> Address {
                self.ptr.near()
            }

            /// The address with its address space.
            pub fn far(&self) -> far::Pointer {
                self.ptr.far()
            }

            /// Splits the value's memory at `at` (for arrays and byte buffers), both parts
            /// still holding what was there.
            ///
            /// # Errors
            /// [`Error::InvalidArgument`] if `at` is past the end.
            pub fn split(self, at: usize) -> Result<($name<T>, $name<T>)> {
                let (a, b) = self.ptr.split(at)?;
                Ok(($name { ptr: a }, $name { ptr: b }))
            }
        }
    };
}
initialized_pointer!(WrittenPointer);
initialized_pointer!(ReadablePointer);

impl<T: ?Sized + Struct> WrittenPointer<T> {
    /// Declares that a syscall overwrote the value with a `T` of its own.
    pub fn into_readable(self) -> ReadablePointer<T> {
        ReadablePointer { ptr: self.ptr }
    }
}

/// A pointer to memory a syscall filled with a `T` that carries resources (received file
/// descriptors): it must be read exactly once, which [`LinearPointer::read`] enforces by
/// consuming it. Dropping it unread is logged as an error: the resources are then lost.
///
/// # Examples
///
/// Made by [`Pointer::filled_linear`] when a syscall wrote resources into a buffer; read once:
///
/// ```
/// # use rsyscall_handle::Task;
/// # async_io::block_on(async {
/// let task = Task::local();
/// let pipe = task.pipe().await?;
/// task.write_all_bytes(&pipe.write, b"once").await?;
/// let (got, _) = pipe.read.read(task.malloc_bytes(4).await?).await?;
/// let (linear, _) = got.into_pointer().filled_linear(4)?;
/// let (value, buf) = linear.read().await?;
/// assert_eq!(value, b"once");
/// assert_eq!(buf.size(), 4);
/// # Ok::<(), rsyscall_handle::Error>(())
/// # }).unwrap();
/// ```
#[must_use = "a LinearPointer holds resources (such as received fds) that are lost unless it is read"]
pub struct LinearPointer<T: ?Sized + Struct> {
    ptr: Option<Pointer<T>>,
}

impl<T: ?Sized + Struct> fmt::Debug for LinearPointer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Linear{:?}", self.ptr)
    }
}

impl<T: ?Sized + Struct> LinearPointer<T> {
    /// Reads the value, once, and returns it with the now-inert buffer.
    ///
    /// # Errors
    /// The transport's errors; [`Error::InvalidArgument`] if the bytes do not parse. The
    /// buffer is freed then.
    pub async fn read(mut self) -> Result<(T::Owned, Pointer<T>)> {
        let ptr = self
            .ptr
            .take()
            .ok_or_else(|| Error::invalid("LinearPointer::read", "already read"))?;
        let bytes = ptr.alloc.read(0, ptr.size()).await?;
        Ok((T::from_bytes(&bytes)?, ptr))
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.ptr.as_ref().map_or(0, Pointer::size)
    }
}

impl<T: ?Sized + Struct> Drop for LinearPointer<T> {
    fn drop(&mut self) {
        if let Some(ptr) = &self.ptr {
            log::error!("{ptr:?} was dropped without being read: the resources it held are lost");
        }
    }
}
