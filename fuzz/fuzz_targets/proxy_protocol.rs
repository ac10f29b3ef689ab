//! The PROXY protocol header parser (`src/server/proxy_protocol.rs`), the
//! first bytes an L4 balancer sends. Properties: no panic on any input;
//! a complete header never claims more bytes than it was given; the bytes
//! it claims parse the same on their own (nothing after the header
//! matters); a version 1 header ends with CRLF within 107 bytes; a shorter
//! prefix of a complete header is never complete too; the versions
//! accepted are respected.
#![no_main]

use gatehouse::config::ProxyProtocol;
use gatehouse::server::proxy_protocol::{parse, Error, Parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for accept in [ProxyProtocol::V1, ProxyProtocol::V2, ProxyProtocol::Any] {
        match parse(data, accept) {
            Parse::Done { len, source } => {
                assert!(len <= data.len() && len > 0);
                assert_eq!(
                    parse(&data[..len], accept),
                    Parse::Done { len, source },
                    "the header alone parses the same"
                );
                if data[0] == b'P' {
                    assert!(accept.accepts_v1());
                    assert!(len <= 107 && data[..len].ends_with(b"\r\n"));
                } else {
                    assert!(accept.accepts_v2());
                    assert!(len >= 16);
                }
                for cut in 0..len {
                    assert!(
                        !matches!(parse(&data[..cut], accept), Parse::Done { .. }),
                        "a prefix of {len} bytes is complete at {cut}"
                    );
                }
            }
            Parse::Incomplete(n) => assert!(n > data.len(), "asks for more than it has"),
            Parse::Invalid(Error::Version) => {
                assert!(
                    (data[0] == b'P' && !accept.accepts_v1())
                        || (data[0] == b'\r' && !accept.accepts_v2())
                );
            }
            Parse::Invalid(_) => {}
        }
    }
});
