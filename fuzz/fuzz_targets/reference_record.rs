//! `reference_record`: one record of the reference topic
//! (`fleet_kafka::reference::parse_record`, crates/kafka/src/reference.rs)
//! with an arbitrary key and value.
//!
//! The input up to its first newline is the key, the rest the value; with
//! no newline there is no key and the whole input is the value. Parsing
//! never panics, and its answer is what docs/ARCHITECTURE.md, "Reference
//! data", says: no key, or a key that is empty or not UTF-8, is refused; an
//! empty or absent value retires that vehicle; otherwise the vehicle is
//! upserted with a non-empty `model`, which is not among its other
//! attributes.
#![no_main]

use fleet_core::ReferenceChange;
use fleet_kafka::reference::{parse_record, ReferenceRecordError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (key, value) = match input.iter().position(|&b| b == b'\n') {
        Some(at) => (Some(&input[..at]), &input[at + 1..]),
        None => (None, input),
    };
    let parsed = parse_record(key, Some(value));
    if value.is_empty() {
        assert_eq!(
            parse_record(key, None),
            parsed,
            "an absent value and an empty one"
        );
    }
    let good_key = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.is_empty());
    let Some(good_key) = good_key else {
        assert_eq!(parsed, Err(ReferenceRecordError::BadKey));
        return;
    };
    match parsed {
        Ok(ReferenceChange::Delete { vehicle_id }) => {
            assert!(value.is_empty(), "a retirement with a value");
            assert_eq!(vehicle_id, good_key);
        }
        Ok(ReferenceChange::Upsert(record)) => {
            assert!(!value.is_empty(), "an upsert without a value");
            assert_eq!(record.vehicle_id, good_key);
            assert!(!record.model.is_empty(), "an upsert with an empty model");
            assert!(
                !record.attributes.contains_key("model"),
                "model is an attribute too"
            );
        }
        Err(ReferenceRecordError::BadKey) => panic!("a good key {good_key:?} refused"),
        Err(ReferenceRecordError::NotAnObject(_) | ReferenceRecordError::NoModel) => {
            assert!(!value.is_empty(), "an empty value refused");
        }
    }
});
