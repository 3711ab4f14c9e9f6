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
        let name = header.trim_matches(|c| c == '[' || c == ']').trim();
        return (!name.is_empty()).then(|| name.to_string());
    }
    line.split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::guest::GuestConfig;
    use crate::config::ClusterConfig;

    /// A parse error on a table header without a name (found by the `cluster_config`
    /// fuzz target: the one-byte file `[`) names the syntax, not an empty key.
    #[test]
    fn a_header_without_a_name_is_a_syntax_problem() {
        for text in ["[", "[]", "[[", "[[ ]]\n", "[cluster]\nname = \"a\"\n[ ]\n"] {
            let cluster = ClusterConfig::load_str(Path::new("/etc/hvcluster/cluster.toml"), text)
                .unwrap_err();
            let guest =
                GuestConfig::load_str(Path::new("/etc/hvcluster/guest.toml"), text).unwrap_err();
            for p in cluster.problems.iter().chain(&guest.problems) {
                assert_eq!(p.key, "(syntax)", "{text:?}: {p}");
                assert!(p.line.is_some(), "{text:?}: {p}");
            }
        }
    }

    #[test]
    fn key_at_names_the_key_or_header_of_the_line() {
        let text = "[cluster]\nname = \"a\"\n[[host]]\n= 3\n[  ]\n";
        assert_eq!(key_at(text, 1).as_deref(), Some("cluster"));
        assert_eq!(key_at(text, 12).as_deref(), Some("name"));
        assert_eq!(key_at(text, 25).as_deref(), Some("host"));
        assert_eq!(key_at(text, 32), None, "no key before the =");
        assert_eq!(key_at(text, 36), None, "a header without a name");
    }
}
