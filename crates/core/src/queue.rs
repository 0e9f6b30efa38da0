//! One bounded queue type for every core and driver.
//!
//! A full queue never drops what it is given: [`BoundedQueue::push`] hands the item back in
//! [`Full`], and the caller decides — slow the producer (stop reading from that peer) or close
//! the connection with a typed reason. Nothing is lost silently.

use std::collections::VecDeque;

/// The queue was full; the item comes back untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue full ({capacity} items)")]
pub struct Full<T> {
    /// The item that did not fit.
    pub item: T,
    /// The queue's capacity.
    pub capacity: usize,
}

/// A FIFO with a fixed capacity.
#[derive(Debug, Clone)]
pub struct BoundedQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> BoundedQueue<T> {
    /// An empty queue that holds at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> BoundedQueue<T> {
        let capacity = capacity.max(1);
        BoundedQueue {
            items: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    /// Appends `item`, or gives it back when the queue is full.
    pub fn push(&mut self, item: T) -> Result<(), Full<T>> {
        if self.items.len() >= self.capacity {
            return Err(Full {
                item,
                capacity: self.capacity,
            });
        }
        self.items.push_back(item);
        Ok(())
    }

    /// The oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// The oldest item, left in place.
    pub fn peek(&self) -> Option<&T> {
        self.items.front()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the next push would fail.
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Room left.
    pub fn remaining(&self) -> usize {
        self.capacity - self.items.len()
    }

    /// The items, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// Removes every item, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.items.drain(..)
    }

    /// Keeps only the items `f` accepts.
    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.items.retain(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_hands_the_item_back() {
        let mut q = BoundedQueue::new(2);
        assert!(q.push(1).is_ok());
        assert!(q.push(2).is_ok());
        assert!(q.is_full());
        let e = q.push(3).unwrap_err();
        assert_eq!(e.item, 3);
        assert_eq!(e.capacity, 2);
        assert_eq!(q.pop(), Some(1));
        assert!(q.push(3).is_ok());
        assert_eq!(q.drain().collect::<Vec<_>>(), vec![2, 3]);
    }
}
