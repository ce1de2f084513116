//! W3C trace context (`traceparent`) carried in a NATS header from the adapter
//! that published an event to the exchange's decision and its receipt.
//!
//! Format: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`. Anything else
//! is ignored: a message is never refused for its trace header.

/// The NATS header that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent` (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, not all zero.
    pub span_id: [u8; 8],
    /// Trace flags (01 = sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a version-00 header value; `None` for anything malformed or all-zero ids.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let mut parts = value.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" {
            return None;
        }
        // Upper-case hex is invalid in W3C trace context.
        let lower = |s: &str| s.bytes().all(|b| !b.is_ascii_uppercase());
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if !lower(trace) || !lower(span) || !lower(flags) {
            return None;
        }
        let mut t = TraceParent {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        let mut f = [0u8; 1];
        if !crate::hex::decode_into(trace.as_bytes(), &mut t.trace_id)
            || !crate::hex::decode_into(span.as_bytes(), &mut t.span_id)
            || !crate::hex::decode_into(flags.as_bytes(), &mut f)
        {
            return None;
        }
        t.flags = f[0];
        if t.trace_id == [0; 16] || t.span_id == [0; 8] {
            return None;
        }
        Some(t)
    }

    /// A fresh, sampled trace context from 24 random bytes (trace id and span id).
    pub fn from_random(bytes: [u8; 24]) -> TraceParent {
        let mut t = TraceParent {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 1,
        };
        t.trace_id.copy_from_slice(&bytes[..16]);
        t.span_id.copy_from_slice(&bytes[16..]);
        // All-zero ids are invalid; the chance is negligible, but stay valid regardless.
        if t.trace_id == [0; 16] {
            t.trace_id[15] = 1;
        }
        if t.span_id == [0; 8] {
            t.span_id[7] = 1;
        }
        t
    }

    /// The same trace with another span id (a new hop, e.g. one publish attempt).
    pub fn with_span(self, span_id: [u8; 8]) -> TraceParent {
        TraceParent {
            span_id: if span_id == [0; 8] {
                self.span_id
            } else {
                span_id
            },
            ..self
        }
    }

    /// The trace id as 32 lower-case hex digits (what logs show as `trace_id`).
    pub fn trace_id_hex(&self) -> String {
        crate::hex::encode(&self.trace_id)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            crate::hex::encode(&self.trace_id),
            crate::hex::encode(&self.span_id),
            self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_malformed_values() {
        let t = TraceParent::from_random([7; 24]);
        let text = t.to_string();
        assert_eq!(text.len(), 55);
        assert!(
            text.starts_with("00-0707") && text.ends_with("-01"),
            "{text}"
        );
        assert_eq!(TraceParent::parse(&text), Some(t));
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(w3c).expect("the W3C example");
        assert_eq!(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
