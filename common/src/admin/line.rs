//! Splitting an admin connection's bytes into request lines, with the length bound
//! enforced as the bytes arrive: a line past the bound is refused before more of it is
//! kept, so a client that never sends a line end holds at most the bound in memory.

/// What the bytes so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// One complete line, without its line end.
    Line(Vec<u8>),
    /// The line being read is longer than the bound; nothing more of it was kept.
    TooLong,
}

/// Cuts a byte stream into lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
    refused: bool,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes (line end not counted).
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            max,
            refused: false,
        }
    }

    /// Takes the next `bytes` of the stream; returns the lines they complete, and
    /// [`Piece::TooLong`] (last, once) when the current line passes the bound. After
    /// that nothing more is taken.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        if self.refused {
            return out;
        }
        let mut rest = bytes;
        loop {
            let (segment, complete) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if self.partial.len() + segment.len() > self.max {
                self.refused = true;
                self.partial = Vec::new();
                out.push(Piece::TooLong);
                return out;
            }
            // Exact, so what is held never grows past the bound.
            self.partial.reserve_exact(segment.len());
            self.partial.extend_from_slice(segment);
            if !complete {
                return out;
            }
            out.push(Piece::Line(std::mem::take(&mut self.partial)));
            rest = &rest[segment.len() + 1..];
        }
    }

    /// At the end of the stream: the last line when it had no line end.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.refused && !self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }

    /// Bytes held for the line being read.
    pub fn held(&self) -> usize {
        self.partial.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks() {
        let mut s = LineSplitter::new(16);
        assert_eq!(s.push(b"{\"cmd\":"), vec![]);
        assert_eq!(
            s.push(b"\"status\"}\nab\n\ncd"),
            vec![
                Piece::Line(b"{\"cmd\":\"status\"}".to_vec()),
                Piece::Line(b"ab".to_vec()),
                Piece::Line(Vec::new()),
            ]
        );
        assert_eq!(s.finish(), Some(b"cd".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_line_of_exactly_the_bound_passes_one_more_byte_does_not() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"abcd\n"), vec![Piece::Line(b"abcd".to_vec())]);
        assert_eq!(s.push(b"ab"), vec![]);
        assert_eq!(s.push(b"cde\nok\n"), vec![Piece::TooLong]);
        // Nothing after a refusal: the connection ends.
        assert_eq!(s.push(b"ok\n"), vec![]);
        assert_eq!(s.finish(), None);
    }

    /// 10 MiB with no line end, fed as a socket would: refused at the bound, and no
    /// more than the bound is ever held.
    #[test]
    fn ten_mebibytes_without_a_line_end_hold_at_most_the_bound() {
        const MAX: usize = 64 * 1024;
        let mut s = LineSplitter::new(MAX);
        let chunk = vec![b'x'; 8192];
        let mut fed = 0usize;
        let mut refused_at = None;
        while fed < 10 << 20 {
            let pieces = s.push(&chunk);
            fed += chunk.len();
            assert!(s.held() <= MAX, "held {} after {fed} bytes", s.held());
            if pieces.contains(&Piece::TooLong) {
                refused_at.get_or_insert(fed);
            }
        }
        let at = refused_at.expect("refused");
        assert!(at <= MAX + chunk.len(), "refused only after {at} bytes");
    }
}
