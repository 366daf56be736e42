//! Shared copies of names that many stored objects repeat (namespaces, service
//! accounts, port names): each distinct string is allocated once per process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// Interned strings, and the count after the last pruning.
struct Table {
    names: HashSet<Arc<str>>,
    pruned_at: usize,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(Table { names: HashSet::new(), pruned_at: 0 }))
}

/// The shared copy of `name`.
pub fn intern(name: &str) -> Arc<str> {
    let mut table = table().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(shared) = table.names.get(name) {
        return shared.clone();
    }
    // Names no stored object holds any more are dropped each time the table doubled.
    if table.names.len() >= 2 * table.pruned_at.max(1024) {
        table.names.retain(|n| Arc::strong_count(n) > 1);
        table.pruned_at = table.names.len();
    }
    let shared: Arc<str> = Arc::from(name);
    table.names.insert(shared.clone());
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_allocation() {
        let a = intern("intern-test-name");
        let b = intern(&String::from("intern-test-name"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "intern-test-name");
        assert!(!Arc::ptr_eq(&a, &intern("intern-test-other")));
    }
}
