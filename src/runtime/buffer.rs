//! A fixed-capacity byte buffer with read and write cursors, and the pool
//! connections take buffers from.
//!
//! Bytes are appended at the end (`space` then `fill`) and taken from the
//! front (`consume`). A buffer's capacity never changes: a full buffer is
//! backpressure, and the owner stops reading into it, or moves to a larger
//! one from the pool ([`BufferPool::grow`]) when its use allows.

/// A fixed-capacity byte queue. The default one has no capacity: a
/// placeholder for a connection that holds no buffer.
#[derive(Debug, Default)]
pub struct Buffer {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buffer {
    /// An empty buffer holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Buffer {
            bytes: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The bytes held, oldest first.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// How many bytes are held.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when no byte is held.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The most bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// True when no byte more fits.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Room to append into. The held bytes move to the front first when the
    /// gap there is larger than the room at the end. Empty only when full.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 && self.start > self.bytes.len() - self.end {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.bytes[self.end..]
    }

    /// Marks `n` bytes of [`space`](Self::space) as written.
    pub fn fill(&mut self, n: usize) {
        self.end = (self.end + n).min(self.bytes.len());
    }

    /// Appends as much of `data` as fits; returns how much did.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let space = self.space();
        let n = data.len().min(space.len());
        space[..n].copy_from_slice(&data[..n]);
        self.fill(n);
        n
    }

    /// Drops `n` bytes from the front (all of them if fewer are held).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_and_compaction() {
        let mut b = Buffer::new(8);
        assert_eq!(b.push(b"abcdef"), 6);
        b.consume(4);
        assert_eq!(b.data(), b"ef");
        // Appending past the end moves "ef" to the front.
        assert_eq!(b.push(b"ghijklm"), 6);
        assert_eq!(b.data(), b"efghijkl");
        assert!(b.is_full());
        assert!(b.space().is_empty());
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.space().len(), 8);
    }
}

/// The first buffer a connection reads into: most request and response
/// heads fit. Only a head (or a stream) that fills it grows into a larger
/// one.
pub const SMALL_BUFFER: usize = 4 * 1024;

/// Bytes of free buffers a [`BufferPool`] keeps in one size class (at least
/// one buffer): idle memory stays bounded whatever the traffic was.
pub const POOL_CLASS_BYTES: usize = 1024 * 1024;

/// Most size classes a [`BufferPool`] keeps free buffers of; buffers of
/// other sizes are freed when given back.
pub const MAX_POOL_CLASSES: usize = 8;

/// Free buffers by size class, for the connections that need one next: a
/// fresh buffer costs a zeroed allocation of its whole capacity, a pooled
/// one nothing. Connections take a buffer when bytes arrive and give it back
/// as soon as it is drained, so a handful of buffers serves many
/// connections.
#[derive(Debug, Default)]
pub struct BufferPool {
    classes: Vec<Class>,
}

#[derive(Debug)]
struct Class {
    capacity: usize,
    free: Vec<Buffer>,
}

impl Class {
    fn max_kept(&self) -> usize {
        (POOL_CLASS_BYTES / self.capacity.max(1)).max(1)
    }
}

impl BufferPool {
    /// An empty buffer of `capacity` bytes, reused when one is pooled.
    pub fn take(&mut self, capacity: usize) -> Buffer {
        self.classes
            .iter_mut()
            .find(|c| c.capacity == capacity)
            .and_then(|c| c.free.pop())
            .unwrap_or_else(|| Buffer::new(capacity))
    }

    /// Keeps `buffer` for reuse, emptied, unless its class is full (or the
    /// buffer has no capacity: a placeholder).
    pub fn give(&mut self, mut buffer: Buffer) {
        let capacity = buffer.capacity();
        if capacity == 0 {
            return;
        }
        let class = match self.classes.iter().position(|c| c.capacity == capacity) {
            Some(i) => &mut self.classes[i],
            None if self.classes.len() < MAX_POOL_CLASSES => {
                self.classes.push(Class {
                    capacity,
                    free: Vec::new(),
                });
                let last = self.classes.len() - 1;
                &mut self.classes[last]
            }
            None => return,
        };
        if class.free.len() < class.max_kept() {
            buffer.clear();
            class.free.push(buffer);
        }
    }

    /// Gives `buffer` back if it holds nothing, leaving a placeholder with
    /// no capacity in its place.
    pub fn release(&mut self, buffer: &mut Buffer) {
        if buffer.is_empty() && buffer.capacity() > 0 {
            self.give(std::mem::take(buffer));
        }
    }

    /// Moves what `buffer` holds into one of `capacity` bytes (taken from
    /// the pool) when it is smaller; the old one goes back.
    pub fn grow(&mut self, buffer: &mut Buffer, capacity: usize) {
        if buffer.capacity() >= capacity {
            return;
        }
        let mut bigger = self.take(capacity);
        bigger.push(buffer.data());
        self.give(std::mem::replace(buffer, bigger));
    }

    /// Buffers kept now.
    pub fn len(&self) -> usize {
        self.classes.iter().map(|c| c.free.len()).sum()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn reuses_by_capacity_and_stays_bounded() {
        let mut pool = BufferPool::default();
        let mut a = pool.take(16);
        a.push(b"dirty");
        pool.give(a);
        let b = pool.take(16);
        assert!(b.is_empty(), "a pooled buffer comes back empty");
        assert!(pool.is_empty());
        pool.give(b);
        assert_eq!(pool.take(32).capacity(), 32, "another size is made fresh");
        let per_class = POOL_CLASS_BYTES / 8;
        for _ in 0..per_class + 5 {
            pool.give(Buffer::new(8));
        }
        assert_eq!(
            pool.len(),
            per_class + 1,
            "the 8-byte class is capped, the 16-byte one holds one"
        );
        for _ in 0..3 {
            pool.give(Buffer::new(POOL_CLASS_BYTES * 2));
        }
        assert_eq!(pool.len(), per_class + 2, "a class of huge buffers keeps one");
        for size in 100..100 + MAX_POOL_CLASSES {
            pool.give(Buffer::new(size));
        }
        assert_eq!(pool.classes.len(), MAX_POOL_CLASSES, "the number of classes is capped");
    }

    #[test]
    fn grows_keeping_the_bytes_and_releases_only_empty_buffers() {
        let mut pool = BufferPool::default();
        let mut b = pool.take(SMALL_BUFFER);
        b.push(&[7u8; SMALL_BUFFER]);
        b.consume(10);
        pool.grow(&mut b, 4 * SMALL_BUFFER);
        assert_eq!(b.capacity(), 4 * SMALL_BUFFER);
        assert_eq!(b.data(), &[7u8; SMALL_BUFFER - 10][..]);
        assert_eq!(pool.len(), 1, "the small buffer went back");
        pool.release(&mut b);
        assert_eq!(b.capacity(), 4 * SMALL_BUFFER, "a buffer holding bytes is kept");
        b.consume(usize::MAX);
        pool.release(&mut b);
        assert_eq!(b.capacity(), 0);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take(4 * SMALL_BUFFER).capacity(), 4 * SMALL_BUFFER);
    }
}
