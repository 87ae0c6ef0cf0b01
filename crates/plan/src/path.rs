//! Field paths: a name, or names joined by dots into nested objects.

use std::fmt;

/// Where a value is in a record: `"speed"` or `"signals.coolant_c"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses `text`; `None` when it is empty or has an empty segment
    /// (`"a..b"`, `".a"`).
    pub fn parse(text: &str) -> Option<FieldPath> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        segments
            .iter()
            .all(|s| !s.is_empty())
            .then_some(FieldPath { segments })
    }

    /// The field names from the outermost object in.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The innermost field name.
    pub fn leaf(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_dotted_paths() {
        let p = FieldPath::parse("signals.coolant_c").unwrap();
        assert_eq!(p.segments(), ["signals", "coolant_c"]);
        assert_eq!(p.leaf(), "coolant_c");
        assert_eq!(p.to_string(), "signals.coolant_c");
        assert!(FieldPath::parse("").is_none());
        assert!(FieldPath::parse("a..b").is_none());
        assert!(FieldPath::parse("a.").is_none());
    }
}
