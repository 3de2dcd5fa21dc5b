//! Go's `%q` and `%+q` of a string (`strconv.Quote`, `strconv.QuoteToASCII`), which Consul's
//! messages use wherever they name the value refused (`invalid value "x" for flag -port`).

/// Go's `%q`: printable characters as they are, the rest escaped.
pub fn quote(text: &str) -> String {
    quoted(text, false)
}

/// Go's `%+q`: only printable ASCII as it is, the rest escaped.
pub fn quote_ascii(text: &str) -> String {
    quoted(text, true)
}

fn quoted(text: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            ' '..='~' => out.push(c),
            c if !ascii_only && !c.is_control() => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_as_go_does() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(quote("\x01\x7fé"), r#""\x01\x7fé""#);
        assert_eq!(quote_ascii("é😀"), r#""\u00e9\U0001f600""#);
        assert_eq!(quote("\u{85}"), r#""\u0085""#);
    }
}
