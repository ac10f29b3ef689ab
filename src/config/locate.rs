//! Maps a key path such as `upstreams[1].backends[0]` back to a line and
//! column of the original text, so validation errors point into the file.

use toml_edit::{ImDocument, Item, Value};

/// 1-based line and column of byte offset `at` in `text`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '.' => {
                chars.next();
            }
            '[' => {
                chars.next();
                let n: String = chars.by_ref().take_while(|&c| c != ']').collect();
                if let Ok(i) = n.parse() {
                    out.push(Seg::Index(i));
                }
            }
            '"' => {
                chars.next();
                let k: String = chars.by_ref().take_while(|&c| c != '"').collect();
                out.push(Seg::Key(k));
            }
            _ => {
                let mut k = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    k.push(c);
                    chars.next();
                }
                out.push(Seg::Key(k));
            }
        }
    }
    out
}

/// The line and column where the value at `path` starts, or where the
/// deepest ancestor that exists starts.
pub(crate) fn line_of(text: &str, path: &str) -> Option<(usize, usize)> {
    if path.is_empty() {
        return None;
    }
    let doc = ImDocument::parse(text).ok()?;
    let mut best = None;
    let mut node = Node::Table(doc.as_table());
    for seg in segments(path) {
        // Each step yields the next node and the span of what it stepped on.
        let step = match (&seg, node) {
            (Seg::Key(k), Node::Table(t)) | (Seg::Key(k), Node::Item(Item::Table(t))) => t
                .get_key_value(k)
                .map(|(key, it)| (Node::Item(it), key.span())),
            (Seg::Key(k), Node::Item(Item::Value(Value::InlineTable(t))))
            | (Seg::Key(k), Node::Value(Value::InlineTable(t))) => t
                .get(k)
                .map(|v| (Node::Value(v), t.key(k).and_then(|key| key.span()))),
            (Seg::Index(i), Node::Item(Item::ArrayOfTables(a))) => {
                a.get(*i).map(|t| (Node::Table(t), t.span()))
            }
            (Seg::Index(i), Node::Item(Item::Value(Value::Array(a))))
            | (Seg::Index(i), Node::Value(Value::Array(a))) => {
                a.get(*i).map(|v| (Node::Value(v), v.span()))
            }
            _ => None,
        };
        match step {
            Some((n, span)) => {
                if span.is_some() {
                    best = span;
                }
                node = n;
            }
            None => break,
        }
    }
    best.map(|s| line_col(text, s.start))
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a toml_edit::Table),
    Item(&'a Item),
    Value(&'a Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_map_to_lines() {
        let text = "[server]\nlisten = \"x\"\n\n[[upstreams]]\nname = \"a\"\nbackends = [\"1\", \"2\"]\n\n[[upstreams]]\nname = \"b\"\nbackends = [\n  \"3\",\n  { addr = \"4\" },\n]\n";
        assert_eq!(line_of(text, "server.listen"), Some((2, 1)));
        assert_eq!(line_of(text, "upstreams[1].name"), Some((9, 1)));
        assert_eq!(line_of(text, "upstreams[1].backends[1]"), Some((12, 3)));
        assert_eq!(line_of(text, "upstreams[0].backends[1]"), Some((6, 18)));
        assert_eq!(
            line_of(text, "upstreams[1].backends[1].addr"),
            Some((12, 5))
        );
        assert_eq!(line_of(text, "nothing.here"), None);
    }
}
