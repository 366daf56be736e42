//! A labelled metric family whose hot path takes no lock.
//!
//! prometheus-client's `Family::get_or_create` takes an `RwLock` on every call. Here the
//! map of label sets is an immutable snapshot behind an [`ArcSwap`]: a lookup is an
//! atomic load plus a hash probe. Only the first use of a new label set takes a mutex,
//! copies the map and publishes the copy; label sets are bounded (see README,
//! "Metrics"), so this happens a bounded number of times.
//!
//! Labels that come from pods (namespace, owning workload) can still grow without
//! bound under churn (bare pods named one by one, Jobs with unique names). A family
//! made with [`LockFreeFamily::capped`] holds at most `max` label sets of its own;
//! beyond that, an update with a new label set goes to that set's overflow form (its
//! caller labels blanked, a bounded set) and counts one overflow.

use std::hash::Hash;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
/// Looked up on every request with the request's labels: hashed with foldhash (seeded
/// per process, several times faster than SipHash on such keys), and looked up by a
/// borrowed form of the labels ([`LabelKey`]), so that a request clones no label (each
/// clone of a shared `Arc<str>` is a write to a cache line that every data-path thread
/// shares).
type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// A borrowed form of the label set `K`: hashes as `K` does, compares equal to the `K`
/// it stands for, and makes one when a new label set is first used.
pub trait LabelKey<K>: Hash + hashbrown::Equivalent<K> {
    fn to_labels(&self) -> K;
}
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Metrics of type `M`, one per label set `K`. Clones share the same metrics.
#[derive(Debug)]
pub struct LockFreeFamily<K, M> {
    inner: Arc<Inner<K, M>>,
}

#[derive(Debug)]
struct Inner<K, M> {
    metrics: ArcSwap<HashMap<K, Arc<M>>>,
    insert: Mutex<()>,
    cap: Option<Cap<K>>,
}

/// The bound of a [`LockFreeFamily::capped`] family.
#[derive(Debug)]
struct Cap<K> {
    max: usize,
    /// The overflow form of a label set (a bounded set of values).
    overflow: fn(&K) -> K,
    /// Counts updates sent to an overflow form.
    overflowed: Counter,
}

impl<K, M> Clone for LockFreeFamily<K, M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<K, M> Default for LockFreeFamily<K, M> {
    fn default() -> Self {
        Self::with_cap(None)
    }
}

impl<K, M> LockFreeFamily<K, M> {
    fn with_cap(cap: Option<Cap<K>>) -> Self {
        Self { inner: Arc::new(Inner { metrics: ArcSwap::from_pointee(HashMap::default()), insert: Mutex::new(()), cap }) }
    }

    /// A family of at most `max` label sets besides overflow forms: a new label set
    /// beyond that is recorded under `overflow(labels)`, counted in `overflowed`.
    pub fn capped(max: usize, overflow: fn(&K) -> K, overflowed: Counter) -> Self {
        Self::with_cap(Some(Cap { max, overflow, overflowed }))
    }
}

impl<K: Clone + Eq + Hash, M> LockFreeFamily<K, M> {
    /// Runs `f` on the metric of the label set `key` borrows, if that label set exists
    /// (nothing is created).
    pub fn find_key<Q: LabelKey<K>, R>(&self, key: &Q, f: impl FnOnce(&M) -> R) -> Option<R> {
        self.inner.metrics.load().get(key).map(|metric| f(metric))
    }

    /// The metric of exactly `labels` (not an overflow form), if it exists.
    pub fn get_exact(&self, labels: &K) -> Option<Arc<M>> {
        self.inner.metrics.load().get(labels).cloned()
    }

    /// Sets `metric` for `labels`, replacing the label set's metric if it exists; a new
    /// label set is added only while the family holds fewer than `max`.
    pub fn replace_below(&self, labels: K, metric: M, max: usize) {
        let _guard = self.inner.insert.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.inner.metrics.load_full();
        if current.len() < max || current.contains_key(&labels) {
            self.publish(&current, labels, Arc::new(metric));
        }
    }

    /// How many label sets exist.
    pub fn len(&self) -> usize {
        self.inner.metrics.load().len()
    }

    /// True before any label set was used.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publishes a copy of `current` with `metric` for `labels` (insert lock held).
    fn publish(&self, current: &Arc<HashMap<K, Arc<M>>>, labels: K, metric: Arc<M>) -> Arc<M> {
        let mut next = HashMap::clone(current);
        next.insert(labels, metric.clone());
        self.inner.metrics.store(Arc::new(next));
        metric
    }
}

impl<K: Clone + Eq + Hash, M: Default> LockFreeFamily<K, M> {
    /// Runs `f` on the metric of `labels`, creating it on first use.
    pub fn with<R>(&self, labels: &K, f: impl FnOnce(&M) -> R) -> R {
        if let Some(metric) = self.inner.metrics.load().get(labels) {
            return f(metric);
        }
        let metric = self.insert_slow(labels);
        f(&metric)
    }

    /// Runs `f` on the metric of the label set `key` borrows, creating it on first use.
    pub fn with_key<Q: LabelKey<K>, R>(&self, key: &Q, f: impl FnOnce(&M) -> R) -> R {
        if let Some(metric) = self.inner.metrics.load().get(key) {
            return f(metric);
        }
        let metric = self.insert_slow(&key.to_labels());
        f(&metric)
    }

    #[cold]
    fn insert_slow(&self, labels: &K) -> Arc<M> {
        let _guard = self.inner.insert.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.inner.metrics.load_full();
        if let Some(metric) = current.get(labels) {
            return metric.clone();
        }
        let overflow = self.inner.cap.as_ref().filter(|cap| current.len() >= cap.max);
        let Some(cap) = overflow else {
            return self.publish(&current, labels.clone(), Arc::default());
        };
        cap.overflowed.inc();
        let bounded = (cap.overflow)(labels);
        match current.get(&bounded) {
            Some(metric) => metric.clone(),
            None => self.publish(&current, bounded, Arc::default()),
        }
    }

}

impl<K, M> EncodeMetric for LockFreeFamily<K, M>
where
    K: EncodeLabelSet + std::fmt::Debug,
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, metric) in self.inner.metrics.load().iter() {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

impl<K, M: TypedMetric> TypedMetric for LockFreeFamily<K, M> {
    const TYPE: MetricType = M::TYPE;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(labels: &(String, u8)) -> (String, u8) {
        (String::new(), labels.1)
    }

    #[test]
    fn a_capped_family_sends_new_label_sets_to_their_overflow_form() {
        let overflowed = Counter::default();
        let family: LockFreeFamily<(String, u8), Counter> = LockFreeFamily::capped(3, blank, overflowed.clone());
        for pod in 0..1000 {
            family.with(&(format!("pod-{pod}"), (pod % 2) as u8), |c| c.inc());
        }
        // Three label sets of its own, plus at most one overflow form per bounded value.
        assert_eq!(family.len(), 3 + 2);
        assert_eq!(overflowed.get(), 997);
        assert_eq!(family.with(&(String::new(), 0), |c| c.get()) + family.with(&(String::new(), 1), |c| c.get()), 997);
        // Label sets that exist keep counting as themselves.
        family.with(&("pod-0".to_string(), 0), |c| c.inc());
        assert_eq!(family.with(&("pod-0".to_string(), 0), |c| c.get()), 2);
        assert_eq!(overflowed.get(), 997);
    }
}
