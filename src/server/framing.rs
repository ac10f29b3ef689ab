//! Request-smuggling guard for HTTP/1.1 (SPEC 3 step 2): a request head
//! carrying both `Content-Length` and `Transfer-Encoding` must get 400.
//!
//! hyper reads such a request safely (Transfer-Encoding wins, the
//! connection closes afterwards) but gives no way to see that both were
//! sent: it drops `Content-Length` while parsing. So this guard watches the
//! bytes as they arrive, keeps track of where each request head starts
//! (skipping bodies by their framing), and when a head names both headers
//! it overwrites the `:` of the second one with a NUL. hyper's parser then
//! refuses the head and answers 400 itself, before anything is routed.
//!
//! The scan is one pass over head bytes that looks at each line's name
//! only: the rest of a line (values, the request target) is skipped with
//! `memchr`, except a `Content-Length` value, which is read. Bodies are
//! skipped by length, and chunked bodies by their size lines.
//!
//! HTTP/2 (from the connection preface, or from the start when ALPN chose
//! it) is not HTTP/1.1 framing, but it has a slow-header problem of its
//! own: hyper and h2 bound a header block's size and its CONTINUATION
//! frames, not how long it takes to arrive. So over HTTP/2 the same pass reads frame
//! headers (9 bytes each; payloads are skipped by length) and tracks
//! whether a header block (a HEADERS frame up to the end of the frame
//! carrying END_HEADERS, RFC 9113 section 4.3) is in progress, and which
//! one: [`FramingGuard::h2_open_block`]. The connection closes a block
//! left unfinished for `header_read_timeout` (`conn.rs`), as it closes an
//! HTTP/1.1 head left unfinished ([`FramingGuard::h1_open_head`]). Nothing is
//! changed in HTTP/2 bytes.
//!
//! The same pass counts the bytes of each HTTP/1.1 head against
//! `max_header_bytes` (SPEC 16: a head over it gets 431 whatever its size).
//! hyper would answer such a head itself when its read buffer fills, but
//! then drops the connection with the rest of the head unread, which the
//! kernel turns into a reset: a client still sending never reads the 431.
//! So the guard notices first ([`FramingGuard::too_large`]): the bytes
//! from that head on are kept from hyper, and the connection answers and
//! reads the rest itself (`conn.rs`). Header lines past hyper's
//! `max_headers` likewise, which hyper answers the same way. The count
//! costs nothing per byte: a head's length is taken from positions where
//! it starts and where a read ends, and lines are counted at their ends.
//!
//! The HTTP/1.1 guard stops when told that a response switched protocols
//! ([`FramingGuard::switched`]: a relayed `101`, or a `2xx` to
//! `CONNECT`); from then on the bytes belong to a tunnel that hyper no
//! longer reads. A request head merely asking for a switch (`Upgrade`,
//! `CONNECT`) does not stop it: the answer may refuse, and the connection
//! then carries further requests, which are checked like any other.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    Other,
    ContentLength,
    TransferEncoding,
}

#[derive(Debug)]
enum State {
    /// Reading a head; `first` is true on the request line.
    Head {
        first: bool,
    },
    /// `n` body bytes left.
    Fixed(u64),
    ChunkSize {
        value: u64,
        in_ext: bool,
    },
    ChunkData(u64),
    /// After chunk data: the CRLF.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    /// Nothing more to check (a protocol switch, or input hyper will
    /// refuse).
    Done,
    /// HTTP/2: `n` bytes of the connection preface left.
    H2Preface(u8),
    /// HTTP/2: `have` bytes of a frame header read into `head`.
    H2FrameHeader {
        have: u8,
        head: [u8; 9],
    },
    /// HTTP/2: `left` payload bytes of a frame; `ends_block`: it carries
    /// END_HEADERS, so the header block is complete with its last byte.
    H2Payload {
        left: u32,
        ends_block: bool,
    },
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE_LEN: u8 = 24;
const H2_HEADERS: u8 = 0x1;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_HEADERS: u8 = 0x4;

/// An HTTP/1.1 head over the limit, as found by [`FramingGuard::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge {
    /// Where the head starts in the bytes of that scan (0 when it started
    /// in an earlier read): the bytes before it end the previous message.
    pub(crate) starts_at: usize,
    /// Bytes of the head read so far, those of that scan included.
    pub(crate) read: usize,
}

#[derive(Debug)]
pub(crate) struct FramingGuard {
    state: State,
    /// Bytes of the current line so far (capped; only names matter).
    line_len: usize,
    name: [u8; 20],
    name_len: usize,
    name_done: bool,
    current: Header,
    saw_cl: bool,
    saw_te: bool,
    content_length: u64,
    first_line: [u8; 8],
    /// HTTP/2 header blocks begun so far; the last one is still in
    /// progress while `h2_in_block`.
    h2_blocks: u64,
    h2_in_block: bool,
    /// HTTP/1.1 heads read to their end so far.
    heads_done: u64,
    /// The largest HTTP/1.1 head let through, in bytes.
    head_limit: usize,
    /// The most header lines in one head let through.
    max_headers: usize,
    /// Header lines of the current head so far.
    head_lines: usize,
    /// Bytes of the current head read before the current scan (or before
    /// `head_from`, where it started in this one).
    head_len: usize,
    /// Where the current head starts in the bytes being scanned; 0 when it
    /// started in an earlier read.
    head_from: usize,
    too_large: Option<TooLarge>,
}

impl Default for FramingGuard {
    fn default() -> Self {
        FramingGuard {
            state: State::Head { first: true },
            line_len: 0,
            name: [0; 20],
            name_len: 0,
            name_done: false,
            current: Header::Other,
            saw_cl: false,
            saw_te: false,
            content_length: 0,
            first_line: [0; 8],
            h2_blocks: 0,
            h2_in_block: false,
            heads_done: 0,
            head_limit: usize::MAX,
            max_headers: usize::MAX,
            head_lines: 0,
            head_len: 0,
            head_from: 0,
            too_large: None,
        }
    }
}

impl FramingGuard {
    /// For a connection that may be HTTP/1.1 (or HTTP/2 found by its
    /// preface), letting through heads of up to `head_limit` bytes and
    /// `max_headers` header lines (hyper's own limits, which it would
    /// answer itself, as for a head too large).
    pub(crate) fn http1(head_limit: usize, max_headers: usize) -> FramingGuard {
        FramingGuard {
            head_limit,
            max_headers,
            ..FramingGuard::default()
        }
    }

    /// For a connection known to be HTTP/2 (ALPN): from its preface on.
    pub(crate) fn http2() -> FramingGuard {
        FramingGuard {
            state: State::H2Preface(H2_PREFACE_LEN),
            ..FramingGuard::default()
        }
    }

    /// HTTP/2: the number of the header block in progress (1 for the
    /// connection's first), or 0 when none is.
    pub(crate) fn h2_open_block(&self) -> u64 {
        if self.h2_in_block {
            self.h2_blocks
        } else {
            0
        }
    }

    /// HTTP/1.1: the number of the head in progress (1 for the
    /// connection's first) once a byte of it was read, or 0 when none is
    /// (between messages, or in a body). The connection's header deadline
    /// is kept on this (`conn.rs`).
    pub(crate) fn h1_open_head(&self) -> u64 {
        if matches!(self.state, State::Head { .. }) && self.head_len > 0 {
            self.heads_done + 1
        } else {
            0
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The last scan found a head over the limits: nothing of it may reach
    /// hyper. The guard is done from then on.
    pub(crate) fn too_large(&self) -> Option<TooLarge> {
        self.too_large
    }

    /// A response switched the connection to another protocol: what
    /// follows is tunnel data, not HTTP/1.1, and is left alone.
    pub(crate) fn switched(&mut self) {
        self.state = State::Done;
    }

    /// Between two messages: no byte of a head or a body pending.
    pub(crate) fn at_message_start(&self) -> bool {
        matches!(self.state, State::Head { first: true }) && self.line_len == 0
    }

    fn reset_line(&mut self) {
        self.line_len = 0;
        self.name_len = 0;
        self.name_done = false;
        self.current = Header::Other;
    }

    fn classify(&self) -> Header {
        let n = &self.name[..self.name_len];
        if n.eq_ignore_ascii_case(b"content-length") {
            Header::ContentLength
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            Header::TransferEncoding
        } else {
            Header::Other
        }
    }

    /// Scans newly read bytes, poisoning a smuggling-prone head in place
    /// and measuring heads against the limit.
    pub(crate) fn scan(&mut self, buf: &mut [u8]) {
        self.head_from = 0;
        self.scan_bytes(buf);
        if matches!(self.state, State::Head { .. }) {
            // A head still incomplete at the limit is over it: its end is
            // still to come. (hyper, whose buffer is as large as the limit,
            // would answer it itself.) Likewise one header line past the
            // most allowed, from its first byte (as hyper's parser).
            let read = self.head_len + (buf.len() - self.head_from);
            let lines = self.head_lines + usize::from(self.line_len > 0);
            if read >= self.head_limit || lines > self.max_headers {
                self.refuse(read);
            } else {
                self.head_len = read;
            }
        }
    }

    /// The current head is over the limits, `read` bytes of it read.
    fn refuse(&mut self, read: usize) {
        self.too_large = Some(TooLarge {
            starts_at: self.head_from,
            read,
        });
        self.state = State::Done;
    }

    /// A head starts at `i`, after a message.
    fn head_starts(&mut self, i: usize) {
        self.head_len = 0;
        self.head_lines = 0;
        self.head_from = i;
    }

    fn scan_bytes(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Done => return,
                State::H2Preface(n) => {
                    let take = usize::from(n).min(buf.len() - i);
                    i += take;
                    self.state = if take == usize::from(n) {
                        State::H2FrameHeader {
                            have: 0,
                            head: [0; 9],
                        }
                    } else {
                        // take < n <= 24
                        State::H2Preface(n - take as u8)
                    };
                }
                State::H2FrameHeader { have, mut head } => {
                    let have = usize::from(have);
                    let take = (9 - have).min(buf.len() - i);
                    head[have..have + take].copy_from_slice(&buf[i..i + take]);
                    i += take;
                    self.state = if have + take < 9 {
                        State::H2FrameHeader {
                            have: (have + take) as u8,
                            head,
                        }
                    } else {
                        self.h2_frame(&head)
                    };
                }
                State::H2Payload { left, ends_block } => {
                    let take = (left as usize).min(buf.len() - i);
                    i += take;
                    if take == left as usize {
                        if ends_block {
                            self.h2_in_block = false;
                        }
                        self.state = State::H2FrameHeader {
                            have: 0,
                            head: [0; 9],
                        };
                    } else {
                        self.state = State::H2Payload {
                            left: left - take as u32,
                            ends_block,
                        };
                    }
                }
                State::Fixed(n) => {
                    let take = n.min((buf.len() - i) as u64);
                    i += take as usize;
                    self.state = if n == take {
                        self.head_starts(i);
                        State::Head { first: true }
                    } else {
                        State::Fixed(n - take)
                    };
                }
                State::ChunkData(n) => {
                    let take = n.min((buf.len() - i) as u64);
                    i += take as usize;
                    self.state = if n == take {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(n - take)
                    };
                }
                State::ChunkEnd => {
                    match buf[i] {
                        b'\r' => {}
                        b'\n' => {
                            self.state = State::ChunkSize {
                                value: 0,
                                in_ext: false,
                            }
                        }
                        _ => self.state = State::Done,
                    }
                    i += 1;
                }
                State::ChunkSize { value, in_ext } => {
                    let b = buf[i];
                    i += 1;
                    self.state = match b {
                        b'\n' if value == 0 => {
                            self.line_len = 0;
                            State::Trailer
                        }
                        b'\n' => State::ChunkData(value),
                        b'\r' => State::ChunkSize { value, in_ext },
                        _ if in_ext => State::ChunkSize { value, in_ext },
                        b';' | b' ' | b'\t' => State::ChunkSize {
                            value,
                            in_ext: true,
                        },
                        _ => match (b as char).to_digit(16) {
                            Some(d) if value < (1 << 56) => State::ChunkSize {
                                value: value * 16 + u64::from(d),
                                in_ext,
                            },
                            _ => State::Done,
                        },
                    };
                }
                State::Trailer => {
                    let b = buf[i];
                    i += 1;
                    match b {
                        b'\n' if self.line_len == 0 => {
                            self.head_starts(i);
                            self.state = State::Head { first: true }
                        }
                        b'\n' => self.line_len = 0,
                        b'\r' => {}
                        _ => self.line_len += 1,
                    }
                }
                State::Head { first } => {
                    let b = buf[i];
                    if b == b'\n' {
                        i += 1;
                        if first {
                            // Blank lines before a request line are allowed.
                            if self.line_len > 0 {
                                self.state = State::Head { first: false };
                            }
                            self.reset_line();
                            continue;
                        }
                        if self.line_len == 0 {
                            let read = self.head_len + (i - self.head_from);
                            if read > self.head_limit || self.head_lines > self.max_headers {
                                return self.refuse(read);
                            }
                            self.end_of_head();
                            self.head_starts(i);
                        } else {
                            self.head_lines += 1;
                        }
                        self.reset_line();
                        continue;
                    }
                    if b == b'\r' {
                        i += 1;
                        continue;
                    }
                    if first && self.line_len >= self.first_line.len() {
                        // The rest of the request line says nothing we need.
                        i = self.skip_line(buf, i);
                        continue;
                    }
                    if !first
                        && (self.name_len == self.name.len()
                            || (self.name_done && self.current != Header::ContentLength))
                    {
                        // A name longer than any we look for, or a value we
                        // do not read: jump to the end of the line.
                        i = self.skip_line(buf, i);
                        continue;
                    }
                    if first {
                        if self.line_len < self.first_line.len() {
                            self.first_line[self.line_len] = b;
                            if self.line_len + 1 == self.first_line.len()
                                && self.first_line.starts_with(b"PRI * ")
                            {
                                // HTTP/2 prior knowledge: the rest of the
                                // preface, then frames.
                                self.state =
                                    State::H2Preface(H2_PREFACE_LEN - self.first_line.len() as u8);
                                i += 1;
                                continue;
                            }
                        }
                        self.line_len += 1;
                        i += 1;
                        continue;
                    }
                    self.line_len += 1;
                    if !self.name_done {
                        if b == b':' {
                            self.name_done = true;
                            self.current = self.classify();
                            match self.current {
                                Header::ContentLength if self.saw_te => return self.poison(buf, i),
                                Header::TransferEncoding if self.saw_cl => {
                                    return self.poison(buf, i)
                                }
                                Header::ContentLength => {
                                    self.saw_cl = true;
                                    self.content_length = 0;
                                }
                                Header::TransferEncoding => self.saw_te = true,
                                Header::Other => {}
                            }
                        } else {
                            // (A full `name` was skipped above.)
                            self.name[self.name_len] = b;
                            self.name_len += 1;
                        }
                    } else if self.current == Header::ContentLength && b.is_ascii_digit() {
                        self.content_length = self
                            .content_length
                            .saturating_mul(10)
                            .saturating_add(u64::from(b - b'0'));
                    }
                    i += 1;
                }
            }
        }
    }

    /// A whole HTTP/2 frame header: notes where header blocks start and
    /// end, and skips to the next frame.
    fn h2_frame(&mut self, head: &[u8; 9]) -> State {
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
        let (kind, flags) = (head[3], head[4]);
        if kind == H2_HEADERS && !self.h2_in_block {
            self.h2_in_block = true;
            self.h2_blocks += 1;
        }
        let ends_block =
            matches!(kind, H2_HEADERS | H2_CONTINUATION) && flags & H2_END_HEADERS != 0;
        if len > 0 {
            return State::H2Payload {
                left: len,
                ends_block,
            };
        }
        if ends_block {
            self.h2_in_block = false;
        }
        State::H2FrameHeader {
            have: 0,
            head: [0; 9],
        }
    }

    /// Moves past the current line's bytes up to (not including) its `\n`,
    /// or to the end of `buf`; returns the new position.
    fn skip_line(&mut self, buf: &[u8], i: usize) -> usize {
        let skip = memchr::memchr(b'\n', &buf[i..]).unwrap_or(buf.len() - i);
        self.line_len += skip;
        i + skip
    }

    fn end_of_head(&mut self) {
        self.heads_done += 1;
        // An `Upgrade` header changes nothing here: until a response
        // actually switches (`switched`), the next bytes are a request.
        self.state = if self.saw_te {
            State::ChunkSize {
                value: 0,
                in_ext: false,
            }
        } else if self.saw_cl && self.content_length > 0 {
            State::Fixed(self.content_length)
        } else {
            State::Head { first: true }
        };
        self.saw_cl = false;
        self.saw_te = false;
        self.content_length = 0;
        self.first_line = [0; 8];
    }

    fn poison(&mut self, buf: &mut [u8], colon: usize) {
        // `Content-Length\0 4` is no header: hyper refuses the head (400).
        buf[colon] = 0;
        self.state = State::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8], step: usize) -> Vec<u8> {
        let mut g = FramingGuard::default();
        let mut data = input.to_vec();
        for chunk in data.chunks_mut(step) {
            g.scan(chunk);
        }
        data
    }

    fn poisoned(input: &[u8]) -> bool {
        (1..=input.len().min(9)).all(|step| scan_all(input, step).contains(&0))
            && (1..=input.len().min(9)).all(|step| scan_all(input, step) != input)
    }

    fn clean(input: &[u8]) -> bool {
        (1..=input.len().min(9)).all(|step| scan_all(input, step) == input)
    }

    #[test]
    fn both_framing_headers_in_one_head_are_poisoned_in_either_order() {
        assert!(poisoned(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(poisoned(b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n"));
    }

    #[test]
    fn ordinary_requests_pass_untouched() {
        assert!(clean(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(clean(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n"
        ));
        assert!(clean(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"));
    }

    #[test]
    fn bodies_are_skipped_so_their_bytes_are_never_read_as_heads() {
        // The body looks like a smuggling head but is only data.
        let body = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut req =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        req.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert!(clean(&req));
        let mut chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        chunked.extend_from_slice(body);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        assert!(clean(&chunked));
    }

    #[test]
    fn long_lines_and_names_are_skipped_without_missing_a_framing_header() {
        let cookie = "c".repeat(300);
        let long_name = "X-A-Very-Long-Header-Name-Indeed";
        let head = format!(
            "POST /{} HTTP/1.1\r\nCookie: {cookie}\r\n{long_name}: content-length: 9\r\nContent-Length: 4\r\n"
        , "p".repeat(100));
        let clean_req = format!("{head}\r\nbody");
        assert!(clean(clean_req.as_bytes()));
        for step in [1, 7, 64, 1000] {
            assert_eq!(scan_all(clean_req.as_bytes(), step), clean_req.as_bytes());
        }
        let smuggle = format!("{head}Transfer-Encoding: chunked\r\n\r\n");
        assert!(poisoned(smuggle.as_bytes()));
        for step in [1, 7, 64, 1000] {
            assert!(
                scan_all(smuggle.as_bytes(), step).contains(&0),
                "step {step}"
            );
        }
    }

    #[test]
    fn a_second_pipelined_request_is_checked_too() {
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        req.extend_from_slice(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(poisoned(&req));
    }

    fn h2_frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn http1_heads_are_open_from_their_first_byte_to_their_end() {
        let first = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let second = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
        let input = [&first[..], &second[..], b"body", &first[..]].concat();
        let mut g = FramingGuard::http1(8192, 100);
        let mut data = input.clone();
        let mut seen = Vec::new();
        for chunk in data.chunks_mut(1) {
            g.scan(chunk);
            seen.push(g.h1_open_head());
        }
        let a = first.len();
        let b = a + second.len();
        let c = b + 4;
        // Open (numbered) from the first byte to the byte before the last
        // of each head; nothing between heads or in the body.
        assert!(seen[..a - 1].iter().all(|&h| h == 1), "{seen:?}");
        assert_eq!(seen[a - 1], 0);
        assert!(seen[a..b - 1].iter().all(|&h| h == 2), "{seen:?}");
        assert!(seen[b - 1..c].iter().all(|&h| h == 0), "{seen:?}");
        assert!(seen[c..input.len() - 1].iter().all(|&h| h == 3), "{seen:?}");
        assert_eq!(seen[input.len() - 1], 0);
        // Whole messages per read: never left open.
        let mut g = FramingGuard::http1(8192, 100);
        let mut data = input.clone();
        g.scan(&mut data);
        assert_eq!(g.h1_open_head(), 0);
        // Half a head in one read is open.
        let mut g = FramingGuard::http1(8192, 100);
        g.scan(&mut b"GET / HTTP/1.1\r\nHo".to_vec());
        assert_eq!(g.h1_open_head(), 1);
    }

    /// The open block after each byte of `input`, fed in `step`-byte reads.
    fn h2_blocks(mut g: FramingGuard, input: &[u8], step: usize) -> Vec<u64> {
        let mut data = input.to_vec();
        let mut seen = Vec::new();
        for chunk in data.chunks_mut(step) {
            g.scan(chunk);
            seen.push(g.h2_open_block());
        }
        assert_eq!(data, input, "HTTP/2 bytes are never changed");
        seen
    }

    #[test]
    fn http2_header_blocks_are_tracked_from_headers_to_end_headers() {
        let settings = h2_frame(0x4, 0, &[]);
        let whole = h2_frame(H2_HEADERS, H2_END_HEADERS | 0x1, b"abc");
        let start = h2_frame(H2_HEADERS, 0, b"ab");
        let more = h2_frame(H2_CONTINUATION, 0, b"cd");
        let end = h2_frame(H2_CONTINUATION, H2_END_HEADERS, b"ef");
        let data = h2_frame(0x0, 0x1, b"body");
        // Whole frames per read: SETTINGS, one complete block, one block
        // over three frames, DATA.
        let frames = [&settings, &whole, &start, &more, &end, &data];
        // Known HTTP/2 (ALPN), or prior knowledge found by its preface.
        for g in [FramingGuard::http2(), FramingGuard::default()] {
            let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            let mut bounds = vec![input.len()];
            for f in frames {
                input.extend_from_slice(f);
                bounds.push(input.len());
            }
            let per_byte = h2_blocks(g, &input, 1);
            let at = |n: usize| per_byte[n - 1];
            assert_eq!(at(bounds[1]), 0, "after SETTINGS");
            assert_eq!(at(bounds[2]), 0, "after a complete block");
            assert_eq!(at(bounds[1] + 9), 1, "a HEADERS frame's payload is pending");
            assert_eq!(at(bounds[3]), 2, "block 2 open");
            assert_eq!(at(bounds[4]), 2, "still open after CONTINUATION");
            assert_eq!(at(bounds[5] - 1), 2, "open until END_HEADERS's last byte");
            assert_eq!(at(bounds[5]), 0, "closed");
            assert_eq!(at(bounds[6]), 0, "DATA opens nothing");
        }
        // Read boundaries do not matter.
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend_from_slice(&start);
        for step in [1, 2, 7, 9, 100] {
            let seen = h2_blocks(FramingGuard::default(), &input, step);
            assert_eq!(seen.last(), Some(&1), "step {step}");
        }
    }

    /// Feeds `input` in `step`-byte reads to a guard with `limit`: the
    /// bytes hyper would get, and what the guard found.
    fn scan_limited(input: &[u8], limit: usize, step: usize) -> (Vec<u8>, Option<TooLarge>) {
        scan_with(FramingGuard::http1(limit, usize::MAX), input, step)
    }

    fn scan_with(mut g: FramingGuard, input: &[u8], step: usize) -> (Vec<u8>, Option<TooLarge>) {
        let mut passed = Vec::new();
        for chunk in input.chunks(step) {
            let mut chunk = chunk.to_vec();
            g.scan(&mut chunk);
            if let Some(t) = g.too_large() {
                passed.extend_from_slice(&chunk[..t.starts_at]);
                return (passed, Some(t));
            }
            passed.extend_from_slice(&chunk);
        }
        (passed, None)
    }

    #[test]
    fn heads_are_measured_against_the_limit_however_they_are_read() {
        let head = |len: usize| {
            let start = "GET / HTTP/1.1\r\nX-Fill: ";
            let fill = "f".repeat(len - start.len() - 4);
            format!("{start}{fill}\r\n\r\n").into_bytes()
        };
        let limit = 1000;
        for step in [1, 2, 7, 100, 999, 1000, 1001, 5000] {
            // Up to the limit, complete: through untouched.
            for len in [40, limit - 1, limit] {
                let h = head(len);
                assert_eq!(
                    scan_limited(&h, limit, step),
                    (h.clone(), None),
                    "{len} {step}"
                );
            }
            // One byte over: refused, and what hyper got of it (from
            // earlier reads) is less than the limit, which hyper would
            // answer itself.
            let (passed, found) = scan_limited(&head(limit + 1), limit, step);
            let found = found.unwrap_or_else(|| panic!("step {step}"));
            assert!(passed.len() < limit, "step {step}: {}", passed.len());
            assert!(
                found.read > passed.len() && found.read <= limit + 1,
                "{found:?}"
            );
            // Unfinished at the limit: over it, whatever comes next.
            let h = head(3 * limit);
            let (passed, found) = scan_limited(&h[..limit], limit, step);
            assert!(passed.len() < limit && found.is_some(), "step {step}");
            assert_eq!(scan_limited(&h[..limit - 1], limit, step).1, None);
        }
    }

    #[test]
    fn heads_with_more_header_lines_than_allowed_are_refused() {
        let head = |n: usize, end: &str| {
            let lines: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
            format!("GET / HTTP/1.1\r\n{lines}{end}").into_bytes()
        };
        let guard = || FramingGuard::http1(usize::MAX, 100);
        for step in [1, 3, 64, 100_000] {
            let h = head(100, "\r\n");
            assert_eq!(scan_with(guard(), &h, step), (h.clone(), None));
            // The blank line may be on its way.
            let h = head(100, "\r");
            assert_eq!(scan_with(guard(), &h, step), (h.clone(), None));
            // The first byte of a 101st line: refused, as by hyper.
            let (passed, found) = scan_with(guard(), &head(100, "X"), step);
            assert!(
                found.is_some() && passed.len() <= head(100, "").len(),
                "{step}"
            );
            let (_, found) = scan_with(guard(), &head(101, "\r\n"), step);
            assert!(found.is_some(), "{step}");
            // Each head counts its own.
            let mut two = head(60, "\r\n");
            two.extend_from_slice(&head(60, "\r\n"));
            assert_eq!(scan_with(guard(), &two, step), (two.clone(), None));
        }
    }

    #[test]
    fn each_head_is_measured_on_its_own() {
        let small = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n";
        let chunked = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: v\r\n\r\n";
        let mut ok = Vec::new();
        for _ in 0..50 {
            ok.extend_from_slice(small);
            ok.extend_from_slice(chunked);
        }
        // Together far over the limit; each head under it.
        for step in [1, 9, 64, 4096] {
            assert_eq!(scan_limited(&ok, 100, step), (ok.clone(), None));
        }
        // A big head after them: the bytes before it pass, the big one
        // does not.
        let mut input = ok.clone();
        input.extend_from_slice(format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(200)).as_bytes());
        for step in [1, 9, 64, 4096] {
            let (passed, found) = scan_limited(&input, 100, step);
            assert!(passed.starts_with(&ok), "step {step}");
            assert!(passed.len() - ok.len() < 100, "step {step}");
            assert!(found.is_some());
        }
        // Without a limit nothing is ever refused.
        let mut g = FramingGuard::default();
        let mut big = format!("GET /{} HTTP/1.1\r\n", "p".repeat(1 << 20)).into_bytes();
        g.scan(&mut big);
        assert_eq!(g.too_large(), None);
    }

    #[test]
    fn a_switch_stops_the_scan() {
        let mut g = FramingGuard::default();
        let mut b =
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".to_vec();
        g.scan(&mut b);
        assert!(!g.is_done(), "asking for a switch is not a switch");
        g.switched();
        // Tunnel data that looks like a smuggling head is left as it is.
        let frames = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut b = frames.to_vec();
        g.scan(&mut b);
        assert_eq!(b, frames);
    }

    #[test]
    fn a_request_that_only_asks_for_a_switch_leaves_the_guard_on() {
        let smuggle: &[u8] =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        for first in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n"[..],
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        ] {
            let mut req = first.to_vec();
            req.extend_from_slice(smuggle);
            assert!(poisoned(&req), "{:?}", String::from_utf8_lossy(first));
        }
        // Upgrade and both framing headers in one head, in any order.
        assert!(poisoned(
            b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(poisoned(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nUpgrade: foo\r\nContent-Length: 3\r\n\r\n"
        ));
        assert!(poisoned(
            b"CONNECT x:1 HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }
}
