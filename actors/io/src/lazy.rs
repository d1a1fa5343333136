//! A queue allocated on first use: what a stream keeps for rare work
//! (future-returning reads, writers waiting for a flush) costs an idle
//! stream one pointer, not an empty `VecDeque`'s four words.

use std::collections::VecDeque;

/// A `VecDeque` that is one pointer until something is pushed (and
/// stays allocated after: a stream that used it once likely will again).
#[allow(clippy::box_collection)] // the point: one pointer while unused
pub(crate) struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> Default for LazyDeque<T> {
    fn default() -> Self {
        LazyDeque(None)
    }
}

impl<T> LazyDeque<T> {
    pub(crate) fn push_back(&mut self, value: T) {
        self.0.get_or_insert_default().push_back(value);
    }

    pub(crate) fn front(&self) -> Option<&T> {
        self.0.as_ref()?.front()
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut()?.front_mut()
    }

    /// The queued values, front first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|q| q.iter())
    }

    /// Drops every queued value (keeping the allocation).
    pub(crate) fn clear(&mut self) {
        if let Some(q) = self.0.as_mut() {
            q.clear();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    /// Takes every queued value, in order.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = T> {
        self.0
            .as_mut()
            .map(|q| std::mem::take(&mut **q))
            .into_iter()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::LazyDeque;

    #[test]
    fn allocates_on_first_push_and_keeps_order() {
        let mut q = LazyDeque::default();
        assert!(q.is_empty() && q.0.is_none() && q.front().is_none());
        q.push_back(1);
        q.push_back(2);
        assert_eq!(q.front(), Some(&1));
        assert_eq!(q.pop_front(), Some(1));
        q.push_back(3);
        *q.front_mut().unwrap() += 10;
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), [12, 3]);
        assert_eq!(q.take_all().collect::<Vec<_>>(), [12, 3]);
        q.push_back(4);
        q.clear();
        assert!(q.is_empty() && q.0.is_some());
        assert!(q.is_empty() && q.pop_front().is_none());
    }
}
