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
    notes: Vec<(String, f64)>,
}

impl Timings {
    pub(crate) fn record(&mut self, phase: &str, took: Duration) {
        self.phases.push((phase.to_string(), took));
    }

    pub(crate) fn note(&mut self, name: &str, value: f64) {
        self.notes.push((name.to_string(), value));
    }

    /// The value noted as `name` (the last one).
    pub fn get_note(&self, name: &str) -> Option<f64> {
        self.notes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
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

    /// The JSON object of `timings.json`: phase → seconds (4 decimals),
    /// and, if any value was noted, `"notes"`: name → value.
    pub fn to_json(&self) -> serde_json::Value {
        let mut o: serde_json::Map<String, serde_json::Value> = self
            .phases
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(crate::journal::secs(*v))))
            .collect();
        if !self.notes.is_empty() {
            let notes = self
                .notes
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect();
            o.insert("notes".into(), serde_json::Value::Object(notes));
        }
        serde_json::Value::Object(o)
    }
}

/// Where a bed and its machines record their phases: one [`Timings`],
/// shared; a machine other than the first records its phases as
/// `"<machine>: <phase>"`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimingsLog {
    all: std::sync::Arc<std::sync::Mutex<Timings>>,
    prefix: String,
}

impl TimingsLog {
    /// The same log, for machine `name`'s phases.
    pub(crate) fn for_machine(&self, name: &str) -> TimingsLog {
        TimingsLog {
            all: std::sync::Arc::clone(&self.all),
            prefix: format!("{name}: "),
        }
    }

    pub(crate) fn record(&self, phase: &str, took: Duration) {
        let name = format!("{}{phase}", self.prefix);
        crate::journal::emit(crate::journal::Event::Phase {
            name: name.clone(),
            secs: crate::journal::secs(took),
        });
        crate::util::lock(&self.all).record(&name, took);
    }

    pub(crate) fn note(&self, name: &str, value: f64) {
        crate::util::lock(&self.all).note(&format!("{}{name}", self.prefix), value);
    }

    /// What is recorded so far.
    pub(crate) fn snapshot(&self) -> Timings {
        crate::util::lock(&self.all).clone()
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
        assert!(t.to_json().get("notes").is_none(), "no notes, no key");
        t.note("frames", 12.0);
        t.note("rate_mbit", 94.5);
        t.note("frames", 13.0);
        assert_eq!(t.get_note("frames"), Some(13.0));
        let j = t.to_json();
        assert_eq!(j["notes"]["rate_mbit"], serde_json::json!(94.5));
        assert_eq!(j["notes"]["frames"], serde_json::json!(13.0));
    }
}
