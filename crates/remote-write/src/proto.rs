//! The Prometheus Remote-Write 1.0 messages, derived by hand with prost.
//!
//! Only the fields this service sends are declared; the field numbers are those
//! of `prometheus/prompb/remote.proto` and `prompb/types.proto`, so the bytes
//! are what any Remote-Write 1.0 receiver decodes. Deriving them here keeps the
//! build free of `build.rs` and `protoc`. Exemplars, histograms and metadata
//! (fields 3 and 4 of `TimeSeries`, 3 of `WriteRequest`) are never written.

/// The body of one remote-write request, before snappy compression.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// Every series of the request, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series: its label set and samples in timestamp order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels sorted by name, `__name__` included; Prometheus requires the order.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// One label pair.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    /// The label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Epoch milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn encodes_with_the_prompb_field_numbers() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 2,
                }],
            }],
        };
        // Hand-assembled from remote.proto/types.proto: timeseries=1 { labels=1
        // { name=1 "a", value=2 "b" }, samples=2 { value=1 double 1.0, timestamp=2 varint 2 } }.
        let expected: Vec<u8> = vec![
            0x0a, 0x15, // WriteRequest.timeseries, 21 bytes
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', // labels
            0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x02, // samples
        ];
        assert_eq!(req.encode_to_vec(), expected);
        assert_eq!(WriteRequest::decode(expected.as_slice()).unwrap(), req);
    }
}
