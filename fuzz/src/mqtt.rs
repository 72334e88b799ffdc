//! The MQTT packet path, from bytes on a socket to the hub's session: CONNECT with its
//! credentials, then PUBLISH to every topic family (telemetry, twin GET and PATCH, method
//! responses), SUBSCRIBE, UNSUBSCRIBE, PUBACK, PINGREQ, DISCONNECT, and whatever else arrives.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;

use crate::fixture::{self, Fixture};

/// The input is everything a device sends, CONNECT included.
pub fn connect(data: &[u8]) {
    let f = fixture::get();
    run(f, data);
}

/// The input is what a device sends after a valid CONNECT of [`fixture::DEVICE`].
pub fn session(data: &[u8]) {
    let f = fixture::get();
    let mut bytes = f.connect.clone();
    bytes.extend_from_slice(data);
    run(f, &bytes);
}

fn run(f: &Fixture, bytes: &[u8]) {
    if let Some(answer) = f.runtime.block_on(fixture::exchange(f.mqtt, bytes)) {
        check_answer(&answer);
    }
    fixture::count_input(f);
}

/// What the hub sends is a sequence of well-formed MQTT 3.1.1 packets, CONNACK first (or
/// nothing, when it closed before answering).
fn check_answer(answer: &[u8]) {
    let mut buf = BytesMut::from(answer);
    let mut first = true;
    while !buf.is_empty() {
        match Packet::read(&mut buf, usize::MAX) {
            Ok(packet) => {
                assert!(
                    !first || matches!(packet, Packet::ConnAck(_)),
                    "the hub's first packet is a CONNACK, not {packet:?}"
                );
                first = false;
            }
            // the hub may be cut off mid-packet only by our own close, never here: it wrote
            // whole packets before closing
            Err(e) => panic!(
                "the hub sent a malformed packet ({e:?}) after {} bytes",
                answer.len() - buf.len()
            ),
        }
    }
}
