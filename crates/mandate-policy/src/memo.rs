//! A bounded memo of a pure function: answers remembered under the whole of their inputs.
//!
//! Used where policy's work depends only on facts the caller passes (a call's entities on its agents,
//! root human and tool; a call's decision on its whole request and the policy set). A hit is
//! therefore the answer those very inputs would compute, never one computed for other facts under
//! the same ids. Bounded: emptied when full, so a flood of distinct requests costs memory up to the
//! capacity and then only the misses it would have cost anyway.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

pub(crate) struct Memo<K, V> {
    entries: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The remembered answer for `key`, if any.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // A poisoned lock only means another thread panicked between two map operations, each of
        // which leaves the map whole; the entries are still answers to their own keys.
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Remembers `value` as the answer for `key`.
    pub(crate) fn insert(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, value);
    }

    /// The answer for `key`: remembered, or computed by `compute` (outside the lock: two threads may
    /// compute the same answer once each, which is harmless) and remembered when it succeeds.
    pub(crate) fn get_or_try<E>(&self, key: K, compute: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(hit) = self.get(&key) {
            return Ok(hit);
        }
        let value = compute()?;
        self.insert(key, value.clone());
        Ok(value)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn a_full_memo_starts_over_and_never_answers_for_another_key() {
        let memo = Memo::new(2);
        memo.insert("a".to_owned(), 1);
        memo.insert("b".to_owned(), 2);
        assert_eq!((memo.get("a"), memo.get("b"), memo.get("c")), (Some(1), Some(2), None));
        memo.insert("c".to_owned(), 3);
        assert_eq!(memo.len(), 1, "emptied when full, then the new entry");
        assert_eq!((memo.get("a"), memo.get("c")), (None, Some(3)));
    }

    #[test]
    fn a_failed_computation_is_not_remembered() {
        let memo: Memo<u8, u8> = Memo::new(4);
        assert_eq!(memo.get_or_try(1, || Err::<u8, &str>("no")), Err("no"));
        assert_eq!(memo.get(&1), None);
        assert_eq!(memo.get_or_try(1, || Ok::<u8, &str>(7)), Ok(7));
        assert_eq!(memo.get_or_try(1, || Err::<u8, &str>("not asked")), Ok(7));
    }
}
