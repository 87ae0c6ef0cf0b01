//! Prometheus's name syntax, for metric names and label names.

/// Whether `name` is a Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`, not
/// reserved (`__` prefix).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Whether `name` may name a signal in filters: an identifier
/// (`[a-zA-Z_][a-zA-Z0-9_]*`) that is not a filter keyword.
pub fn is_signal_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !crate::filter::KEYWORDS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_prometheus() {
        assert!(is_metric_name("fleet:speed_kmh_avg"));
        assert!(!is_metric_name("1x"));
        assert!(!is_metric_name("speed-kmh"));
        assert!(is_label_name("region"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
        assert!(is_signal_name("IC_RPM"));
        assert!(!is_signal_name("and"));
        assert!(!is_signal_name("soc.pct"));
    }
}
