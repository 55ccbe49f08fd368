//! How long each phase of a test bed took: the report behind
//! `timings.json`.

use std::time::Duration;

/// Phase durations, in the order they happened. alpy records `setup`
/// (with its parts `nodes`, `taps`, `qemu`), `boot` (resume to the first
/// prompt), `login`, `shutdown` and `close`; [`crate::TestBed::timed`] adds
/// the test's own phases.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    phases: Vec<(String, Duration)>,
}

impl Timings {
    pub(crate) fn record(&mut self, phase: &str, took: Duration) {
        self.phases.push((phase.to_string(), took));
    }

    /// The duration of `phase` (the last one, if it ran more than once).
    pub fn get(&self, phase: &str) -> Option<Duration> {
        self.phases
            .iter()
            .rev()
            .find(|(p, _)| p == phase)
            .map(|(_, d)| *d)
    }

    /// Every phase in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.phases.iter().map(|(p, d)| (p.as_str(), *d))
    }

    /// The JSON object of `timings.json`: phase → seconds (4 decimals).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.phases
                .iter()
                .map(|(k, v)| {
                    let secs = (v.as_secs_f64() * 1e4).round() / 1e4;
                    (k.clone(), serde_json::json!(secs))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_keep_their_order_and_the_last_value() {
        let mut t = Timings::default();
        t.record("setup", Duration::from_millis(300));
        t.record("boot", Duration::from_millis(7_500));
        t.record("setup", Duration::from_millis(200));
        assert_eq!(t.get("setup"), Some(Duration::from_millis(200)));
        assert_eq!(
            t.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            ["setup", "boot", "setup"]
        );
        assert_eq!(t.to_json()["boot"], serde_json::json!(7.5));
    }
}
