//! A bounded buffer that keeps the last bytes a command printed: the output excerpt.
//!
//! Memory stays O(limit) however much the command prints; only the total is counted.

use std::collections::VecDeque;

#[derive(Debug)]
pub(crate) struct TailBuffer {
    limit: usize,
    bytes: VecDeque<u8>,
    total: u64,
}

impl TailBuffer {
    pub(crate) fn new(limit: usize) -> TailBuffer {
        TailBuffer {
            limit,
            bytes: VecDeque::new(),
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if chunk.len() >= self.limit {
            self.bytes.clear();
            self.bytes.extend(&chunk[chunk.len() - self.limit..]);
            return;
        }
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.limit);
        self.bytes.drain(..overflow);
        self.bytes.extend(chunk);
    }

    /// The kept tail, in write order, and the number of bytes pushed in all.
    pub(crate) fn snapshot(&self) -> (Vec<u8>, u64) {
        (self.bytes.iter().copied().collect(), self.total)
    }
}
