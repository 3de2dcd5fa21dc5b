//! HCL version 1, the language of Consul's `.hcl` configuration files.
//!
//! HCL1 (hashicorp/hcl v1) has `key = value` attributes, `key { ... }` blocks that may carry
//! labels (`service "web" { ... }`), lists, strings, heredocs, numbers and bools, and three
//! comment styles. Consul reads a file with `hcl.Decode` into a `map[string]interface{}` and from
//! then on treats it as it treats a JSON file. [`parse`] does both steps at once: it turns a
//! document into the JSON object that the equivalent `.json` file would hold.
//!
//! The parser is hand-written because no maintained Rust crate reads HCL1. The HCL2 crates refuse
//! valid HCL1 (`ports { http = 8500, dns = 8600 }`, `a = 1,` at the top level), read `0644` as
//! decimal and take bare words such as `TRUE` for variables. The scanner and the parser follow
//! hashicorp/hcl v1.0.0 (`hcl/scanner/scanner.go`, `hcl/parser/parser.go`, `decoder.go`): they
//! accept the same documents, and word and place errors as HCL1 does, for example
//! `At 3:7: key 'foo' expected start of object ('{') or assignment ('=')`.
//!
//! # Output
//!
//! - `key = "s"`, `key = 8500`, `key = 1.5` and `key = true` give a JSON string, an `i64`
//!   (decimal, `0x1f` hex, `0644` octal), an `f64` and a bool.
//! - `key { ... }` and `key = { ... }` give an object; `key = [ ... ]` gives an array.
//! - Labels nest: `a "b" "c" { ... }` gives `"a": {"b": {"c": { ... }}}`.
//! - A key given again at the same level: objects accumulate into an array in source order
//!   (`service {} service {}` gives two services; one block alone stays an object), but
//!   labelled blocks merge by label (`a "b" {}` and `a "c" {}` give `"a": {"b": {}, "c": {}}`);
//!   lists concatenate, as HCL1's decoder appends them; any other value replaces the earlier
//!   one.
//! - A document whose first non-space character is `{` is JSON, as HCL1 decides too.
//!
//! # Where this differs from HCL1
//!
//! HCL1 builds a syntax tree and then decodes it into Go values, and its decoder, not its
//! grammar, decides what a repeated key means. This module builds the JSON directly and chooses:
//!
//! - Labelled blocks: HCL1 gives a list of one-key objects, which Consul's decoder then sees
//!   merged; here they are merged at once, as described above.
//! - A repeated key whose values differ in kind: HCL1's decoder coerces (a number after a string
//!   becomes a string) or fails (a string after a number, a plain block beside labelled ones).
//!   Here a later scalar replaces what came before, and a plain block beside labelled ones joins
//!   them in an array. Keys compare exactly (HCL1 groups labelled blocks case-insensitively).
//! - The first scanner error is reported. HCL1 scans on after one and reports the last, which
//!   is often a consequence of the first (a string left open on one line fails again on the
//!   next). A NUL character (or U+E123) ends the input here; HCL1 scans on past it.
//! - Literals that HCL1 refuses only while decoding carry their position
//!   (`At 1:5: strconv.ParseInt: parsing "99999999999999999999": value out of range`), and
//!   escapes that it scans but cannot decode (`"\777"`, on which it panics) are
//!   `illegal char escape`. As in HCL1 they are reported only if the document parses.
//! - A JSON document is read by `serde_json`, not by HCL1's JSON parser: errors are worded as
//!   `serde_json` words them, and a repeated key keeps its last value.
//! - Non-ASCII letters and digits in identifiers follow Rust's `char::is_alphabetic` and
//!   `char::is_numeric` rather than Go's `unicode.IsLetter` and `unicode.IsDigit`.
//! - Objects, lists and labels nested more than `NESTING_MAX` deep are an error, and error
//!   messages quote at most `ERROR_QUOTE_MAX` characters of a token or of a run of keys.
//!
//! HCL1's quirks are kept where they decide which documents parse or what an error says: a
//! dangling `key =` at the end is ignored, `[1,,2]` and `[[1] [2]]` are lists, `<<-EOF` is not
//! closed by an unindented `EOF`, the closing anchor needs a newline after it, an error at a
//! stray `}` is dropped in favour of a missing-brace error, and errors at the end of input carry
//! HCL1's column, which runs past the end.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};

/// A parse error: where and what, displayed as HCL1 displays it: `At 3:7: <message>` (line and
/// column 1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("At {line}:{column}: {message}")]
pub struct ParseError {
    /// The line of the offending character or token, from 1.
    pub line: usize,
    /// The column of the offending character or token, counted in characters from 1.
    pub column: usize,
    /// What is wrong, in HCL1's words.
    pub message: String,
}

impl ParseError {
    fn at(pos: Pos, message: impl Into<String>) -> Self {
        Self { line: pos.line, column: pos.column, message: message.into() }
    }
}

/// Parses an HCL1 document into a JSON object.
///
/// A document whose first non-space character is `{` is parsed as JSON.
///
/// # Errors
///
/// Any syntax error, worded and placed as HCL1 does; for a JSON document, `serde_json`'s
/// message and position.
pub fn parse(text: &str) -> Result<Map<String, Value>, ParseError> {
    if text.trim_start().starts_with('{') {
        return parse_json(text);
    }
    // HCL1 turns CRLF into LF before it scans, so no line of a heredoc ends in '\r'.
    let text =
        if text.contains("\r\n") { Cow::Owned(text.replace("\r\n", "\n")) } else { Cow::Borrowed(text) };
    Parser::new(&text).document()
}

fn parse_json(text: &str) -> Result<Map<String, Value>, ParseError> {
    serde_json::from_str(text).map_err(|error| {
        // serde_json ends its message with the position, which has fields of its own here.
        let message = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        ParseError { line: error.line(), column: error.column(), message }
    })
}

/// A recursive-descent parser with one token of look-ahead. Its methods follow HCL1's
/// `objectList` (`items`), `objectItem` and `objectKey` (`item`), `object` (`assignment`),
/// `objectType` (`object`) and `listType` (`list`).
///
/// Each method that opens an object or a list takes the `depth` of what it parses: the root
/// object is at 0, and every object, list and label inside adds one, up to `NESTING_MAX`.
struct Parser<'a> {
    scanner: Scanner<'a>,
    /// The next token, when `peek` has read it.
    peeked: Option<Token<'a>>,
    /// Whether the scanner has failed. HCL1 reports a scanner error as it is, where it wraps a
    /// parse error in a list item with the item's position.
    scan_failed: bool,
    /// Whether the error being returned was raised at a `}` where a value or a list item should
    /// be. HCL1 drops such an error in the object that the `}` closes, keeping the items before
    /// it, and looks for the object's own `}` after it: `a { x = } }` parses as `a {}`, and
    /// `a { x = }` fails for want of a second `}`.
    error_at_brace: bool,
}

/// Where a run of object items ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// At the end of input: the document's top level.
    EndOfInput,
    /// Before a `}`: the inside of an object.
    ClosingBrace,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self { scanner: Scanner::new(text), peeked: None, scan_failed: false, error_at_brace: false }
    }

    fn document(mut self) -> Result<Map<String, Value>, ParseError> {
        let mut body = Body::default();
        self.items(0, Until::EndOfInput, &mut body)?;
        match self.scanner.undecodable {
            Some(error) => Err(error),
            None => Ok(body.finish()),
        }
    }

    /// Parses object items into `body`. An item may be followed by one comma, the last one
    /// included. On error, `body` keeps the items before the failing one.
    fn items(&mut self, depth: usize, until: Until, body: &mut Body) -> Result<(), ParseError> {
        loop {
            if until == Until::ClosingBrace && self.peek()?.kind == Kind::RBrace {
                return Ok(());
            }
            let Some((key, slot)) = self.item(depth)? else {
                return Ok(());
            };
            body.insert(key, slot);
            if self.peek()?.kind == Kind::Comma {
                self.next()?;
            }
        }
    }

    /// Parses one item: keys, then `= value` or `{ body }`. Returns `None` at the end of input,
    /// also after a dangling `key =`, which HCL1 ignores.
    fn item(&mut self, depth: usize) -> Result<Option<(String, Slot)>, ParseError> {
        let mut keys = Vec::new();
        // Each key opens a level: the first holds the value, each label an object around it.
        let mut inner = depth;
        loop {
            let token = self.next()?;
            match token.kind {
                Kind::Ident | Kind::String => {
                    inner = nest(inner, token.pos)?;
                    keys.push(token);
                }
                Kind::Assign => return self.assignment(inner, keys, token.pos),
                Kind::LBrace => return self.block(inner, keys, token.pos).map(Some),
                Kind::Eof if keys.is_empty() => return Ok(None),
                Kind::Eof | Kind::RBrace if !keys.is_empty() => {
                    let names: Vec<&str> = keys.iter().map(|key| key.text).collect();
                    let message = format!(
                        "key '{}' expected start of object ('{{') or assignment ('=')",
                        excerpt(&names.join(" "))
                    );
                    return Err(ParseError::at(token.pos, message));
                }
                kind => {
                    let message = format!("expected: IDENT | STRING | ASSIGN | LBRACE got: {kind}");
                    return Err(ParseError::at(token.pos, message));
                }
            }
        }
    }

    /// Parses the value after `key =`; HCL1 allows a single key there.
    fn assignment(
        &mut self,
        depth: usize,
        mut keys: Vec<Token<'a>>,
        assign: Pos,
    ) -> Result<Option<(String, Slot)>, ParseError> {
        if keys.len() > 1 {
            return Err(ParseError::at(assign, "nested object expected: LBRACE got: ASSIGN"));
        }
        let Some(key) = keys.pop() else {
            return Err(ParseError::at(assign, "no object keys found!"));
        };
        let token = self.next()?;
        let slot = match token.kind {
            Kind::Eof => return Ok(None),
            Kind::LBrace => Slot::Object(self.object(depth)?),
            Kind::LBrack => Slot::Value(self.list(depth)?),
            _ => Slot::Value(self.literal(token)?),
        };
        Ok(Some((key.into_key(), slot)))
    }

    /// Parses a block whose `{` (at `open`) has been read. The keys after the first are labels,
    /// each an object around the block's body.
    fn block(&mut self, depth: usize, keys: Vec<Token<'a>>, open: Pos) -> Result<(String, Slot), ParseError> {
        let mut keys = keys.into_iter().rev().map(Token::into_key);
        let Some(mut key) = keys.next() else {
            return Err(ParseError::at(open, "expected: IDENT | STRING got: LBRACE"));
        };
        let mut slot = Slot::Object(self.object(depth)?);
        for outer in keys {
            slot = Slot::Labels(Body::of(key, slot));
            key = outer;
        }
        Ok((key, slot))
    }

    /// Parses the inside of an object whose `{` has been read, and its closing `}`.
    fn object(&mut self, depth: usize) -> Result<Map<String, Value>, ParseError> {
        let mut body = Body::default();
        if let Err(error) = self.items(depth, Until::ClosingBrace, &mut body) {
            if !self.error_at_brace {
                return Err(error);
            }
            self.error_at_brace = false;
        }
        let token = self.next()?;
        if token.kind != Kind::RBrace {
            let message = format!("object expected closing RBRACE got: {}", token.kind);
            return Err(ParseError::at(token.pos, message));
        }
        Ok(body.finish())
    }

    /// Parses the items of a list whose `[` has been read, and its closing `]`. As in HCL1, a
    /// comma must follow each item but a nested list, and extra commas are ignored.
    fn list(&mut self, depth: usize) -> Result<Value, ParseError> {
        let mut items = Vec::new();
        let mut comma_expected = false;
        loop {
            let token = self.next()?;
            if comma_expected && !matches!(token.kind, Kind::Comma | Kind::RBrack) {
                let message = format!("error parsing list, expected comma or list end, got: {}", token.kind);
                return Err(self.error_at(&token, message));
            }
            match token.kind {
                Kind::RBrack => return Ok(Value::Array(items)),
                Kind::Comma => comma_expected = false,
                Kind::LBrace => {
                    let inner = nest(depth, token.pos)?;
                    let object = self.object(inner).map_err(|e| self.within_list(e, token.pos, "object"))?;
                    items.push(Value::Object(object));
                    comma_expected = true;
                }
                Kind::LBrack => {
                    let inner = nest(depth, token.pos)?;
                    let list = self.list(inner).map_err(|e| self.within_list(e, token.pos, "list"))?;
                    items.push(list);
                }
                kind if kind.is_literal() => {
                    items.push(self.literal(token)?);
                    comma_expected = true;
                }
                kind => {
                    let message = format!("unexpected token while parsing list: {kind}");
                    return Err(self.error_at(&token, message));
                }
            }
        }
    }

    /// The value of a literal token; any other token is an `Unknown token` error.
    fn literal(&mut self, token: Token<'a>) -> Result<Value, ParseError> {
        if !token.kind.is_literal() {
            let message = format!("Unknown token: {} {} {}", token.pos, token.kind, excerpt(token.text));
            return Err(self.error_at(&token, message));
        }
        Ok(token.value)
    }

    /// An error about `token`, where a value or a list item should be.
    fn error_at(&mut self, token: &Token<'a>, message: String) -> ParseError {
        self.error_at_brace = token.kind == Kind::RBrace;
        ParseError::at(token.pos, message)
    }

    /// `error` as the cause of a failure to parse the `what` (object or list) that starts at
    /// `pos` inside a list: HCL1 reports a parse error in a list's items so, once per level.
    fn within_list(&self, error: ParseError, pos: Pos, what: &str) -> ParseError {
        if self.scan_failed {
            return error;
        }
        ParseError::at(pos, format!("error while trying to parse {what} within list: {error}"))
    }

    fn next(&mut self) -> Result<Token<'a>, ParseError> {
        if let Some(token) = self.peeked.take() {
            return Ok(token);
        }
        let token = self.scanner.next_token();
        self.scan_failed = token.is_err();
        token
    }

    fn peek(&mut self) -> Result<&Token<'a>, ParseError> {
        let token = self.next()?;
        Ok(self.peeked.insert(token))
    }
}

/// The depth inside a container that opens at `pos` in one at `depth`.
fn nest(depth: usize, pos: Pos) -> Result<usize, ParseError> {
    if depth >= NESTING_MAX {
        return Err(ParseError::at(
            pos,
            format!("objects, lists and labels nested deeper than {NESTING_MAX}"),
        ));
    }
    Ok(depth + 1)
}

/// The items of one object while it is parsed, in source order, each key once.
#[derive(Debug, Default)]
struct Body {
    items: Vec<(String, Slot)>,
    /// Where each key is in `items`, so that a long object is parsed in linear time.
    index: HashMap<String, usize>,
}

impl Body {
    fn of(key: String, slot: Slot) -> Self {
        let mut body = Self::default();
        body.insert(key, slot);
        body
    }

    /// Adds an item; a key already present combines its earlier and later values.
    fn insert(&mut self, key: String, slot: Slot) {
        if let Some((_, present)) = self.index.get(&key).and_then(|&i| self.items.get_mut(i)) {
            let earlier = std::mem::replace(present, Slot::Value(Value::Null));
            *present = earlier.combine(slot);
        } else {
            self.index.insert(key.clone(), self.items.len());
            self.items.push((key, slot));
        }
    }

    fn merge(&mut self, later: Body) {
        for (key, slot) in later.items {
            self.insert(key, slot);
        }
    }

    fn finish(self) -> Map<String, Value> {
        self.items.into_iter().map(|(key, slot)| (key, slot.finish())).collect()
    }
}

/// What one key of an object holds while the object is parsed.
#[derive(Debug)]
enum Slot {
    /// A scalar or a list.
    Value(Value),
    /// One object, from `key { ... }` or `key = { ... }`.
    Object(Map<String, Value>),
    /// Labelled blocks (`key "label" { ... }`), by label.
    Labels(Body),
}

impl Slot {
    /// Combines the values of a key given twice at one level. Labelled blocks merge by label.
    /// Otherwise, as HCL1's decoder does, two objects make a list of both and a list takes
    /// further objects and lists' items. Any other later value replaces the earlier one.
    fn combine(self, later: Slot) -> Slot {
        match (self, later) {
            (Slot::Labels(mut earlier), Slot::Labels(later)) => {
                earlier.merge(later);
                Slot::Labels(earlier)
            }
            (earlier, later) if earlier.is_object() && later.is_object() => {
                Slot::Value(Value::Array(vec![earlier.finish(), later.finish()]))
            }
            (Slot::Value(Value::Array(mut earlier)), later) if later.is_object() => {
                earlier.push(later.finish());
                Slot::Value(Value::Array(earlier))
            }
            (earlier, Slot::Value(Value::Array(mut later))) if earlier.is_object() => {
                later.insert(0, earlier.finish());
                Slot::Value(Value::Array(later))
            }
            (Slot::Value(Value::Array(mut earlier)), Slot::Value(Value::Array(later))) => {
                earlier.extend(later);
                Slot::Value(Value::Array(earlier))
            }
            (_, later) => later,
        }
    }

    fn is_object(&self) -> bool {
        matches!(self, Slot::Object(_) | Slot::Labels(_))
    }

    fn finish(self) -> Value {
        match self {
            Slot::Value(value) => value,
            Slot::Object(object) => Value::Object(object),
            Slot::Labels(body) => Value::Object(body.finish()),
        }
    }
}

/// Splits HCL1 source into tokens, skipping whitespace and comments, and gives each literal its
/// value as it goes. Unlike HCL1's scanner it stops at its first error.
struct Scanner<'a> {
    text: &'a str,
    /// The byte offset of the next character.
    offset: usize,
    /// The position of the next character, or just past the last one at the end of input.
    pos: Pos,
    /// The error for a character HCL1 forbids anywhere (NUL, U+E123). Such a character ends the
    /// input, and its error replaces whatever the scan made of that end.
    forbidden: Option<ParseError>,
    /// The first literal that HCL1 scans but cannot decode: an integer out of range, a float
    /// without exponent digits, an escape past a byte or past Unicode (on which HCL1 panics).
    /// HCL1 decodes literals only once the whole document has parsed, so a syntax error anywhere
    /// takes precedence: the parser reports this only if none occurs.
    undecodable: Option<ParseError>,
    /// How many times HCL1's scanner would have read past the end of input. Each such read moves
    /// its column on by one, and an EOF token takes the column reached, so that HCL1 reports an
    /// unclosed `{` at the end of `a {` at 1:5. Reproducing this keeps such messages identical
    /// to Consul's.
    eof_reads: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        let pos = Pos { line: 1, column: 1 };
        Self { text, offset: 0, pos, forbidden: None, undecodable: None, eof_reads: 0 }
    }

    fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        let token = self.scan();
        match self.forbidden.take() {
            Some(error) => Err(error),
            None => token,
        }
    }

    fn scan(&mut self) -> Result<Token<'a>, ParseError> {
        loop {
            self.eat_while(is_whitespace);
            let start = self.offset;
            let pos = self.pos;
            let Some(ch) = self.bump() else {
                self.eof_reads += 1;
                let pos = self.past_end(self.eof_reads);
                return Ok(Token { kind: Kind::Eof, pos, text: "", value: Value::Null });
            };
            let mut value = Value::Null;
            let kind = match ch {
                '#' | '/' => {
                    self.skip_comment(ch, pos)?;
                    continue;
                }
                '"' => {
                    value = Value::String(self.scan_string()?);
                    Kind::String
                }
                '<' => {
                    value = Value::String(self.scan_heredoc()?);
                    Kind::Heredoc
                }
                '.' if self.peek().is_some_and(is_decimal) => self.scan_dot_float(),
                '-' => match self.peek() {
                    Some(digit) if is_decimal(digit) => {
                        self.bump();
                        self.scan_number(digit)?
                    }
                    _ => Kind::Sub,
                },
                c if is_decimal(c) => self.scan_number(c)?,
                c if is_letter(c) => {
                    self.eat_while(|c| is_letter(c) || is_digit(c) || c == '-' || c == '.');
                    match self.since(start) {
                        "true" | "false" => Kind::Bool,
                        _ => Kind::Ident,
                    }
                }
                '.' => Kind::Period,
                '[' => Kind::LBrack,
                ']' => Kind::RBrack,
                '{' => Kind::LBrace,
                '}' => Kind::RBrace,
                ',' => Kind::Comma,
                '=' => Kind::Assign,
                '+' => Kind::Add,
                _ => return Err(ParseError::at(pos, "illegal char")),
            };
            let text = self.since(start);
            if self.rest().is_empty() {
                self.eof_reads += reads_past_end(kind, text);
            }
            let value = match kind {
                Kind::Bool => Value::Bool(text == "true"),
                Kind::Number => self.decoded(pos, parse_integer(text).map(Value::from)),
                Kind::Float => self.decoded(pos, parse_float(text).map(Value::Number)),
                _ => value,
            };
            return Ok(Token { kind, pos, text, value });
        }
    }

    /// The value of the literal at `pos`, or null in place of one that HCL1 cannot decode.
    fn decoded(&mut self, pos: Pos, value: Result<Value, LiteralError>) -> Value {
        value.unwrap_or_else(|error| {
            self.undecodable(pos, error.to_string());
            Value::Null
        })
    }

    fn undecodable(&mut self, pos: Pos, message: impl Into<String>) {
        self.undecodable.get_or_insert(ParseError::at(pos, message));
    }

    /// Skips a `#`, `//` or `/* */` comment whose first character (at `pos`) has been read.
    /// `/* */` does not nest.
    fn skip_comment(&mut self, first: char, pos: Pos) -> Result<(), ParseError> {
        match (first, self.peek()) {
            ('#', _) | ('/', Some('/')) => {
                self.eat_while(|c| c != '\n');
                // HCL1 reads on to the newline, or past the end.
                if self.rest().is_empty() {
                    self.eof_reads += 1;
                }
            }
            (_, Some('*')) => {
                self.bump();
                let mut star = false;
                loop {
                    match self.bump() {
                        None => return Err(ParseError::at(self.pos, "comment not terminated")),
                        Some('/') if star => break,
                        Some(c) => star = c == '*',
                    }
                }
            }
            _ => return Err(ParseError::at(pos, "expected '/' for comment")),
        }
        Ok(())
    }

    /// Scans a number whose first digit (after any `-`) has been read. As in HCL1, `0x` starts
    /// a hex integer and another leading `0` an octal one, and a `.` or an exponent makes a
    /// float.
    fn scan_number(&mut self, first: char) -> Result<Kind, ParseError> {
        if first == '0' && self.eat(|c| c == 'x' || c == 'X') {
            if !self.eat_while(|c| c.is_ascii_hexdigit()) {
                return Err(ParseError::at(self.pos, "illegal hexadecimal number"));
            }
            return Ok(Kind::Number);
        }
        let digits = self.offset;
        self.eat_while(is_decimal);
        match self.peek() {
            Some('.') => {
                self.bump();
                self.eat_while(is_decimal);
                if self.peek().is_some_and(|c| c == 'e' || c == 'E') {
                    self.scan_exponent();
                }
                Ok(Kind::Float)
            }
            Some('e' | 'E') => {
                self.scan_exponent();
                Ok(Kind::Float)
            }
            // HCL1 checks each digit it reads after the first: `089` is an error here, while `09`
            // is left for the conversion to refuse.
            _ if first == '0' && self.since(digits).chars().skip(1).any(|c| c == '8' || c == '9') => {
                Err(ParseError::at(self.pos, "illegal octal number"))
            }
            _ => Ok(Kind::Number),
        }
    }

    /// Scans an exponent: `e` or `E`, an optional sign and digits. Where HCL1 expects the sign
    /// or the first digit it takes whatever character stands there, so `1ee` and `1e+x` are one
    /// token each; such a float, like one without digits, fails to convert.
    fn scan_exponent(&mut self) {
        self.bump();
        let mut ch = self.bump();
        if matches!(ch, Some('+' | '-')) {
            ch = self.bump();
        }
        if ch.is_some_and(is_decimal) {
            self.eat_while(is_decimal);
        }
    }

    /// Scans the digits of a float that starts with `.`. HCL1 reads no exponent after these: an
    /// `e` ends the token, which then fails to convert, and its digits are a token of their own.
    fn scan_dot_float(&mut self) -> Kind {
        self.eat_while(is_decimal);
        self.eat(|c| c == 'e' || c == 'E');
        Kind::Float
    }

    /// Scans and decodes a string whose `"` has been read. A string holds no raw newline, except
    /// inside `${ }`: that text is kept as written (Consul does not interpolate), may hold quotes,
    /// and has its escapes checked but not decoded.
    fn scan_string(&mut self) -> Result<String, ParseError> {
        // Bytes rather than characters: `\x` and octal escapes stand for bytes, as in Go.
        let mut bytes = Vec::new();
        let mut braces = 0_usize;
        loop {
            let pos = self.pos;
            let start = self.offset;
            let Some(ch) = self.bump() else {
                return Err(ParseError::at(self.pos, "literal not terminated"));
            };
            match ch {
                '"' if braces == 0 => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
                '\n' if braces == 0 => return Err(ParseError::at(pos, "literal not terminated")),
                '\\' if braces == 0 => self.scan_escape(pos, &mut bytes)?,
                '\\' => {
                    self.scan_escape(pos, &mut Vec::new())?;
                    bytes.extend_from_slice(self.since(start).as_bytes());
                }
                '$' if braces == 0 && self.peek() == Some('{') => {
                    self.bump();
                    braces = 1;
                    bytes.extend_from_slice(b"${");
                }
                _ => {
                    match ch {
                        '{' if braces > 0 => braces += 1,
                        '}' if braces > 0 => braces -= 1,
                        _ => {}
                    }
                    push_char(&mut bytes, ch);
                }
            }
        }
    }

    /// Scans an escape whose `\` (at `backslash`) has been read, and appends what it stands for.
    fn scan_escape(&mut self, backslash: Pos, out: &mut Vec<u8>) -> Result<(), ParseError> {
        let pos = self.pos;
        let Some(ch) = self.bump() else {
            return Err(self.unterminated_escape());
        };
        match ch {
            'a' => out.push(0x07),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(0x0b),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            '0'..='7' | 'x' => {
                let value =
                    if ch == 'x' { self.scan_digits('0', 16, 2)? } else { self.scan_digits(ch, 8, 2)? };
                // HCL1's scanner takes octal escapes up to \777, past a byte, which its decoder
                // refuses.
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                } else {
                    self.undecodable(backslash, "illegal char escape");
                }
            }
            'u' | 'U' => {
                let count = if ch == 'u' { 4 } else { 8 };
                let value = self.scan_digits('0', 16, count)?;
                if value > u32::from(char::MAX) {
                    self.undecodable(backslash, "illegal char escape");
                }
                // A surrogate is no character; Go encodes it as U+FFFD.
                push_char(out, char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            _ => return Err(ParseError::at(pos, "illegal char escape")),
        }
        Ok(())
    }

    /// Reads `count` more digits in `radix` after `first` and returns the number they make.
    fn scan_digits(&mut self, first: char, radix: u32, count: usize) -> Result<u32, ParseError> {
        let mut value = first.to_digit(radix).unwrap_or(0);
        for _ in 0..count {
            let Some(ch) = self.peek() else {
                return Err(self.unterminated_escape());
            };
            let Some(digit) = ch.to_digit(radix) else {
                return Err(ParseError::at(self.pos, "illegal char escape"));
            };
            self.bump();
            value = value.saturating_mul(radix).saturating_add(digit);
        }
        Ok(value)
    }

    /// The error for a string that ends inside an escape. HCL1 reads the end of input once in the
    /// escape and once more in the string, and reports the second read.
    fn unterminated_escape(&self) -> ParseError {
        ParseError::at(self.past_end(2), "literal not terminated")
    }

    /// Scans a heredoc whose first `<` has been read: `<<ANCHOR` or `<<-ANCHOR`, a newline, then
    /// lines up to one holding the anchor alone. As in HCL1, that line must end in a newline.
    fn scan_heredoc(&mut self) -> Result<String, ParseError> {
        let pos = self.pos;
        if self.bump() != Some('<') {
            return Err(ParseError::at(pos, "heredoc expected second '<', didn't see it"));
        }
        let anchor_start = self.offset;
        self.eat(|c| c == '-');
        self.eat_while(|c| is_letter(c) || is_digit(c));
        // Left over from a "\r\r\n": HCL1 keeps the '\r' as part of the anchor.
        if self.peek() == Some('\r') && self.peek_second() == Some('\n') {
            self.bump();
        }
        let anchor = self.since(anchor_start);
        let newline = self.pos;
        match self.bump() {
            Some('\n') => {}
            None => return Err(ParseError::at(self.pos, "heredoc not terminated")),
            Some(_) => return Err(ParseError::at(newline, "invalid characters in heredoc anchor")),
        }
        if anchor.is_empty() || anchor == "-" {
            return Err(ParseError::at(newline, "zero-length heredoc anchor"));
        }
        let body_start = self.offset;
        let mut line_start = self.offset;
        loop {
            let line_end = self.offset;
            match self.bump() {
                None => return Err(ParseError::at(self.pos, "heredoc not terminated")),
                Some('\n') => {
                    let line = self.text.get(line_start..line_end).unwrap_or_default();
                    if closes_heredoc(line, anchor) {
                        let body = self.text.get(body_start..line_start).unwrap_or_default();
                        return Ok(heredoc_value(body, line, anchor));
                    }
                    line_start = self.offset;
                }
                Some(_) => {}
            }
        }
    }

    /// Where HCL1 places the end of input once it has read it `reads` times.
    fn past_end(&self, reads: usize) -> Pos {
        Pos { line: self.pos.line, column: self.pos.column + reads.saturating_sub(1) }
    }

    /// The next character, or `None` at the end of input or at a forbidden character.
    fn peek(&self) -> Option<char> {
        self.rest().chars().next().filter(|&c| forbidden(c).is_none())
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    /// Consumes the next character. A forbidden character ends the input and records its error.
    fn bump(&mut self) -> Option<char> {
        let ch = self.rest().chars().next()?;
        if let Some(message) = forbidden(ch) {
            self.forbidden = Some(ParseError::at(self.pos, message));
            self.text = self.text.get(..self.offset).unwrap_or_default();
            return None;
        }
        self.offset += ch.len_utf8();
        if ch == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(ch)
    }

    /// Consumes the next character if it satisfies `accept`.
    fn eat(&mut self, accept: impl Fn(char) -> bool) -> bool {
        let eaten = self.peek().is_some_and(accept);
        if eaten {
            self.bump();
        }
        eaten
    }

    /// Consumes characters while they satisfy `accept`; returns whether it consumed any.
    fn eat_while(&mut self, accept: impl Fn(char) -> bool) -> bool {
        let start = self.offset;
        while self.eat(&accept) {}
        self.offset > start
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.offset..).unwrap_or_default()
    }

    /// The text from byte offset `start` to the next character.
    fn since(&self, start: usize) -> &'a str {
        self.text.get(start..self.offset).unwrap_or_default()
    }
}

/// A position in the source: line and column (in characters), both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug)]
struct Token<'a> {
    kind: Kind,
    /// Where the token starts.
    pos: Pos,
    /// The token as written.
    text: &'a str,
    /// The value of a literal; null for other kinds and for a literal HCL1 cannot decode.
    value: Value,
}

impl Token<'_> {
    /// The object key this IDENT or STRING token names.
    fn into_key(self) -> String {
        match self.value {
            Value::String(key) => key,
            _ => self.text.to_owned(),
        }
    }
}

/// The kinds of token, displayed as HCL1 names them in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Eof,
    Ident,
    Number,
    Float,
    Bool,
    String,
    Heredoc,
    LBrack,
    LBrace,
    Comma,
    Period,
    RBrack,
    RBrace,
    Assign,
    Add,
    Sub,
}

impl Kind {
    fn is_literal(self) -> bool {
        matches!(self, Kind::Number | Kind::Float | Kind::Bool | Kind::String | Kind::Heredoc)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Kind::Eof => "EOF",
            Kind::Ident => "IDENT",
            Kind::Number => "NUMBER",
            Kind::Float => "FLOAT",
            Kind::Bool => "BOOL",
            Kind::String => "STRING",
            Kind::Heredoc => "HEREDOC",
            Kind::LBrack => "LBRACK",
            Kind::LBrace => "LBRACE",
            Kind::Comma => "COMMA",
            Kind::Period => "PERIOD",
            Kind::RBrack => "RBRACK",
            Kind::RBrace => "RBRACE",
            Kind::Assign => "ASSIGN",
            Kind::Add => "ADD",
            Kind::Sub => "SUB",
        };
        f.write_str(name)
    }
}

/// How many times HCL1's scanner reads past the end of input while it scans a token that ends
/// there. It reads one character past an identifier or a run of digits to see it end, and once
/// more after a decimal integer's digits to look for a fraction; it reads the character after an
/// exponent's `e` or sign whatever it is. A float ending in `.`, or in a character taken into its
/// exponent, ends without such a read.
fn reads_past_end(kind: Kind, text: &str) -> usize {
    match kind {
        Kind::Ident | Kind::Bool => 1,
        Kind::Number if text.trim_start_matches('-').starts_with('0') => 1,
        Kind::Number => 2,
        Kind::Float => usize::from(text.ends_with(is_decimal) || exponent_is_open(text)),
        _ => 0,
    }
}

/// Whether a float ends in its exponent's `e` or sign (`1e`, `1.5e+`). A float that starts with
/// `.` takes an `e` without an exponent (see `scan_dot_float`).
fn exponent_is_open(text: &str) -> bool {
    let exponent = text.find(['e', 'E']).and_then(|e| text.get(e + 1..));
    !text.starts_with('.') && exponent.is_some_and(|rest| matches!(rest, "" | "+" | "-"))
}

/// Whether `line` closes a heredoc opened with `anchor` (as written after `<<`: `EOF` or
/// `-EOF`). HCL1 matches the line against `^[[:space:]]*NAME\r*$`, but only once the line is at
/// least as long as the anchor, so a bare `EOF` does not close a `<<-EOF` heredoc.
fn closes_heredoc(line: &str, anchor: &str) -> bool {
    if line.len() < anchor.len() {
        return false;
    }
    let name = anchor.strip_prefix('-').unwrap_or(anchor);
    // The anchor itself may end in '\r' (see `scan_heredoc`); `\r*` takes any further ones.
    let (name, name_returns) = split_trailing_returns(name);
    let (line, line_returns) = split_trailing_returns(line);
    line_returns >= name_returns
        && line.strip_suffix(name).is_some_and(|indent| indent.chars().all(is_posix_space))
}

fn split_trailing_returns(text: &str) -> (&str, usize) {
    let trimmed = text.trim_end_matches('\r');
    (trimmed, text.len() - trimmed.len())
}

/// The value of a heredoc, from the lines before the closing one (`body`, each ending in a
/// newline) and the closing line, computed as HCL1 does: it cuts the anchor's length off the
/// end of the closing line and keeps the rest. So an indented closing anchor leaves its
/// indentation at the end of a `<<` heredoc, and is the indentation that `<<-` strips.
fn heredoc_value(body: &str, closing: &str, anchor: &str) -> String {
    let closing = closing.as_bytes();
    let bytes = match anchor.strip_prefix('-') {
        None => {
            let kept = closing.get(..closing.len().saturating_sub(anchor.len())).unwrap_or_default();
            [body.as_bytes(), kept].concat()
        }
        Some(name) => {
            let indent = closing.get(..closing.len().saturating_sub(name.len())).unwrap_or_default();
            unindent(body.as_bytes(), indent)
        }
    };
    // The cut can fall inside a character when the closing line ends in extra '\r's.
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Strips `indent` from the start of every line of a `<<-` heredoc's `body` when all carry it.
/// Otherwise HCL1 keeps the body as written, plus the closing indentation minus one byte, and
/// trims trailing blanks.
fn unindent(body: &[u8], indent: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    // The body is empty or ends in a newline: the split's last piece is empty.
    lines.pop();
    let stripped: Option<Vec<&[u8]>> = lines.iter().map(|line| line.strip_prefix(indent)).collect();
    if let Some(lines) = stripped {
        return lines.iter().flat_map(|line| line.iter().chain(b"\n")).copied().collect();
    }
    let indent = indent.get(..indent.len().saturating_sub(1)).unwrap_or_default();
    let mut bytes = [body, indent].concat();
    while bytes.last().is_some_and(|&b| b == b' ' || b == b'\t') {
        bytes.pop();
    }
    bytes
}

/// A NUMBER or FLOAT token that Go's `strconv` cannot convert, in its words:
/// `strconv.ParseInt: parsing "09": invalid syntax`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strconv.{function}: parsing {text:?}: {reason}")]
struct LiteralError {
    /// `ParseInt` or `ParseFloat`.
    function: &'static str,
    /// The token.
    text: String,
    /// Why it does not convert.
    reason: LiteralFault,
}

/// Why a literal does not convert, as Go's `strconv.NumError` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum LiteralFault {
    /// Not a number in the base its prefix names (`09` is octal).
    #[error("invalid syntax")]
    Syntax,
    /// Beyond `i64`, or an infinite float.
    #[error("value out of range")]
    Range,
}

/// Converts a NUMBER token as Go's `strconv.ParseInt(text, 0, 64)` does, for what the scanner
/// makes: an optional `-`, then `0x` and hex digits, `0` and octal digits, or decimal digits.
fn parse_integer(text: &str) -> Result<i64, LiteralError> {
    let failure = |reason| LiteralError { function: "ParseInt", text: text.to_owned(), reason };
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(unsigned) => (true, unsigned),
        None => (false, text),
    };
    let (radix, digits) = if let Some(hex) = unsigned.strip_prefix("0x").or(unsigned.strip_prefix("0X")) {
        (16, hex)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (8, unsigned)
    } else {
        (10, unsigned)
    };
    let magnitude = u64::from_str_radix(digits, radix).map_err(|error| match error.kind() {
        std::num::IntErrorKind::PosOverflow => failure(LiteralFault::Range),
        _ => failure(LiteralFault::Syntax),
    })?;
    let value = if negative { 0_i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    value.ok_or_else(|| failure(LiteralFault::Range))
}

/// Converts a FLOAT token as Go's `strconv.ParseFloat(text, 64)` does.
fn parse_float(text: &str) -> Result<Number, LiteralError> {
    let failure = |reason| LiteralError { function: "ParseFloat", text: text.to_owned(), reason };
    let value: f64 = text.parse().map_err(|_| failure(LiteralFault::Syntax))?;
    // Only an infinity has no JSON number; Go reports those as out of range.
    Number::from_f64(value).ok_or_else(|| failure(LiteralFault::Range))
}

/// A quotation of source text for an error message, cut short at `ERROR_QUOTE_MAX` characters.
fn excerpt(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(ERROR_QUOTE_MAX) {
        Some((end, _)) => Cow::Owned(format!("{}...", text.get(..end).unwrap_or_default())),
        None => Cow::Borrowed(text),
    }
}

fn push_char(bytes: &mut Vec<u8>, ch: char) {
    bytes.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
}

/// The error for a character HCL1's scanner refuses wherever it appears.
fn forbidden(ch: char) -> Option<&'static str> {
    match ch {
        '\0' => Some("unexpected null character (0x00)"),
        '\u{E123}' => Some("unicode code point U+E123 reserved for internal use"),
        _ => None,
    }
}

fn is_whitespace(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\n' | '\r')
}

fn is_decimal(ch: char) -> bool {
    ch.is_ascii_digit()
}

/// A character that may start an identifier.
fn is_letter(ch: char) -> bool {
    ch.is_ascii_alphabetic() || ch == '_' || (!ch.is_ascii() && ch.is_alphabetic())
}

fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && ch.is_numeric())
}

/// Go's `[[:space:]]`.
fn is_posix_space(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// How deeply objects, lists and labels may nest. Consul's deepest settings (a sidecar proxy's
/// upstream config, `auto_config.authorization.static`) sit well under ten levels. The bound
/// keeps the recursive descent, and the recursive drop of its result, far from the end of the
/// stack on hostile input; `serde_json` applies the same limit to the JSON form.
const NESTING_MAX: usize = 128;

/// How many characters of a token or of a key an error message quotes. An error inside nested
/// lists is quoted again at every level, so unbounded quotes would grow as length times depth.
const ERROR_QUOTE_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> Value {
        match parse(text) {
            Ok(object) => Value::Object(object),
            Err(error) => panic!("{text:?} failed: {error}"),
        }
    }

    fn failure(text: &str) -> String {
        match parse(text) {
            Ok(object) => panic!("{text:?} parsed as {}", Value::Object(object)),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn scalars_become_json_scalars() {
        let text = r#"
            s = "text"
            i = 8500
            negative = -5
            hex = 0x1F
            octal = 0644
            zero = 0
            float = 1.5
            fraction = .5
            exponent = 1e10
            signed_exponent = -1.5e-3
            trailing_dot = 5.
            yes = true
            no = false
        "#;
        let expected = json!({
            "s": "text", "i": 8500, "negative": -5, "hex": 31, "octal": 420, "zero": 0,
            "float": 1.5, "fraction": 0.5, "exponent": 1e10, "signed_exponent": -1.5e-3,
            "trailing_dot": 5.0, "yes": true, "no": false,
        });
        assert_eq!(parsed(text), expected);
        assert!(parsed("x = 1")["x"].is_i64());
        assert!(parsed("x = 1.0")["x"].is_f64());
    }

    #[test]
    fn integers_span_i64() {
        assert_eq!(parsed("x = 9223372036854775807"), json!({"x": i64::MAX}));
        assert_eq!(parsed("x = -9223372036854775808"), json!({"x": i64::MIN}));
        assert_eq!(parsed("x = -0x10"), json!({"x": -16}));
        assert_eq!(
            failure("x = 9223372036854775808"),
            r#"At 1:5: strconv.ParseInt: parsing "9223372036854775808": value out of range"#
        );
    }

    #[test]
    fn only_lower_case_bools_and_no_bare_words() {
        // Reference: consul-dialect.md §3.2 (`x = TRUE`, `x = foo`).
        assert_eq!(failure("x = TRUE"), "At 1:5: Unknown token: 1:5 IDENT TRUE");
        assert_eq!(failure("x = foo"), "At 1:5: Unknown token: 1:5 IDENT foo");
        assert_eq!(failure("x = true1"), "At 1:5: Unknown token: 1:5 IDENT true1");
    }

    #[test]
    fn blocks_and_assigned_objects_are_objects() {
        // Reference: consul-dialect.md §3.2, each a valid HCL1 document that HCL2 refuses.
        let expected = json!({"ports": {"http": 8500, "dns": 8600}});
        assert_eq!(parsed("ports {\n http = 8500,\n dns = 8600\n}"), expected);
        assert_eq!(parsed("ports { http = 8500, dns = 8600 }"), expected);
        assert_eq!(parsed("ports = { http = 8500, dns = 8600, }"), expected);
        assert_eq!(parsed("a {}\nb = {}"), json!({"a": {}, "b": {}}));
        assert_eq!(parsed("a { b { c { d = 1 } } }"), json!({"a": {"b": {"c": {"d": 1}}}}));
    }

    #[test]
    fn items_are_separated_by_newlines_nothing_or_a_comma() {
        assert_eq!(parsed("a = 1,\nb = 2"), json!({"a": 1, "b": 2}));
        assert_eq!(parsed("a = 1 b = 2"), json!({"a": 1, "b": 2}));
        assert_eq!(parsed("a = 1, b = 2,"), json!({"a": 1, "b": 2}));
        assert_eq!(parsed("a {}, b = [], c = \"\","), json!({"a": {}, "b": [], "c": ""}));
        assert_eq!(failure("a = 1,,"), "At 1:7: expected: IDENT | STRING | ASSIGN | LBRACE got: COMMA");
        assert_eq!(failure(", a = 1"), "At 1:1: expected: IDENT | STRING | ASSIGN | LBRACE got: COMMA");
    }

    #[test]
    fn keys_are_identifiers_or_quoted_strings() {
        assert_eq!(parsed(r#""node_name" = "x""#), json!({"node_name": "x"}));
        assert_eq!(parsed(r#""a b\t" = 1"#), json!({"a b\t": 1}));
        assert_eq!(
            parsed("disable_compat_1.9 = true\nAccess-Control-Allow-Origin = \"*\"\n_x = 1"),
            json!({"disable_compat_1.9": true, "Access-Control-Allow-Origin": "*", "_x": 1})
        );
        assert_eq!(failure("true = 1"), "At 1:1: expected: IDENT | STRING | ASSIGN | LBRACE got: BOOL");
    }

    #[test]
    fn a_repeated_scalar_keeps_the_last_value() {
        // Reference: consul-dialect.md §2.5, "same scalar twice in one HCL file: last wins".
        assert_eq!(parsed("datacenter = \"a\"\ndatacenter = \"b\""), json!({"datacenter": "b"}));
        assert_eq!(parsed("a = 1\nb = 2\na = 3"), json!({"a": 3, "b": 2}));
    }

    #[test]
    fn repeated_blocks_accumulate_into_a_list() {
        // Reference: consul-dialect.md §2.5, two `service {}` blocks make a list.
        let text = "service { name = \"a\" }\nservice { name = \"b\" }\nservice = { name = \"c\" }";
        let expected = json!({"service": [{"name": "a"}, {"name": "b"}, {"name": "c"}]});
        assert_eq!(parsed(text), expected);
        assert_eq!(parsed("service { name = \"a\" }"), json!({"service": {"name": "a"}}));
        let nested = "a { b { x = 1 } b { x = 2 } }";
        assert_eq!(parsed(nested), json!({"a": {"b": [{"x": 1}, {"x": 2}]}}));
    }

    #[test]
    fn labels_nest_and_merge_by_label() {
        assert_eq!(parsed(r#"service "web" { port = 80 }"#), json!({"service": {"web": {"port": 80}}}));
        assert_eq!(parsed("a b c { x = 1 }"), json!({"a": {"b": {"c": {"x": 1}}}}));
        let text = r#"
            a "b" { x = 1 }
            other = true
            a "c" { y = 2 }
            a "b" "d" { z = 3 }
            a "e" "f" {}
            a "e" "g" {}
        "#;
        // Under `b`, a plain block and a labelled one: objects, so they accumulate.
        let expected = json!({
            "a": {"b": [{"x": 1}, {"d": {"z": 3}}], "c": {"y": 2}, "e": {"f": {}, "g": {}}},
            "other": true,
        });
        assert_eq!(parsed(text), expected);
    }

    #[test]
    fn a_repeated_label_accumulates_its_blocks() {
        let text = "sink \"a\" { n = 1 }\nsink \"b\" { n = 2 }\nsink \"a\" { n = 3 }";
        let expected = json!({"sink": {"a": [{"n": 1}, {"n": 3}], "b": {"n": 2}}});
        assert_eq!(parsed(text), expected);
    }

    #[test]
    fn values_of_a_repeated_key_combine_as_hcl1_decodes_them() {
        // HCL1's decoder appends a repeated list and mixes objects into a list.
        assert_eq!(parsed("a = [1]\na = [2, 3]"), json!({"a": [1, 2, 3]}));
        assert_eq!(parsed("a = [{x = 1}]\na { y = 1 }"), json!({"a": [{"x": 1}, {"y": 1}]}));
        assert_eq!(parsed("a { x = 1 }\na = [{ y = 1 }]"), json!({"a": [{"x": 1}, {"y": 1}]}));
        assert_eq!(parsed("a {}\na {}\na = [1]"), json!({"a": [{}, {}, 1]}));
        assert_eq!(parsed("a \"b\" {}\na { x = 1 }"), json!({"a": [{"b": {}}, {"x": 1}]}));
        // Where HCL1's decoder coerces or fails, the later value wins.
        assert_eq!(parsed("a { x = 1 }\na = \"s\""), json!({"a": "s"}));
        assert_eq!(parsed("a = \"s\"\na = 1"), json!({"a": 1}));
        assert_eq!(parsed("a = 1\na \"b\" {}"), json!({"a": {"b": {}}}));
    }

    #[test]
    fn lists_hold_any_values() {
        let text = "x = [\"a\", 1, 1.5, true, [2, [3]], { k = \"v\" }, <<EOF\nh\nEOF\n, ]";
        let expected = json!({"x": ["a", 1, 1.5, true, [2, [3]], {"k": "v"}, "h\n"]});
        assert_eq!(parsed(text), expected);
        assert_eq!(parsed("x = []"), json!({"x": []}));
        assert_eq!(parsed("x = [\n  1,\n  2\n]"), json!({"x": [1, 2]}));
    }

    #[test]
    fn lists_need_commas_between_items_as_hcl1_counts_them() {
        assert_eq!(
            failure("x = [1 2]"),
            "At 1:8: error parsing list, expected comma or list end, got: NUMBER"
        );
        // HCL1 skips extra commas, and wants none after a nested list.
        assert_eq!(parsed("x = [1,,2]"), json!({"x": [1, 2]}));
        assert_eq!(parsed("x = [,]"), json!({"x": []}));
        assert_eq!(parsed("x = [[1] [2] 3]"), json!({"x": [[1], [2], 3]}));
        assert_eq!(
            failure("x = [1 [2]]"),
            "At 1:8: error parsing list, expected comma or list end, got: LBRACK"
        );
    }

    #[test]
    fn comments_are_skipped() {
        let text = "# hash\na = 1 // slashes\n/* block\n spans lines */ b = /* inline */ 2 # end";
        assert_eq!(parsed(text), json!({"a": 1, "b": 2}));
        assert_eq!(parsed("/* a /* b */ c = 1"), json!({"c": 1}));
        assert_eq!(failure("/* open"), "At 1:8: comment not terminated");
        assert_eq!(failure("x = 1 / 2"), "At 1:7: expected '/' for comment");
    }

    #[test]
    fn strings_decode_escapes() {
        let text = r#"x = "\a\b\f\n\r\t\v\\\" \101\x41\u0041\U0001F600 \303\251\xc3\xa9 \ud800""#;
        let expected = "\u{7}\u{8}\u{c}\n\r\t\u{b}\\\" AAA\u{1F600} éé \u{FFFD}";
        assert_eq!(parsed(text), json!({"x": expected}));
        assert_eq!(parsed(r#"x = "\xff""#), json!({"x": "\u{FFFD}"}));
        assert_eq!(parsed("x = \"é\""), json!({"x": "é"}));
    }

    #[test]
    fn interpolations_are_kept_as_written() {
        let text = "x = \"a ${b(\"c\", {d})} \\t ${e\\t\nf} $${g}\"";
        assert_eq!(parsed(text), json!({"x": "a ${b(\"c\", {d})} \t ${e\\t\nf} $${g}"}));
        assert_eq!(parsed(r#"x = "$""#), json!({"x": "$"}));
    }

    #[test]
    fn bad_strings_are_errors() {
        assert_eq!(failure("x = \"ab\nc\""), "At 1:8: literal not terminated");
        assert_eq!(failure("x = \"abc"), "At 1:9: literal not terminated");
        assert_eq!(failure(r#"x = "\q""#), "At 1:7: illegal char escape");
        assert_eq!(failure(r#"x = "\x4""#), "At 1:9: illegal char escape");
        assert_eq!(failure(r#"x = "\$""#), "At 1:7: illegal char escape");
        assert_eq!(failure("x = \"a\\x4"), "At 1:11: literal not terminated");
        // HCL1 scans these but panics decoding them.
        assert_eq!(failure(r#"x = "\777""#), "At 1:6: illegal char escape");
        assert_eq!(failure(r#"x = "\U00110000""#), "At 1:6: illegal char escape");
    }

    #[test]
    fn heredocs_keep_their_final_newline() {
        assert_eq!(parsed("x = <<EOF\nline 1\n  line 2\nEOF\n"), json!({"x": "line 1\n  line 2\n"}));
        assert_eq!(parsed("x = <<EOF\nEOF\n"), json!({"x": ""}));
        assert_eq!(parsed("x = <<EOF\nEOFX\n EOF2\nEOF\n"), json!({"x": "EOFX\n EOF2\n"}));
        assert_eq!(parsed("x = <<EOF\r\na\r\nEOF\r\ny = 1"), json!({"x": "a\n", "y": 1}));
        // HCL1 cuts only the anchor off an indented closing line: the indentation stays.
        assert_eq!(parsed("x = <<EOF\na\n  EOF\n"), json!({"x": "a\n  "}));
    }

    #[test]
    fn indented_heredocs_strip_the_closing_lines_indentation() {
        assert_eq!(parsed("x = <<-EOF\n    a\n      b\n    EOF\n"), json!({"x": "a\n  b\n"}));
        assert_eq!(parsed("x = <<-EOF\n\ta\n\tEOF\n"), json!({"x": "a\n"}));
        // A line with less indentation: HCL1 keeps the lines and trims the closing indentation.
        assert_eq!(parsed("x = <<-EOF\n  a\n b\n  EOF\n"), json!({"x": "  a\n b\n"}));
        assert_eq!(parsed("x = <<-EOF\n  a\n\n  b\n  EOF\n"), json!({"x": "  a\n\n  b\n"}));
    }

    #[test]
    fn heredocs_close_only_as_hcl1_closes_them() {
        // The closing anchor must end in a newline.
        assert_eq!(failure("x = <<EOF\na\nEOF"), "At 3:4: heredoc not terminated");
        // HCL1 wants the closing line of `<<-EOF` at least as long as `-EOF`.
        assert_eq!(failure("x = <<-EOF\na\nEOF\n"), "At 4:1: heredoc not terminated");
        assert_eq!(failure("x = <"), "At 1:6: heredoc expected second '<', didn't see it");
        assert_eq!(failure("x = <<EOF x\na\nEOF\n"), "At 1:10: invalid characters in heredoc anchor");
        assert_eq!(failure("x = <<\na\n"), "At 1:7: zero-length heredoc anchor");
        assert_eq!(failure("x = <<-\na\n"), "At 1:8: zero-length heredoc anchor");
    }

    #[test]
    fn a_document_starting_with_a_brace_is_json() {
        let text = " \n{\"ports\": {\"http\": 8500}, \"tags\": [\"a\"], \"x\": 1.5}";
        assert_eq!(parsed(text), json!({"ports": {"http": 8500}, "tags": ["a"], "x": 1.5}));
        let error = parse("{\n  \"a\": 1,\n}").expect_err("a trailing comma is not JSON");
        assert_eq!((error.line, error.column), (3, 1));
        assert_eq!(error.message, "trailing comma");
    }

    #[test]
    fn consul_documentation_example() {
        let text = r#"
dns_config { enable_truncate = true, only_passing = true }
telemetry {
  prometheus_retention_time = "60s"
  disable_hostname = true
}
service {
  name = "web"
  tags = ["rails", "v1",]
  port = 80
  check { id = "web-http", http = "http://localhost/health", interval = "10s" }
}
"#;
        let expected = json!({
            "dns_config": {"enable_truncate": true, "only_passing": true},
            "telemetry": {"prometheus_retention_time": "60s", "disable_hostname": true},
            "service": {
                "name": "web",
                "tags": ["rails", "v1"],
                "port": 80,
                "check": {"id": "web-http", "http": "http://localhost/health", "interval": "10s"},
            },
        });
        assert_eq!(parsed(text), expected);
    }

    #[test]
    fn empty_documents_are_empty_objects() {
        assert_eq!(parsed(""), json!({}));
        assert_eq!(parsed(" \n\t\r\n"), json!({}));
        assert_eq!(parsed("# nothing\n// here\n/* at all */"), json!({}));
    }

    #[test]
    fn errors_read_and_point_as_in_hcl1() {
        // Each message and position is what hashicorp/hcl v1.0.0 reports for the same input.
        let cases = [
            ("foo", "At 1:5: key 'foo' expected start of object ('{') or assignment ('=')"),
            ("foo bar", "At 1:9: key 'foo bar' expected start of object ('{') or assignment ('=')"),
            ("a {\n  foo\n}", "At 3:1: key 'foo' expected start of object ('{') or assignment ('=')"),
            ("foo bar = 1", "At 1:9: nested object expected: LBRACE got: ASSIGN"),
            ("a \"b\" = {}", "At 1:7: nested object expected: LBRACE got: ASSIGN"),
            ("= 1", "At 1:1: no object keys found!"),
            ("}", "At 1:1: expected: IDENT | STRING | ASSIGN | LBRACE got: RBRACE"),
            ("a = 1 }", "At 1:7: expected: IDENT | STRING | ASSIGN | LBRACE got: RBRACE"),
            ("a { 1 }", "At 1:5: expected: IDENT | STRING | ASSIGN | LBRACE got: NUMBER"),
            ("x = 1 2", "At 1:7: expected: IDENT | STRING | ASSIGN | LBRACE got: NUMBER"),
            ("x = {} = 1", "At 1:8: no object keys found!"),
            ("a { {} }", "At 1:5: expected: IDENT | STRING got: LBRACE"),
            ("x = [a]", "At 1:6: unexpected token while parsing list: IDENT"),
            ("x = [1", "At 1:9: error parsing list, expected comma or list end, got: EOF"),
            ("x = [[1]", "At 1:9: unexpected token while parsing list: EOF"),
            ("x = [{a=1} {b=2}]", "At 1:12: error parsing list, expected comma or list end, got: LBRACE"),
            (
                "x = [[1 2]]",
                "At 1:6: error while trying to parse list within list: \
                 At 1:9: error parsing list, expected comma or list end, got: NUMBER",
            ),
            (
                "x = [{a=}]",
                "At 1:6: error while trying to parse object within list: \
                 At 1:10: object expected closing RBRACE got: RBRACK",
            ),
            ("a {", "At 1:5: object expected closing RBRACE got: EOF"),
            ("ports {\n  http = 8500\n", "At 3:2: object expected closing RBRACE got: EOF"),
            ("x = +1", "At 1:5: Unknown token: 1:5 ADD +"),
            ("x = - 1", "At 1:5: Unknown token: 1:5 SUB -"),
            ("x = .", "At 1:5: Unknown token: 1:5 PERIOD ."),
            ("x = @", "At 1:5: illegal char"),
            ("x = 0x", "At 1:7: illegal hexadecimal number"),
            ("x = 089", "At 1:8: illegal octal number"),
            ("x = 1.5.5", "At 1:8: expected: IDENT | STRING | ASSIGN | LBRACE got: FLOAT"),
            ("x = .5e3", "At 1:8: expected: IDENT | STRING | ASSIGN | LBRACE got: NUMBER"),
        ];
        for (text, expected) in cases {
            assert_eq!(failure(text), expected, "{text:?}");
        }
    }

    #[test]
    fn an_error_at_a_stray_brace_gives_way_to_the_missing_one() {
        // HCL1 drops an error raised at a `}` and then looks for the object's own `}`.
        assert_eq!(failure("ports {\n  http =\n}"), "At 3:2: object expected closing RBRACE got: EOF");
        assert_eq!(
            failure("ports {\n  http =\n}\nserver = true"),
            "At 4:1: object expected closing RBRACE got: IDENT"
        );
        assert_eq!(parsed("a { x = 1, y = } }"), json!({"a": {"x": 1}}));
        assert_eq!(parsed("a { x = [1 } }"), json!({"a": {}}));
        // At the top level there is no object to close.
        assert_eq!(failure("x = }"), "At 1:5: Unknown token: 1:5 RBRACE }");
    }

    #[test]
    fn a_dangling_assignment_at_the_end_is_ignored() {
        assert_eq!(parsed("a = 1\nb ="), json!({"a": 1}));
        assert_eq!(failure("a { b ="), "At 1:9: object expected closing RBRACE got: EOF");
    }

    #[test]
    fn literals_that_do_not_convert_fail_once_the_document_parses() {
        assert_eq!(failure("x = 09"), r#"At 1:5: strconv.ParseInt: parsing "09": invalid syntax"#);
        assert_eq!(failure("x = 1e"), r#"At 1:5: strconv.ParseFloat: parsing "1e": invalid syntax"#);
        assert_eq!(failure("x = 1ee"), r#"At 1:5: strconv.ParseFloat: parsing "1ee": invalid syntax"#);
        assert_eq!(
            failure("x = 1e400"),
            r#"At 1:5: strconv.ParseFloat: parsing "1e400": value out of range"#
        );
        // A syntax error anywhere takes precedence, as in HCL1.
        assert_eq!(failure("x = 99999999999999999999\ny = @"), "At 2:5: illegal char");
        assert_eq!(failure("x = \"\\777\"\ny = }"), "At 2:5: Unknown token: 2:5 RBRACE }");
    }

    #[test]
    fn forbidden_characters_are_errors() {
        assert_eq!(failure("x = 1\0"), "At 1:6: unexpected null character (0x00)");
        assert_eq!(failure("x = \"a\0\""), "At 1:7: unexpected null character (0x00)");
        assert_eq!(failure("\u{feff}x = 1"), "At 1:1: illegal char");
    }

    #[test]
    fn nesting_is_bounded() {
        let lists = |depth: usize| format!("x = {}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse(&lists(NESTING_MAX)).is_ok());
        assert!(failure(&lists(NESTING_MAX + 1)).contains("nested deeper than 128"));
        let objects = |depth: usize| format!("{}{}", "a {".repeat(depth), "}".repeat(depth));
        assert!(parse(&objects(NESTING_MAX)).is_ok());
        assert!(failure(&objects(NESTING_MAX + 1)).contains("nested deeper than 128"));
        let labels = |count: usize| format!("a {} {{}}", "b ".repeat(count));
        assert!(parse(&labels(NESTING_MAX - 1)).is_ok());
        assert!(failure(&labels(NESTING_MAX)).contains("nested deeper than 128"));
        // Far deeper input fails at the limit instead of exhausting the stack.
        assert!(parse(&"x = [".repeat(100_000)).is_err());
        assert!(parse(&"a {".repeat(100_000)).is_err());
    }

    #[test]
    fn error_messages_quote_long_tokens_in_part() {
        let key = "k".repeat(1000);
        let message = failure(&key);
        assert!(message.starts_with(&format!("At 1:1002: key '{}...'", "k".repeat(ERROR_QUOTE_MAX))));
    }

    #[test]
    fn no_prefix_of_a_document_panics() {
        let text = "a \"b\" { c = [1, 2.5e3, \"s\\u00e9${x}\", <<-EOF\n  h\n  EOF\n, { d = 0x1f }] } # e\n";
        for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
            let _ = parse(&text[..end]);
            let _ = parse(&text[end..]);
        }
    }

    #[test]
    fn errors_display_as_hcl1_displays_them() {
        let error = ParseError { line: 3, column: 7, message: "oops".to_owned() };
        assert_eq!(error.to_string(), "At 3:7: oops");
    }
}
