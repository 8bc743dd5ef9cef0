//! The log filter as the operator API's SET_LOGGING_LEVEL and GET_LOGGING_LEVEL see it
//! (reference §4.2): a glog-style verbosity level that maps onto `tracing` directives, set for
//! a while and then reverted to the default the daemon started with.
//!
//! Mesos's level is glog's verbosity (`--v`): 0 is the normal log, higher numbers add more
//! detail. Agora maps it onto the filter the daemon started with (`AGORA_LOG`, else `info`):
//! level 0 is that filter, 1 adds `debug` for Agora's own crates, 2 adds `trace` for them, and
//! 3 or more traces everything (HTTP and runtime crates included). The filter itself belongs
//! to the binary that installed the subscriber; this module only calls the reload function
//! it was given, so a daemon started in-process without one just records the level.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Replaces the process's log filter with the given directives.
pub type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The current verbosity level and how to apply one.
pub struct Logging {
    default: String,
    reload: Option<Reload>,
    level: AtomicU32,
    /// Bumped by every `set`, so that only the latest one's revert applies.
    generation: AtomicU64,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging")
            .field("default", &self.default)
            .field("reloadable", &self.reload.is_some())
            .field("level", &self.level())
            .finish()
    }
}

impl Default for Logging {
    /// A level that is only recorded: no filter to reload (a daemon started in-process).
    fn default() -> Self {
        Self::new("info", None)
    }
}

impl Logging {
    /// `default` is the filter level 0 stands for; `reload` applies directives.
    pub fn new(default: impl Into<String>, reload: Option<Reload>) -> Self {
        Self {
            default: default.into(),
            reload,
            level: AtomicU32::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The level GET_LOGGING_LEVEL reports.
    pub fn level(&self) -> u32 {
        self.level.load(Ordering::Relaxed)
    }

    /// The directives a level stands for (see the module documentation).
    pub fn directives(default: &str, level: u32) -> String {
        match level {
            0 => default.to_string(),
            1 => format!("{default},agora=debug"),
            2 => format!("{default},agora=trace"),
            _ => "trace".to_string(),
        }
    }

    /// Applies `level` now and reverts to level 0 after `duration`, unless another `set`
    /// came in between (it owns the level then). Needs a tokio runtime for the revert.
    pub fn set(self: &Arc<Self>, level: u32, duration: Duration) -> Result<(), String> {
        self.apply(level)?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(level, duration = ?duration, "logging level set");
        let logging = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            if logging.generation.load(Ordering::Relaxed) == generation {
                match logging.apply(0) {
                    Ok(()) => tracing::info!("logging level reverted to 0"),
                    Err(e) => tracing::warn!(error = %e, "cannot revert the logging level"),
                }
            }
        });
        Ok(())
    }

    fn apply(&self, level: u32) -> Result<(), String> {
        if let Some(reload) = &self.reload {
            reload(&Self::directives(&self.default, level))?;
        }
        self.level.store(level, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn levels_map_onto_directives() {
        assert_eq!(Logging::directives("info", 0), "info");
        assert_eq!(Logging::directives("warn", 1), "warn,agora=debug");
        assert_eq!(Logging::directives("info", 2), "info,agora=trace");
        assert_eq!(Logging::directives("info", 3), "trace");
        assert_eq!(Logging::directives("info", 100), "trace");
    }

    #[tokio::test(start_paused = true)]
    async fn a_level_reverts_after_its_duration_unless_replaced() {
        let applied = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&applied);
        let reload: Reload = Box::new(move |d: &str| {
            seen.lock().expect("not poisoned").push(d.to_string());
            Ok(())
        });
        let logging = Arc::new(Logging::new("info", Some(reload)));
        logging.set(1, Duration::from_secs(10)).expect("set");
        assert_eq!(logging.level(), 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
        // A second call replaces the first, whose revert then does nothing.
        logging.set(2, Duration::from_secs(10)).expect("set");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(logging.level(), 2);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(logging.level(), 0);
        let applied = applied.lock().expect("not poisoned").clone();
        assert_eq!(applied, ["info,agora=debug", "info,agora=trace", "info"]);
    }
}
