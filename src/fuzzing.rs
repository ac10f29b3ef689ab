//! Entry points for the fuzz targets in `fuzz/` to code that is otherwise
//! private. Not part of the gateway's API.

/// Runs the HTTP/1.1 request-smuggling guard (`server/framing.rs`) over
/// `input` delivered in `chunks` (sizes, cycled; 0 is read as 1), as a
/// connection would read it. Returns the bytes as hyper would see them.
pub fn framing_scan(input: &[u8], chunks: &[usize]) -> Vec<u8> {
    let mut guard = crate::server::framing::FramingGuard::default();
    let mut data = input.to_vec();
    let mut at = 0;
    let mut sizes = chunks.iter().copied().cycle();
    while at < data.len() {
        let n = sizes
            .next()
            .unwrap_or(data.len())
            .max(1)
            .min(data.len() - at);
        guard.scan(&mut data[at..at + n]);
        at += n;
        if guard.is_done() {
            break;
        }
    }
    data
}
