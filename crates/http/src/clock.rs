//! The time the daemons hand their state machines as `now`.
//!
//! It reads like wall-clock time (seconds since the Unix epoch, so status timestamps are
//! meaningful) but only ever moves forward at the pace of the monotonic clock: it is the wall
//! time at start plus the monotonic time elapsed since. An NTP step therefore cannot expire
//! failover timeouts or freeze retries.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: Duration,
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        let wall_at_start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self { wall_at_start, start: Instant::now() }
    }

    pub fn now(&self) -> Duration {
        self.wall_at_start + self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_wall_time_and_never_goes_back() {
        let clock = Clock::start();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
        let first = clock.now();
        assert!(first.abs_diff(wall) < Duration::from_secs(5));
        assert!(clock.now() >= first);
    }
}
