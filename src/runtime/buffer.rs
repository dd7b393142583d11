//! A fixed-capacity byte buffer with read and write cursors.
//!
//! Bytes are appended at the end (`space` then `fill`) and taken from the
//! front (`consume`). The capacity never changes: a full buffer is
//! backpressure, and the owner stops reading into it.

/// A fixed-capacity byte queue.
#[derive(Debug)]
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

/// Most buffers a [`BufferPool`] keeps for reuse (bounds idle memory).
pub const MAX_POOLED_BUFFERS: usize = 256;

/// Buffers of closed connections, kept for new ones: a fresh buffer costs a
/// zeroed allocation of its whole capacity, a pooled one nothing.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Buffer>,
}

impl BufferPool {
    /// An empty buffer of `capacity` bytes, reused when one is pooled.
    pub fn take(&mut self, capacity: usize) -> Buffer {
        match self.free.iter().rposition(|b| b.capacity() == capacity) {
            Some(i) => self.free.swap_remove(i),
            None => Buffer::new(capacity),
        }
    }

    /// Keeps `buffer` for reuse, emptied, unless the pool is full (or the
    /// buffer has no capacity: a placeholder).
    pub fn give(&mut self, mut buffer: Buffer) {
        if self.free.len() < MAX_POOLED_BUFFERS && buffer.capacity() > 0 {
            buffer.clear();
            self.free.push(buffer);
        }
    }

    /// Buffers kept now.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
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
        for _ in 0..MAX_POOLED_BUFFERS + 5 {
            pool.give(Buffer::new(8));
        }
        assert_eq!(pool.len(), MAX_POOLED_BUFFERS);
    }
}
