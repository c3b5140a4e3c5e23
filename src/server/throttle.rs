//! Operational warnings that a peer can cause at will (over-limit
//! connections, protocol errors, idle closes, accept failures) are logged at
//! most a few times a minute each; the lines left out are counted and the
//! count rides on the next line logged. Decision log lines are never
//! throttled: they are the audit trail.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

pub struct Throttle {
    /// Lines per window.
    burst: u32,
    state: Mutex<Window>,
}

struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(burst: u32) -> Throttle {
        Throttle {
            burst,
            state: Mutex::new(Window {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)`: log this event, saying that `n` like it were left out
    /// before; `None`: leave it out (it is counted).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if w.started
            .is_none_or(|t| now.saturating_duration_since(t) >= WINDOW)
        {
            let left_out = w.suppressed;
            *w = Window {
                started: Some(now),
                logged: 1,
                suppressed: 0,
            };
            return Some(left_out);
        }
        if w.logged < self.burst {
            w.logged += 1;
            let left_out = std::mem::take(&mut w.suppressed);
            return Some(left_out);
        }
        w.suppressed += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_a_count() {
        const BURST: u32 = 10;
        let t = Throttle::new(BURST);
        let t0 = Instant::now();
        for i in 0..BURST {
            assert_eq!(t.admit(t0 + Duration::from_millis(i.into())), Some(0));
        }
        for _ in 0..25 {
            assert_eq!(t.admit(t0 + Duration::from_secs(1)), None);
        }
        // The next window's first line carries the count.
        assert_eq!(t.admit(t0 + WINDOW), Some(25));
        assert_eq!(t.admit(t0 + WINDOW + Duration::from_secs(1)), Some(0));
    }
}
