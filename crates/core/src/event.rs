//! The reference demo's raw vehicle event as the generator writes it, and a
//! plain serde decoder of it.
//!
//! The service never uses [`decode_event`]: it decodes every record with the
//! plan's [`Decoder`](crate::decode::Decoder). This one reads the demo's
//! events back in tests and tools, and it is the independent reference the
//! decoder's property tests compare with: it classifies every refusal by
//! [`DecodeErrorKind`] as the service counts them (docs/ARCHITECTURE.md,
//! "Wire formats"), never panics on input, and ignores unknown fields.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{SmallStr, TimestampMs};

/// What a raw event measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// Internal-combustion engine revolutions per minute.
    #[serde(rename = "IC_RPM")]
    IcRpm,
    /// Electric motor revolutions per minute; negative while regenerating or reversing.
    #[serde(rename = "ELECTRIC_RPM")]
    ElectricRpm,
    /// Number of warning lights currently on (never negative).
    #[serde(rename = "WARNINGS")]
    Warnings,
}

impl EventType {
    /// The wire name of this event type.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::IcRpm => "IC_RPM",
            EventType::ElectricRpm => "ELECTRIC_RPM",
            EventType::Warnings => "WARNINGS",
        }
    }

    fn from_wire(s: &str) -> Option<Self> {
        match s {
            "IC_RPM" => Some(EventType::IcRpm),
            "ELECTRIC_RPM" => Some(EventType::ElectricRpm),
            "WARNINGS" => Some(EventType::Warnings),
            _ => None,
        }
    }
}

/// One raw event, exactly the fields of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEvent {
    /// What was measured.
    pub event_type: EventType,
    /// The vehicle identification number; the Kafka message key.
    pub vehicle_id: SmallStr,
    /// Where the vehicle is.
    pub region: SmallStr,
    /// Event time: when the vehicle measured, epoch milliseconds.
    pub timestamp: TimestampMs,
    /// RPM, or warning lights on for [`EventType::Warnings`].
    pub measurement: i64,
}

impl RawEvent {
    /// The wire encoding: one JSON object, no trailing newline.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeErrorKind {
    /// Not UTF-8 JSON, or truncated.
    InvalidJson,
    /// A required field is absent or `null`.
    MissingField,
    /// A field (or the whole message) has the wrong JSON type.
    WrongType,
    /// `eventType` is not one of the known types.
    UnknownEventType,
    /// A field has the right type but an impossible value (empty id, negative warnings).
    InvalidValue,
    /// A binary record (Protobuf, Avro) that cannot be parsed: cut short, a
    /// length beyond the message, a string that is not UTF-8.
    Malformed,
    /// The event time is further ahead of the wall clock than
    /// `windows.max_ahead_ms`: a vehicle clock gone wrong.
    TooFarAhead,
}

impl DecodeErrorKind {
    /// Every kind, for exporting zero-valued counters.
    pub const ALL: [DecodeErrorKind; 7] = [
        DecodeErrorKind::InvalidJson,
        DecodeErrorKind::Malformed,
        DecodeErrorKind::MissingField,
        DecodeErrorKind::WrongType,
        DecodeErrorKind::UnknownEventType,
        DecodeErrorKind::InvalidValue,
        DecodeErrorKind::TooFarAhead,
    ];

    /// A stable snake_case name, used as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::InvalidJson => "invalid_json",
            DecodeErrorKind::MissingField => "missing_field",
            DecodeErrorKind::WrongType => "wrong_type",
            DecodeErrorKind::UnknownEventType => "unknown_event_type",
            DecodeErrorKind::InvalidValue => "invalid_value",
            DecodeErrorKind::Malformed => "malformed",
            DecodeErrorKind::TooFarAhead => "too_far_ahead",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: the reason and a short human explanation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct DecodeError {
    /// The counted reason.
    pub kind: DecodeErrorKind,
    /// What exactly was wrong, for the (rate-limited) log line.
    pub detail: String,
}

impl DecodeError {
    /// A refusal of `kind`, saying `detail`.
    pub fn new(kind: DecodeErrorKind, detail: impl Into<String>) -> Self {
        DecodeError {
            kind,
            detail: detail.into(),
        }
    }
}

/// The permissive shape the decoder reads first, so that a missing field and a
/// wrong type can be told apart (serde alone reports both as "data" errors).
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "eventType", borrow, default)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "vehicleId", borrow, default)]
    vehicle_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    region: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    measurement: Option<i64>,
}

/// Decodes one demo event.
pub fn decode_event(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    let wire: WireEvent<'_> = serde_json::from_slice(bytes).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => DecodeErrorKind::WrongType,
            _ => DecodeErrorKind::InvalidJson,
        };
        DecodeError::new(kind, e.to_string())
    })?;
    let missing = |name: &str| DecodeError::new(DecodeErrorKind::MissingField, name.to_string());
    let event_type_name = wire.event_type.ok_or_else(|| missing("eventType"))?;
    let vehicle_id = wire.vehicle_id.ok_or_else(|| missing("vehicleId"))?;
    let region = wire.region.ok_or_else(|| missing("region"))?;
    let timestamp = wire.timestamp.ok_or_else(|| missing("timestamp"))?;
    let measurement = wire.measurement.ok_or_else(|| missing("measurement"))?;
    let event_type = EventType::from_wire(&event_type_name).ok_or_else(|| {
        DecodeError::new(
            DecodeErrorKind::UnknownEventType,
            format!("eventType {event_type_name:?}"),
        )
    })?;
    if vehicle_id.is_empty() {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidValue,
            "empty vehicleId",
        ));
    }
    if region.is_empty() {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidValue,
            "empty region",
        ));
    }
    if !crate::EVENT_TIMES.contains(&timestamp) {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidValue,
            format!("timestamp {timestamp} is not between 1970 and 9999"),
        ));
    }
    if event_type == EventType::Warnings && measurement < 0 {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidValue,
            format!("negative warnings count {measurement}"),
        ));
    }
    Ok(RawEvent {
        event_type,
        vehicle_id: SmallStr::new(&vehicle_id),
        region: SmallStr::new(&region),
        timestamp,
        measurement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> DecodeErrorKind {
        decode_event(s.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn decodes_the_design_example_and_ignores_extra_fields() {
        let e = decode_event(
            br#"{"eventType":"IC_RPM","vehicleId":"1HGCM82633A004352","region":"UK","timestamp":1764000000123,"measurement":2450,"extra":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(e.event_type, EventType::IcRpm);
        assert_eq!(e.vehicle_id, "1HGCM82633A004352");
        assert_eq!(e.region, "UK");
        assert_eq!(e.timestamp, 1_764_000_000_123);
        assert_eq!(e.measurement, 2450);
    }

    #[test]
    fn round_trips_through_the_wire_encoding() {
        let e = RawEvent {
            event_type: EventType::ElectricRpm,
            vehicle_id: "V\"1".into(),
            region: "São Paulo".into(),
            timestamp: 5,
            measurement: -300,
        };
        assert_eq!(decode_event(e.to_json().as_bytes()).unwrap(), e);
    }

    #[test]
    fn classifies_every_refusal() {
        assert_eq!(kind("{not json"), DecodeErrorKind::InvalidJson);
        assert_eq!(kind(""), DecodeErrorKind::InvalidJson);
        assert_eq!(kind("[1,2]"), DecodeErrorKind::WrongType);
        assert_eq!(
            kind(r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","measurement":1}"#),
            DecodeErrorKind::MissingField
        );
        assert_eq!(
            kind(
                r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":null,"measurement":1}"#
            ),
            DecodeErrorKind::MissingField
        );
        assert_eq!(
            kind(
                r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":"1","measurement":1}"#
            ),
            DecodeErrorKind::WrongType
        );
        assert_eq!(
            kind(
                r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":1.5}"#
            ),
            DecodeErrorKind::WrongType
        );
        assert_eq!(
            kind(
                r#"{"eventType":"OIL","vehicleId":"V","region":"UK","timestamp":1,"measurement":1}"#
            ),
            DecodeErrorKind::UnknownEventType
        );
        assert_eq!(
            kind(
                r#"{"eventType":"IC_RPM","vehicleId":"","region":"UK","timestamp":1,"measurement":1}"#
            ),
            DecodeErrorKind::InvalidValue
        );
        assert_eq!(
            kind(
                r#"{"eventType":"WARNINGS","vehicleId":"V","region":"UK","timestamp":1,"measurement":-1}"#
            ),
            DecodeErrorKind::InvalidValue
        );
    }
}
