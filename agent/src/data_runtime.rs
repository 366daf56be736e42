//! The data path's runtime: the proxy listeners and their connections, apart from the
//! control plane (which runs on the main thread).
//!
//! One thread per worker, each driving a current-thread tokio runtime of its own, as
//! Envoy's workers and HAProxy's threads do: the node agent binds one listener per
//! worker on each proxy address (SO_REUSEPORT: the kernel spreads new connections over
//! them) and each worker serves the connections it accepted from start to end, with its
//! own upstream connections (the HTTP/1.1 pool is sharded by thread). No connection
//! moves between threads and no worker wakes another; a multi-thread (work-stealing)
//! runtime with as many workers cost more CPU per request: 7% more with one worker in
//! `examples/loopback_load` (three interleaved runs each), and on two cores its workers
//! woke each other and stole work (README, "Performance").
//!
//! The data-path threads are named `ambit-data`; blocking-pool threads `ambit-blocking`.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The name of the data path's worker threads.
pub const THREAD_NAME: &str = "ambit-data";

/// Where the data path's tasks go: one handle per worker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DataPath {
    workers: Arc<[Handle]>,
}

impl DataPath {
    /// The first worker: for the few tasks that are not per connection (health, admin).
    pub fn first(&self) -> &Handle {
        &self.workers[0]
    }

    /// Every worker: each serves its own listeners.
    pub fn workers(&self) -> &[Handle] {
        &self.workers
    }
}

/// The data path's worker threads (see the module docs). Dropping it stops them.
pub struct DataPathRuntime {
    data_path: DataPath,
    threads: Vec<Worker>,
}

struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DataPathRuntime {
    /// `workers` threads (at least one), each with its runtime.
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..workers.max(1) {
            let runtime = Builder::new_current_thread().thread_name("ambit-blocking").enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
            threads.push(Worker { stop: Some(stop), thread: Some(thread) });
        }
        Ok(Self { data_path: DataPath { workers: handles.into() }, threads })
    }

    /// Where to spawn the data path's tasks.
    pub fn data_path(&self) -> &DataPath {
        &self.data_path
    }
}

impl Drop for DataPathRuntime {
    fn drop(&mut self) {
        for worker in &mut self.threads {
            drop(worker.stop.take());
        }
        for worker in &mut self.threads {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests count this process's data-path threads: one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn data_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == THREAD_NAME))
            .count()
    }

    /// The thread each worker's tasks run on.
    fn threads_of(data_path: &DataPath) -> Vec<std::thread::ThreadId> {
        data_path
            .workers()
            .iter()
            .map(|handle| {
                let (tx, rx) = std::sync::mpsc::channel();
                handle.spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    let current = std::thread::current();
                    tx.send((current.id(), current.name().map(str::to_owned))).expect("send");
                });
                let (id, name) = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the task ran");
                assert_eq!(name.as_deref(), Some(THREAD_NAME));
                id
            })
            .collect()
    }

    #[test]
    fn each_worker_is_a_thread_of_its_own_until_dropped() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let before = data_threads();
        for workers in [1, 3] {
            let runtime = DataPathRuntime::new(workers).expect("runtime");
            let threads: std::collections::HashSet<_> = threads_of(runtime.data_path()).into_iter().collect();
            assert_eq!(data_threads(), before + workers);
            assert_eq!(threads.len(), workers, "each worker runs its tasks on its own thread");
            drop(runtime);
            assert_eq!(data_threads(), before, "the threads end with the runtime");
        }
    }
}
