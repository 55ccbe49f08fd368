//! Rabbit's configuration scripts (kept as files in `rabbit/config/`) and
//! the `RABBIT_SKIP` switch.

use alpy::{Error, Result};

const SCRIPTS: &[(&str, &str)] = &[
    ("addresses.sh", include_str!("../config/addresses.sh")),
    ("forward.sh", include_str!("../config/forward.sh")),
    ("rate-limit.sh", include_str!("../config/rate-limit.sh")),
    ("nat.sh", include_str!("../config/nat.sh")),
    ("firewall.sh", include_str!("../config/firewall.sh")),
    (
        "load-balancer.sh",
        include_str!("../config/load-balancer.sh"),
    ),
];

/// The text of configuration script `name`.
pub fn script(name: &str) -> Result<&'static str> {
    SCRIPTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| Error::Config(format!("no Rabbit configuration script {name:?}")))
}

/// Whether `feature` is listed in `RABBIT_SKIP` (comma-separated).
pub fn skipped(feature: &str) -> bool {
    std::env::var("RABBIT_SKIP")
        .map(|v| v.split(',').any(|f| f.trim() == feature))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_script_is_there() {
        for name in [
            "addresses.sh",
            "forward.sh",
            "rate-limit.sh",
            "nat.sh",
            "firewall.sh",
            "load-balancer.sh",
        ] {
            assert!(super::script(name).unwrap().starts_with("#!/bin/sh"));
        }
        assert!(super::script("nope.sh").is_err());
    }
}
