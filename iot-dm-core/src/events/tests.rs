#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::sse::{write_comment, SseError, SseFrame, SseItem, SseParser};
use super::*;

fn parse_all(chunks: &[&[u8]]) -> Vec<SseItem> {
    let mut p = SseParser::new();
    chunks.iter().flat_map(|c| p.feed(c).unwrap()).collect()
}

#[test]
fn every_type_name_reads_back() {
    for t in EventType::ALL {
        assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
    }
    assert_eq!("".parse::<EventTypes>().unwrap(), EventTypes::all());
    assert_eq!(EventTypes::all().iter().count(), EventType::ALL.len());
    let e = "telemetry,,bogus".parse::<EventTypes>().unwrap_err();
    assert_eq!(e.name, "bogus");
}

#[test]
fn line_breaks_of_every_kind_end_lines() {
    let items = parse_all(&[b"id: 1\r\nevent: a\rdata: x\n\r\n: ping\n"]);
    assert_eq!(
        items,
        vec![
            SseItem::Frame(SseFrame::new("a", "x").with_id("1")),
            SseItem::Comment("ping".into()),
        ]
    );
    // a CRLF split across chunks is one line break
    let items = parse_all(&[b"data: y\r", b"\n\r", b"\n"]);
    assert_eq!(items.len(), 1);
}

#[test]
fn the_standards_corner_cases() {
    // no data: nothing dispatched; unknown fields ignored; no space after the colon; a
    // field without a colon; a NUL in an id ignores the id; a bad retry is ignored
    let items =
        parse_all(&[b"\xEF\xBB\xBFevent: x\n\nfoo: bar\ndata:a\ndata\nid: 1\0\nretry: 1x\n\n"]);
    let SseItem::Frame(f) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(f.data, "a\n");
    assert_eq!(f.event, None);
    assert_eq!(f.id, None);
    assert_eq!(f.retry, None);
}

#[test]
fn bad_fields_and_long_lines_are_typed_errors() {
    let mut out = Vec::new();
    let e = SseFrame::new("a\nb", "x").write_to(&mut out).unwrap_err();
    assert_eq!(e, SseError::LineBreak { field: "event" });
    let e = SseFrame::new("a", "x")
        .with_id("1\n")
        .write_to(&mut out)
        .unwrap_err();
    assert_eq!(e, SseError::LineBreak { field: "id" });
    assert!(write_comment(&mut out, "a\rb").is_err());
    let mut p = SseParser::with_max_line(8);
    assert_eq!(
        p.feed(b"data: 0123456789").unwrap_err(),
        SseError::LineTooLong { limit: 8 }
    );
}

#[test]
fn lost_counts_only_forward_gaps() {
    let reason = LostReason::Retention;
    assert_eq!(
        Lost {
            after: 3,
            next: 4,
            reason
        }
        .missed(),
        Some(0)
    );
    assert_eq!(
        Lost {
            after: 9,
            next: 4,
            reason
        }
        .missed(),
        None
    );
}

fn frame() -> impl Strategy<Value = SseFrame> {
    (
        proptest::option::of("[^\r\n\0]{0,12}"),
        proptest::option::of("[^\r\n]{0,12}"),
        "[^\r]{0,40}",
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(id, event, data, retry)| SseFrame {
            id,
            event,
            data,
            retry: retry.map(u64::from),
        })
}

proptest! {
    /// Whatever a frame holds, it reads back the same, however the bytes are cut.
    #[test]
    fn print_then_parse_round_trips(frames in proptest::collection::vec(frame(), 1..6), cut in 0usize..200) {
        let mut wire = Vec::new();
        for f in &frames {
            f.write_to(&mut wire).unwrap();
            write_comment(&mut wire, "ping").unwrap();
        }
        let cut = cut.min(wire.len());
        let (a, b) = wire.split_at(cut);
        let got: Vec<SseFrame> = parse_all(&[a, b])
            .into_iter()
            .filter_map(|i| match i { SseItem::Frame(f) => Some(f), SseItem::Comment(_) => None })
            .collect();
        // one leading space of a value is the separator's: a value starting with a space
        // prints as ": " + value and reads back whole
        prop_assert_eq!(got, frames);
    }
}
