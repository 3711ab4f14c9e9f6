//! Finding the line of a key in a TOML source, for error messages.

use std::ops::Range;

use toml_edit::{Item, Table, Value};

/// One step of a key path: a table key or an index into an array (of tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// A key of a table or inline table.
    Key(&'a str),
    /// An index into an array or an array of tables.
    Index(usize),
}

/// Dotted form of a key path, e.g. `host[2].addresses.ic1`.
pub fn display_path(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn child(self, seg: Seg<'_>) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match (seg, self) {
            (Seg::Key(k), Node::Item(Item::Table(t))) | (Seg::Key(k), Node::Table(t)) => t
                .get_key_value(k)
                .map(|(key, it)| (key.span(), Node::Item(it))),
            (Seg::Key(k), Node::Item(Item::Value(Value::InlineTable(t))))
            | (Seg::Key(k), Node::Value(Value::InlineTable(t))) => t
                .get_key_value(k)
                .map(|(key, it)| (key.span(), Node::Item(it))),
            (Seg::Index(i), Node::Item(Item::ArrayOfTables(a))) => {
                a.get(i).map(|t| (t.span(), Node::Table(t)))
            }
            (Seg::Index(i), Node::Item(Item::Value(Value::Array(a))))
            | (Seg::Index(i), Node::Value(Value::Array(a))) => {
                a.get(i).map(|v| (v.span(), Node::Value(v)))
            }
            _ => None,
        }
    }
}

/// 1-based line of the deepest part of `path` present in `text`.
///
/// When a key is missing (a required key left out), the line of its closest present
/// parent is returned: that is where the operator has to add it.
pub fn line_of(text: &str, path: &[Seg<'_>]) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut node = Node::Item(doc.as_item());
    let mut best: Option<Range<usize>> = None;
    for seg in path {
        match node.child(*seg) {
            Some((span, next)) => {
                if span.is_some() {
                    best = span;
                }
                node = next;
            }
            None => break,
        }
    }
    best.map(|s| line_at(text, s.start))
}

/// 1-based line number of byte `offset`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The key written on the line that contains byte `offset`, for parse errors.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[offset..]
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(text.len());
    let line = text[start..end].trim();
    if let Some(header) = line.strip_prefix('[') {
        return Some(
            header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        );
    }
    line.split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty())
}
