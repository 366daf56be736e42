//! A labelled metric family whose hot path takes no lock.
//!
//! prometheus-client's `Family::get_or_create` takes an `RwLock` on every call. Here the
//! map of label sets is an immutable snapshot behind an [`ArcSwap`]: a lookup is an
//! atomic load plus a hash probe. Only the first use of a new label set takes a mutex,
//! copies the map and publishes the copy; label sets are bounded (see README,
//! "Metrics"), so this happens a bounded number of times.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
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
}

impl<K, M> Clone for LockFreeFamily<K, M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<K, M> Default for LockFreeFamily<K, M> {
    fn default() -> Self {
        Self { inner: Arc::new(Inner { metrics: ArcSwap::from_pointee(HashMap::new()), insert: Mutex::new(()) }) }
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

    #[cold]
    fn insert_slow(&self, labels: &K) -> Arc<M> {
        let _guard = self.inner.insert.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.inner.metrics.load_full();
        if let Some(metric) = current.get(labels) {
            return metric.clone();
        }
        let metric = Arc::new(M::default());
        let mut next = HashMap::clone(&current);
        next.insert(labels.clone(), metric.clone());
        self.inner.metrics.store(Arc::new(next));
        metric
    }

    /// How many label sets exist.
    pub fn len(&self) -> usize {
        self.inner.metrics.load().len()
    }

    /// True before any label set was used.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
