//! A secret of the configuration (a password, a token, a header value) that
//! cannot be printed by accident.
//!
//! Secrets used to be hidden by hand wherever a configuration was shown, and
//! every new way of showing one (a `Debug` derive, `print-config`) was a new
//! chance to forget. [`Secret`] carries the rule with the value: `Debug`,
//! `Display` and `Serialize` write [`REDACTED`], so a configuration holding
//! secrets may derive all three. Serializing keeps an empty secret empty, so
//! that an unset key stays unset and the printed configuration loads back.
//! [`Secret::expose`] is the only way to the value, for the code that sends it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What is shown in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// A secret string: shown as [`REDACTED`], read with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (an unset key). Says nothing else about it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `url` with the password of its user information (`scheme://user:password@host…`)
/// shown as [`REDACTED`]; any other text unchanged.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.into();
    };
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return url.into();
    };
    match authority[..at].split_once(':') {
        Some((user, _password)) => format!(
            "{}{user}:{REDACTED}{}",
            &url[..scheme_end],
            &url[scheme_end + at..]
        )
        .into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_urls_password_is_redacted() {
        assert_eq!(
            redact_url("http://user:secret@prom:9090/api/v1/write?x=a:b@c"),
            format!("http://user:{REDACTED}@prom:9090/api/v1/write?x=a:b@c")
        );
        assert_eq!(
            redact_url("https://user@prom/write"),
            "https://user@prom/write"
        );
        assert_eq!(
            redact_url("http://prom:9090/write"),
            "http://prom:9090/write"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn is_never_shown() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn empty_stays_empty_when_serialized() {
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
        assert!(Secret::new("").is_empty());
    }

    #[test]
    fn deserializes_from_a_string_and_serializes_to_what_loads_back() {
        let map: BTreeMap<String, Secret> =
            serde_json::from_str(r#"{"a":"s3cret","b":""}"#).unwrap();
        assert_eq!(map["a"].expose(), "s3cret");
        let shown = serde_json::to_string(&map).unwrap();
        assert_eq!(shown, r#"{"a":"<redacted>","b":""}"#);
        let back: BTreeMap<String, Secret> = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["a"].expose(), REDACTED);
        assert!(serde_json::from_str::<Secret>("1").is_err());
    }
}
