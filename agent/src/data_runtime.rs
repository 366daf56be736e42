//! The data path's runtime: the proxy listeners and their connections, apart from the
//! control plane (which runs on the main thread).
//!
//! With several workers it is tokio's multi-thread scheduler (work stealing). With one
//! it is a current-thread runtime driven by a thread of its own: the same single thread
//! of work, without the multi-thread scheduler's cross-thread bookkeeping on every task
//! wake-up (measured: 7% less CPU per request with `examples/loopback_load`, three
//! interleaved runs each). Either way the data-path threads are named `ambit-data`.

use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

/// The name of the data path's worker threads.
pub const THREAD_NAME: &str = "ambit-data";

/// The data path's runtime (see the module docs). Dropping it stops the data path.
pub struct DataPathRuntime {
    handle: Handle,
    kind: Kind,
}

enum Kind {
    Workers(#[allow(dead_code)] Runtime),
    Single { stop: Option<oneshot::Sender<()>>, thread: Option<JoinHandle<()>> },
}

impl DataPathRuntime {
    /// A runtime with `workers` threads (at least one).
    pub fn new(workers: usize) -> std::io::Result<Self> {
        if workers > 1 {
            let runtime = Builder::new_multi_thread().worker_threads(workers).thread_name(THREAD_NAME).enable_all().build()?;
            return Ok(Self { handle: runtime.handle().clone(), kind: Kind::Workers(runtime) });
        }
        // Blocking-pool threads get another name, as they are no data-path worker.
        let runtime = Builder::new_current_thread().thread_name("ambit-blocking").enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { handle, kind: Kind::Single { stop: Some(stop), thread: Some(thread) } })
    }

    /// Where to spawn the data path's tasks.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for DataPathRuntime {
    fn drop(&mut self) {
        if let Kind::Single { stop, thread } = &mut self.kind {
            drop(stop.take());
            if let Some(thread) = thread.take() {
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

    #[test]
    fn one_worker_is_one_thread_that_runs_spawned_tasks_until_dropped() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let before = data_threads();
        let runtime = DataPathRuntime::new(1).expect("runtime");
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.handle().spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            tx.send(name).expect("send");
        });
        let ran_on = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the task ran");
        assert_eq!(ran_on.as_deref(), Some(THREAD_NAME));
        assert_eq!(data_threads(), before + 1);
        drop(runtime);
        assert_eq!(data_threads(), before, "the thread ends with the runtime");
    }

    #[test]
    fn several_workers_are_as_many_threads() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let before = data_threads();
        let runtime = DataPathRuntime::new(2).expect("runtime");
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.handle().spawn(async move { tx.send(std::thread::current().name().map(str::to_owned)).expect("send") });
        let ran_on = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the task ran");
        assert_eq!(ran_on.as_deref(), Some(THREAD_NAME));
        // Worker threads start (and take their name) in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while data_threads() != before + 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(data_threads(), before + 2);
    }
}
