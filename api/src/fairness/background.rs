//! Where large reads run: a few threads of their own, at a lower scheduling priority than the
//! runtime serving everything else. A large read decodes and encodes megabytes without giving
//! its thread back; on the shared workers it would hold up every request queued behind it, and
//! at the same priority it would take the cores from them. Here the operating system runs it
//! with whatever the other requests leave.

use std::future::Future;

use tokio::runtime::Runtime;

/// How much lower than the rest large reads run: nice 10 gets about a tenth of a core's share
/// when it competes with nice 0 (the kernel's weights are 110 against 1024).
const NICENESS: i32 = 10;

/// The threads large reads run on; shut down (without waiting for them) when dropped.
pub struct Background {
    runtime: Option<Runtime>,
}

impl Background {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("keel-large-read")
            .enable_all()
            .on_thread_start(|| {
                // Per thread on Linux: the calling thread's own nice value.
                if let Err(e) = rustix::process::setpriority_process(None, NICENESS) {
                    tracing::warn!(error = %e, "large reads run at normal priority");
                }
            })
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the background threads; None if it panicked or the threads are gone.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let runtime = self.runtime.as_ref()?;
        runtime.spawn(work).await.ok()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async context must not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_background_threads_and_returns_its_result() {
        let background = Background::new(1).expect("runtime");
        let name = background
            .run(async { std::thread::current().name().map(str::to_string) })
            .await;
        assert_eq!(name, Some(Some("keel-large-read".to_string())));
        let nice = background
            .run(async { rustix::process::getpriority_process(None).ok() })
            .await;
        // At least as nice as asked (a runner already nicer cannot be made less nice).
        assert!(nice.flatten().is_some_and(|n| n >= NICENESS), "{nice:?}");
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_none_and_the_threads_go_on() {
        let background = Background::new(1).expect("runtime");
        let failed: Option<()> = background.run(async { panic!("boom") }).await;
        assert_eq!(failed, None);
        assert_eq!(background.run(async { 7 }).await, Some(7));
    }
}
