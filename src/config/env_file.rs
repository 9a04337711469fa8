//! The `KEY=value` file format of `/etc/euraflow/euraflow.env` — the same format as the original's
//! `.env` (python-dotenv), so an operator's existing file can be copied over unchanged:
//! `#` comments, blank lines, optional `export `, single quotes (literal), double quotes (with
//! `\n`, `\t`, `\"`, `\\` escapes, may span lines), and ` # comment` after an unquoted value.

/// One assignment, with the line it starts on (1-based) for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A line that is not an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Files larger than this are refused: a configuration file is a few kilobytes, and reading an
/// arbitrary file by mistake (a log, a dump) should fail fast.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

pub fn parse(text: &str) -> (Vec<Entry>, Vec<SyntaxError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            errors.push(SyntaxError {
                line: line_no,
                message: "expected KEY=value".into(),
            });
            continue;
        };
        let key = key.trim();
        if !is_valid_key(key) {
            errors.push(SyntaxError {
                line: line_no,
                message: format!(
                    "'{key}' is not a valid variable name (letters, digits and _ only)"
                ),
            });
            continue;
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // A quoted value may continue on the following lines until its closing quote.
                let mut buf = rest[1..].to_owned();
                let mut found = find_closing(&buf, q);
                while found.is_none() && i < lines.len() {
                    buf.push('\n');
                    buf.push_str(lines[i]);
                    i += 1;
                    found = find_closing(&buf, q);
                }
                let Some(end) = found else {
                    errors.push(SyntaxError {
                        line: line_no,
                        message: format!("the value opened with {q} is never closed"),
                    });
                    continue;
                };
                let trailing = buf[end + 1..].trim();
                if !trailing.is_empty() && !trailing.starts_with('#') {
                    errors.push(SyntaxError {
                        line: line_no,
                        message: format!("unexpected text after the closing quote: '{trailing}'"),
                    });
                    continue;
                }
                let inner = &buf[..end];
                if q == '"' {
                    unescape(inner)
                } else {
                    inner.to_owned()
                }
            }
            _ => strip_inline_comment(rest).trim_end().to_owned(),
        };
        entries.push(Entry {
            key: key.to_owned(),
            value,
            line: line_no,
        });
    }
    (entries, errors)
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The byte index of the closing quote, skipping backslash-escaped ones inside double quotes.
fn find_closing(s: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (idx, c) in s.char_indices() {
        if quote == '"' && escaped {
            escaped = false;
            continue;
        }
        if quote == '"' && c == '\\' {
            escaped = true;
            continue;
        }
        if c == quote {
            return Some(idx);
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// python-dotenv treats ` #` (whitespace, then hash) as the start of a comment after an unquoted
/// value; a `#` glued to the value (`abc#def`) is part of it. The production template relies on
/// this: `EF__DB_POOL_SIZE=40           # 基础连接池大小`.
fn strip_inline_comment(s: &str) -> &str {
    let bytes = s.as_bytes();
    for (idx, b) in bytes.iter().enumerate() {
        if *b == b'#' && (idx == 0 || bytes[idx - 1].is_ascii_whitespace()) {
            return &s[..idx];
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(String, String, usize)> {
        let (entries, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        entries
            .into_iter()
            .map(|e| (e.key, e.value, e.line))
            .collect()
    }

    #[test]
    fn production_template_lines() {
        let v = values(
            "# comment\n\nEF__DB_POOL_SIZE=40           # 基础连接池大小\nEF__DB_PASSWORD=<更换为强密码>\nexport EF__X='a # b'\nEF__Y=\"line\\nnext\"  # c\nEF__Z=abc#def\nEF__EMPTY=\n",
        );
        assert_eq!(
            v,
            vec![
                ("EF__DB_POOL_SIZE".into(), "40".into(), 3),
                ("EF__DB_PASSWORD".into(), "<更换为强密码>".into(), 4),
                ("EF__X".into(), "a # b".into(), 5),
                ("EF__Y".into(), "line\nnext".into(), 6),
                ("EF__Z".into(), "abc#def".into(), 7),
                ("EF__EMPTY".into(), "".into(), 8),
            ]
        );
    }

    #[test]
    fn multiline_quoted_value_keeps_its_start_line() {
        let v = values("A=1\nPEM=\"-----BEGIN\nabc\n-----END\"\nB=2\n");
        assert_eq!(v[1], ("PEM".into(), "-----BEGIN\nabc\n-----END".into(), 2));
        assert_eq!(v[2], ("B".into(), "2".into(), 5));
    }

    #[test]
    fn errors_name_their_line() {
        let (_, errors) = parse("GOOD=1\nthis is not an assignment\n9BAD=2\nQ=\"open\n");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
    }

    #[test]
    fn crlf_and_bom() {
        let v = values("\u{feff}A=1\r\nB=two\r\n");
        assert_eq!(v[0].1, "1");
        assert_eq!(v[1].1, "two");
    }
}
