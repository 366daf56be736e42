//! The objects of one kind by key, shared between the states that hold the same ones.

use std::borrow::Borrow;
use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// One kind's objects: a map shared until it is changed. A clone copies a pointer; the
/// first change to a shared map copies its keys and pointers (never the objects).
/// Read it as the map it derefs to; change it with [`Objects::make_mut`].
pub struct Objects<K, V>(Arc<BTreeMap<K, Arc<V>>>);

impl<K, V> Objects<K, V> {
    pub fn new() -> Self {
        Self(Arc::new(BTreeMap::new()))
    }

    /// Whether both are the same map (one a clone of the other, unchanged since): then
    /// they hold the same objects.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<K: Ord + Clone, V> Objects<K, V> {
    /// The map to change (copied first if another state shares it).
    pub fn make_mut(&mut self) -> &mut BTreeMap<K, Arc<V>> {
        Arc::make_mut(&mut self.0)
    }

    /// Inserts or replaces the object at `key`.
    pub fn put(&mut self, key: K, object: V) {
        self.make_mut().insert(key, Arc::new(object));
    }

    /// Removes the object at `key`; true if there was one. A shared map is copied only
    /// when it holds the key.
    pub fn take<Q: Ord + ?Sized>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.contains_key(key) && self.make_mut().remove(key).is_some()
    }
}

impl<K, V> Clone for Objects<K, V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K, V> Default for Objects<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Deref for Objects<K, V> {
    type Target = BTreeMap<K, Arc<V>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a, K, V> IntoIterator for &'a Objects<K, V> {
    type Item = (&'a K, &'a Arc<V>);
    type IntoIter = btree_map::Iter<'a, K, Arc<V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Objects<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_until_changed() {
        let mut a: Objects<String, u32> = Objects::new();
        a.put("x".into(), 1);
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(!a.clone().take("missing"), "nothing to remove");
        a.put("y".into(), 2);
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert!(Arc::ptr_eq(&a["x"], &b["x"]), "objects stay shared");
        assert_eq!((a.len(), b.len()), (2, 1));
        assert!(a.take("x"));
        assert_eq!(b.keys().collect::<Vec<_>>(), ["x"]);
    }
}
