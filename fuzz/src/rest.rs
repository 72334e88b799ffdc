//! The REST API: raw HTTP/1.1 requests (the parser, headers, authorization, paths and query
//! strings), and each route's handler with an arbitrary JSON body.

use iot_dm::service::rest::routes;

use crate::fixture::{self, Fixture, HOST};

/// The input is one raw request; `{{token}}` in it becomes a valid owner token, so that
/// mutations reach the handlers behind authorization.
pub fn request(data: &[u8]) {
    let f = fixture::get();
    let token = f.owner_token.as_bytes();
    let mut bytes = Vec::with_capacity(data.len() + token.len());
    let mut rest = data;
    while let Some(at) = find(rest, b"{{token}}") {
        bytes.extend_from_slice(&rest[..at]);
        bytes.extend_from_slice(token);
        rest = &rest[at + 9..];
    }
    bytes.extend_from_slice(rest);
    send(f, &bytes);
}

/// Values a route's `{name}` parameters take, chosen by the input.
const PARAMS: [&str; 8] = [
    fixture::DEVICE,
    "fuzz-2",
    "job-1",
    "iothubowner",
    "a%2Fb%20c",
    "%FF%FE",
    "$edgeAgent",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
];

/// The input's first byte picks the route, the second its parameters and headers, and the
/// rest is the body, sent with an owner token.
pub fn bodies(data: &[u8]) {
    let [pick, variant, body @ ..] = data else {
        return;
    };
    let f = fixture::get();
    let table = routes();
    let Some(route) = table.get(usize::from(*pick) % table.len().max(1)) else {
        return;
    };
    let param = PARAMS[usize::from(variant & 7)];
    let mut path = String::new();
    for segment in route.path.split('/').filter(|s| !s.is_empty()) {
        path.push('/');
        if segment.starts_with('{') {
            path.push_str(param);
        } else {
            path.push_str(segment);
        }
    }
    let query = match (variant >> 3) & 3 {
        0 => "api-version=2021-04-12",
        1 => "api-version=2020-09-30&top=2",
        2 => "api-version=2021-04-12&jobType=scheduleUpdateTwin&jobStatus=running",
        _ => "",
    };
    let if_match = match variant >> 5 {
        0 | 1 => "",
        2 => "if-match: *\r\n",
        3 => "if-match: \"1\"\r\n",
        4 => "if-match: W/\"AAAAAAAAAAE=\"\r\n",
        5 => "if-match:\r\n",
        _ => "x-ms-max-item-count: 1\r\nx-ms-continuation: fuzz-2\r\n",
    };
    let head = format!(
        "{} {path}?{query} HTTP/1.1\r\nhost: {HOST}\r\nauthorization: {}\r\n\
         content-type: application/json\r\n{if_match}content-length: {}\r\n\
         connection: close\r\n\r\n",
        route.method,
        f.owner_token,
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    send(f, &bytes);
}

fn send(f: &Fixture, bytes: &[u8]) {
    if let Some(answer) = f.runtime.block_on(fixture::http_exchange(f.rest, bytes)) {
        check_answer(bytes, &answer);
    }
    fixture::count_input(f);
}

/// An answer, when there is one, starts with a status line, and a request never makes the
/// hub fail with 500.
fn check_answer(request: &[u8], answer: &[u8]) {
    if answer.is_empty() {
        return;
    }
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    // an HTTP/1.0 request is answered as HTTP/1.0
    let status = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        panic!(
            "no status line in the answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    };
    assert!(
        status != 500,
        "500 for {:?}: {:?}",
        String::from_utf8_lossy(&request[..request.len().min(400)]),
        String::from_utf8_lossy(&answer[..answer.len().min(400)])
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
