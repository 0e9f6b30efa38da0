#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! BEP 19 web seeds: piece → file range mapping, URLs, requests, and the bounded response
//! reader (206/200, redirects, 503, chunked refused, wrong ranges refused, any chunking).

use proptest::prelude::*;
use servent_bittorrent::metainfo::{Metainfo, MetainfoBuilder};
use servent_bittorrent::webseed::{
    HttpUrl, MAX_HEAD, ResponseReader, Segment, Source, Status, WebSeedError, file_url,
    piece_segments,
};

fn torrent(name: &str, files: &[(&[&str], u64)], piece_length: u64) -> Metainfo {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let pieces = total.div_ceil(piece_length) as usize;
    MetainfoBuilder {
        name: name.into(),
        files: files
            .iter()
            .map(|(p, l)| (p.iter().map(|s| s.to_string()).collect(), *l))
            .collect(),
        piece_length,
        ..Default::default()
    }
    .build(&vec![[0; 20]; pieces])
    .unwrap()
    .1
}

#[test]
fn a_piece_spanning_three_files_becomes_three_ranged_requests() {
    // Files of 10, 5 and 40 bytes; pieces of 16: piece 0 = a[0..10] + b[0..5] + c[0..1].
    let m = torrent(
        "My Album",
        &[(&["disc 1", "a.flac"], 10), (&["b&c.txt"], 5), (&["c"], 40)],
        16,
    );
    let segs = piece_segments(&m, "http://seed.example:8080/pub/", 0).unwrap();
    let url = |t: &str| HttpUrl {
        host: "seed.example".into(),
        port: 8080,
        target: t.into(),
    };
    assert_eq!(
        segs,
        vec![
            Segment {
                piece_offset: 0,
                len: 10,
                source: Source::Http {
                    url: url("/pub/My%20Album/disc%201/a.flac"),
                    range: 0..10,
                    file_index: 0
                }
            },
            Segment {
                piece_offset: 10,
                len: 5,
                source: Source::Http {
                    url: url("/pub/My%20Album/b%26c.txt"),
                    range: 0..5,
                    file_index: 1
                }
            },
            Segment {
                piece_offset: 15,
                len: 1,
                source: Source::Http {
                    url: url("/pub/My%20Album/c"),
                    range: 0..1,
                    file_index: 2
                }
            },
        ]
    );
    // The last piece (bytes 48..55) is 7 bytes of c.
    let last = piece_segments(&m, "http://seed.example:8080/pub", 3).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].piece_offset, last[0].len), (0, 7));
    assert!(matches!(&last[0].source, Source::Http { range, url, .. }
        if *range == (33..40) && url.target == "/pub/My%20Album/c"));
    assert_eq!(
        piece_segments(&m, "http://seed.example/", 4),
        Err(WebSeedError::NoSuchPiece(4))
    );
}

#[test]
fn single_file_urls_follow_bep19() {
    let m = torrent("file name.iso", &[(&[], 100)], 32);
    assert_eq!(
        file_url(&m, "http://h/dir/", 0).unwrap().target,
        "/dir/file%20name.iso"
    );
    assert_eq!(
        file_url(&m, "http://h/exact/path.iso", 0).unwrap().target,
        "/exact/path.iso"
    );
    assert_eq!(
        file_url(&m, "http://h/get?id=5", 0).unwrap().target,
        "/get?id=5"
    );
}

#[test]
fn urls_parse_strictly() {
    let u = HttpUrl::parse("http://[::1]:8000/a/b?x=1#frag").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.target.as_str()),
        ("::1", 8000, "/a/b?x=1")
    );
    assert_eq!(u.to_url(), "http://[::1]:8000/a/b?x=1");
    assert_eq!(
        HttpUrl::parse("HTTP://Example.COM").unwrap().to_url(),
        "http://example.com/"
    );
    assert!(matches!(
        HttpUrl::parse("https://example.com/"),
        Err(WebSeedError::Unsupported(_))
    ));
    for bad in [
        "http://",
        "http://h:0/",
        "http://h:99999/",
        "http://user:pw@h/",
        "http://h/a b",
        "http://h\r\nX: y/",
    ] {
        assert!(
            matches!(HttpUrl::parse(bad), Err(WebSeedError::BadUrl(_))),
            "{bad}"
        );
    }
}

#[test]
fn get_request_is_http11_with_the_inclusive_range() {
    let u = HttpUrl::parse("http://127.0.0.1:8080/f").unwrap();
    assert_eq!(
        String::from_utf8(u.get_request(16384..32768, "servent/0.1")).unwrap(),
        "GET /f HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: servent/0.1\r\n\
         Range: bytes=16384-32767\r\nAccept-Encoding: identity\r\nConnection: keep-alive\r\n\r\n"
    );
}

fn feed_all(
    r: &mut ResponseReader,
    bytes: &[u8],
    chunk: usize,
) -> (Result<Status, WebSeedError>, Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut off = 0;
    loop {
        let end = (off + chunk.max(1)).min(bytes.len());
        let res = r.feed(&bytes[off..end], &mut body);
        match res {
            Ok(Status::NeedMore) if end < bytes.len() => off = end,
            Ok(Status::Done {
                consumed,
                keep_alive,
            }) => {
                return (
                    Ok(Status::Done {
                        consumed,
                        keep_alive,
                    }),
                    body,
                    off + consumed,
                );
            }
            other => return (other, body, end),
        }
    }
}

#[test]
fn a_206_with_the_right_range_gives_exactly_the_body_and_leaves_the_next_response() {
    let resp = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-104/1000\r\n\
        Content-Length: 5\r\nServer: nginx\r\n\r\nhelloHTTP/1.1 206 next"
        .to_vec();
    for chunk in [1, 3, 7, 1000] {
        let mut r = ResponseReader::new(100..105);
        let (st, body, used) = feed_all(&mut r, &resp, chunk);
        assert!(
            matches!(
                st,
                Ok(Status::Done {
                    keep_alive: true,
                    ..
                })
            ),
            "{st:?}"
        );
        assert_eq!(body, b"hello");
        assert_eq!(&resp[used..], b"HTTP/1.1 206 next");
        assert_eq!(r.feed(b"x", &mut Vec::new()), Err(WebSeedError::Finished));
    }
}

#[test]
fn a_200_ignoring_range_is_cut_to_the_range_when_the_skip_is_small() {
    let resp = b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
    let mut r = ResponseReader::new(3..6);
    let (st, body, _) = feed_all(&mut r, resp, 4);
    assert!(matches!(
        st,
        Ok(Status::Done {
            keep_alive: false,
            ..
        })
    ));
    assert_eq!(body, b"345");
    let mut r = ResponseReader::new(10_000_000..10_000_100);
    let (st, _, _) = feed_all(
        &mut r,
        b"HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n\r\n",
        100,
    );
    assert_eq!(st, Err(WebSeedError::RangeIgnored(10_000_000)));
}

#[test]
fn redirects_and_unavailability_are_reported() {
    let mut r = ResponseReader::new(0..10);
    let (st, _, _) = feed_all(
        &mut r,
        b"HTTP/1.1 302 Found\r\nLocation: /mirror/f\r\n\r\n",
        9,
    );
    assert_eq!(
        st,
        Ok(Status::Redirect {
            location: "/mirror/f".into()
        })
    );
    let here = HttpUrl::parse("http://h:81/f").unwrap();
    assert_eq!(
        here.join("/mirror/f").unwrap().to_url(),
        "http://h:81/mirror/f"
    );
    assert_eq!(
        here.join("http://other/x").unwrap().to_url(),
        "http://other/x"
    );
    assert!(here.join("https://other/x").is_err());

    let mut r = ResponseReader::new(0..10);
    let (st, _, _) = feed_all(
        &mut r,
        b"HTTP/1.1 503 Busy\r\nRetry-After: 120\r\n\r\n",
        1000,
    );
    assert_eq!(
        st,
        Ok(Status::Unavailable {
            retry_after: Some(120)
        })
    );
}

#[test]
fn wrong_ranges_chunking_and_garbage_are_refused() {
    let cases: &[(&[u8], WebSeedError)] = &[
        (
            b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-9/100\r\n\r\n",
            WebSeedError::WrongRange("Content-Range"),
        ),
        (
            b"HTTP/1.1 206 P\r\nContent-Range: bytes 10-19/100\r\nContent-Length: 11\r\n\r\n",
            WebSeedError::WrongRange("Content-Length"),
        ),
        (b"HTTP/1.1 206 P\r\n\r\n", WebSeedError::WrongRange("no Content-Range")),
        (
            b"HTTP/1.1 206 P\r\nContent-Range: bytes 10-19/15\r\n\r\n",
            WebSeedError::WrongRange("malformed Content-Range"),
        ),
        (
            b"HTTP/1.1 206 P\r\nTransfer-Encoding: chunked\r\nContent-Range: bytes 10-19/100\r\n\r\n",
            WebSeedError::Chunked,
        ),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", WebSeedError::Status(404)),
        (b"SSH-2.0-OpenSSH\r\n\r\n", WebSeedError::Malformed("status line")),
        (b"HTTP/1.1 2000 x\r\n\r\n", WebSeedError::Malformed("status code")),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", WebSeedError::Malformed("header line")),
    ];
    for (bytes, want) in cases {
        let mut r = ResponseReader::new(10..20);
        let (st, _, _) = feed_all(&mut r, bytes, 5);
        assert_eq!(st.as_ref(), Err(want), "{}", String::from_utf8_lossy(bytes));
    }
    let mut r = ResponseReader::new(0..1);
    let endless = vec![b'a'; MAX_HEAD + 10];
    let (st, _, _) = feed_all(&mut r, &endless, 4096);
    assert_eq!(st, Err(WebSeedError::HeadTooLarge));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_reader(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
        start in 0u64..1000,
        len in 0u64..100,
    ) {
        let mut r = ResponseReader::new(start..start + len);
        let _ = feed_all(&mut r, &bytes, chunk);
        let mut r = ResponseReader::new(start..start + len);
        let mut prefixed = b"HTTP/1.1 206 P\r\n".to_vec();
        prefixed.extend(&bytes);
        let _ = feed_all(&mut r, &prefixed, chunk);
    }

    #[test]
    fn arbitrary_text_never_panics_the_url_parser(s in "\\PC{0,200}") {
        let _ = HttpUrl::parse(&s);
        let _ = HttpUrl::parse(&format!("http://{s}"));
    }

    #[test]
    fn the_body_is_the_same_under_any_chunking(
        body in proptest::collection::vec(any::<u8>(), 1..300),
        chunk in 1usize..50,
        start in 0u64..1_000_000,
    ) {
        let end = start + body.len() as u64;
        let mut resp = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/*\r\nContent-Length: {}\r\n\r\n",
            end - 1,
            body.len()
        )
        .into_bytes();
        resp.extend(&body);
        let mut r = ResponseReader::new(start..end);
        let (st, got, used) = feed_all(&mut r, &resp, chunk);
        let done = matches!(st, Ok(Status::Done { .. }));
        prop_assert!(done);
        prop_assert_eq!(got, body);
        prop_assert_eq!(used, resp.len());
    }
}
