//! Reading a saved Mesos recording of any shape and extracting its VIPs: one JSON document
//! (agent or master `/state`, `GET_STATE`, one event), a file of one JSON event per line,
//! or a RecordIO-framed `SUBSCRIBE` capture. Backs `minuteman mesos inspect`.
//!
//! Invariants:
//! - Detection looks only at the bytes: a first line of ASCII digits means RecordIO; two or
//!   more non-empty lines whose first is a complete JSON value mean one event per line;
//!   anything else is one document.
//! - Event files replay event by event through [`MesosStream`], exactly as a live stream
//!   would; an event that cannot be read fails the whole inspection naming its line (a
//!   recording is expected to be intact), while unknown event types are counted and
//!   reported as a warning.

use super::document::{Document, DocumentKind, OperatorEvent};
use super::error::MesosError;
use super::extract::{extract_state, ExtractOptions, Extracted};
use super::stream::{MesosStream, StreamCounters, StreamLimits};
use serde::de::IgnoredAny;

/// The shape a recording had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON document.
    Document(DocumentKind),
    /// One JSON event per line, replayed in order.
    EventLines { events: usize },
    /// A RecordIO-framed event stream, replayed in order.
    RecordIo { events: usize },
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputFormat::Document(kind) => write!(f, "{kind}"),
            InputFormat::EventLines { events } => {
                write!(
                    f,
                    "operator API event stream, one event per line ({events} events)"
                )
            }
            InputFormat::RecordIo { events } => {
                write!(
                    f,
                    "operator API event stream, RecordIO framed ({events} events)"
                )
            }
        }
    }
}

/// The result of inspecting one recording.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub format: InputFormat,
    pub extracted: Extracted,
    /// For event streams, what the stream counted.
    pub counters: Option<StreamCounters>,
}

fn trim_ascii(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    line.get(start..end).unwrap_or(&[])
}

fn looks_like_recordio(bytes: &[u8]) -> bool {
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    bytes.contains(&b'\n')
        && !first_line.is_empty()
        && first_line.len() <= 20
        && first_line.iter().all(u8::is_ascii_digit)
}

fn event_lines(bytes: &[u8]) -> Option<Vec<(usize, &[u8])>> {
    let lines: Vec<(usize, &[u8])> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, trim_ascii(line)))
        .filter(|(_, line)| !line.is_empty())
        .collect();
    let (_, first) = lines.first()?;
    if lines.len() < 2 || serde_json::from_slice::<IgnoredAny>(first).is_err() {
        return None;
    }
    Some(lines)
}

fn unknown_warning(extracted: &mut Extracted, counters: &StreamCounters) {
    if counters.unknown_events > 0 {
        extracted.warnings.push(format!(
            "{} event(s) of unknown type ignored",
            counters.unknown_events
        ));
    }
}

/// Detects the shape of `bytes` and extracts the VIPs it describes.
pub fn inspect(bytes: &[u8], options: &ExtractOptions<'_>) -> Result<Inspection, MesosError> {
    if looks_like_recordio(bytes) {
        let mut stream = MesosStream::new(StreamLimits::default());
        let outcome = stream.feed(bytes)?;
        if let Some(error) = outcome.errors.into_iter().next() {
            return Err(error);
        }
        let mut extracted = extract_state(stream.state(), options);
        let counters = stream.counters().clone();
        unknown_warning(&mut extracted, &counters);
        return Ok(Inspection {
            format: InputFormat::RecordIo {
                events: outcome.applied.len(),
            },
            extracted,
            counters: Some(counters),
        });
    }
    if let Some(lines) = event_lines(bytes) {
        let mut stream = MesosStream::new(StreamLimits::default());
        for &(number, line) in &lines {
            stream.handle_record(line).map_err(|e| e.at_line(number))?;
        }
        let mut extracted = extract_state(stream.state(), options);
        let counters = stream.counters().clone();
        unknown_warning(&mut extracted, &counters);
        return Ok(Inspection {
            format: InputFormat::EventLines {
                events: lines.len(),
            },
            extracted,
            counters: Some(counters),
        });
    }
    let document = Document::parse(bytes)?;
    let (state, mut warnings) = super::stream::cluster_state(&document);
    if let Document::Event(OperatorEvent::Unknown(kind)) = &document {
        warnings.push(format!("unknown event type {kind:?} ignored"));
    }
    let extracted = extract_state(&state, options);
    warnings.extend(extracted.warnings);
    Ok(Inspection {
        format: InputFormat::Document(document.kind()),
        extracted: Extracted {
            vips: extracted.vips,
            tasks: extracted.tasks,
            warnings,
        },
        counters: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert!(looks_like_recordio(b"20\n{\"type\":\"HEARTBEAT\"}"));
        assert!(!looks_like_recordio(b"{\n}"));
        assert!(event_lines(b"{\"a\":1}\n{\"b\":2}\n").is_some());
        assert!(event_lines(b"{\"a\":1}\n").is_none());
        assert!(event_lines(b"{\n\"a\": 1\n}\n").is_none());
    }
}
