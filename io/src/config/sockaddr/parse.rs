//! The `text/template` subset go-sockaddr templates use: the lexer, the parser, and the tree of
//! text, actions, pipelines and commands they build.

use std::fmt;

use super::error::{Fault, SyntaxError};
use super::eval::Func;
use super::{ACTIONS_MAX, GO_SPACE, OPERANDS_MAX, PAREN_DEPTH_MAX, PIPELINE_COMMANDS_MAX};

pub(super) enum Node {
    Text(String),
    Action(Pipeline),
}

pub(super) struct Pipeline {
    pub(super) commands: Vec<Command>,
}

pub(super) struct Command {
    /// First operand is the function (or a lone value); the rest are its arguments.
    pub(super) operands: Vec<Operand>,
}

pub(super) struct Operand {
    pub(super) pos: usize,
    pub(super) kind: OperandKind,
}

pub(super) enum OperandKind {
    Func(Func),
    /// A string literal: its value and its source text (Go prints the latter in errors).
    Str(String, String),
    Int(i64, String),
    Bool(bool),
    Dot,
    Pipe(Pipeline),
}

impl Pipeline {
    pub(super) fn pos(&self) -> usize {
        self.commands.first().map_or(0, Command::pos)
    }
}

impl Command {
    pub(super) fn pos(&self) -> usize {
        self.operands.first().map_or(0, |o| o.pos)
    }
}

impl OperandKind {
    pub(super) fn is_literal(&self) -> bool {
        matches!(self, OperandKind::Str(..) | OperandKind::Int(..) | OperandKind::Bool(_) | OperandKind::Dot)
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cmd) in self.commands.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{cmd}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.operands.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", op.kind)?;
        }
        Ok(())
    }
}

impl fmt::Display for OperandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperandKind::Func(func) => f.write_str(func.name()),
            OperandKind::Str(_, text) | OperandKind::Int(_, text) => f.write_str(text),
            OperandKind::Bool(b) => write!(f, "{b}"),
            OperandKind::Dot => f.write_str("."),
            OperandKind::Pipe(p) => write!(f, "({p})"),
        }
    }
}

#[derive(Debug)]
enum Tok {
    Pipe,
    LParen,
    RParen,
    Str(String, String),
    Int(i64, String),
    Bool(bool),
    Dot,
    Ident(String),
    /// The end of the action.
    Close,
}

struct Token {
    pub(super) pos: usize,
    tok: Tok,
}

/// Splits the template into text and parsed actions.
pub(super) fn parse(src: &str) -> Result<Vec<Node>, Fault> {
    let mut nodes = Vec::new();
    let mut rest_start = 0;
    let mut trim_next = false;
    let mut actions = 0usize;
    loop {
        let Some(open) = src[rest_start..].find("{{").map(|i| rest_start + i) else {
            let mut text = &src[rest_start..];
            if trim_next {
                text = text.trim_start_matches(GO_SPACE);
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_string()));
            }
            return Ok(nodes);
        };
        actions += 1;
        if actions > ACTIONS_MAX {
            return Err(Fault::parse(open, format!("more than {ACTIONS_MAX} actions")));
        }
        let mut text = &src[rest_start..open];
        if trim_next {
            text = text.trim_start_matches(GO_SPACE);
        }
        let mut pos = open + 2;
        // `{{- ` trims: the dash must be followed by a space, or it starts a negative number.
        let bytes = src.as_bytes();
        if bytes.get(pos) == Some(&b'-')
            && bytes.get(pos + 1).is_some_and(|b| GO_SPACE.contains(&char::from(*b)))
        {
            text = text.trim_end_matches(GO_SPACE);
            pos += 2;
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_string()));
        }
        if src[pos..].starts_with("/*") {
            let (end, trim) = skip_comment(src, pos)?;
            rest_start = end;
            trim_next = trim;
            continue;
        }
        let (tokens, end, trim) = lex_action(src, pos)?;
        let mut parser = Parser { toks: &tokens, i: 0, depth: 0 };
        let pipeline = parser.pipeline(false)?;
        nodes.push(Node::Action(pipeline));
        rest_start = end;
        trim_next = trim;
    }
}

/// Skips `/* ... */` followed by `}}` or ` -}}`; returns the end and whether to trim after it.
fn skip_comment(src: &str, pos: usize) -> Result<(usize, bool), Fault> {
    let Some(close) = src[pos + 2..].find("*/").map(|i| pos + 2 + i + 2) else {
        return Err(Fault::parse(pos, "unclosed comment"));
    };
    let after = &src[close..];
    if let Some(stripped) = after.strip_prefix("}}") {
        return Ok((src.len() - stripped.len(), false));
    }
    let trimmed = after.trim_start_matches(GO_SPACE);
    if trimmed.len() < after.len() {
        if let Some(stripped) = trimmed.strip_prefix("-}}") {
            return Ok((src.len() - stripped.len(), true));
        }
    }
    Err(Fault::parse(close, "comment ends before closing delimiter"))
}

/// Lexes one action starting after `{{` (and its trim marker); returns its tokens (ending in
/// `Close`), the position after `}}`, and whether the following text is trimmed.
fn lex_action(src: &str, start: usize) -> Result<(Vec<Token>, usize, bool), Fault> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = start;
    loop {
        let space_start = i;
        while i < bytes.len() && GO_SPACE.contains(&char::from(bytes[i])) {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(Fault::parse(i, "unclosed action"));
        }
        let rest = &src[i..];
        if rest.starts_with("}}") {
            toks.push(Token { pos: i, tok: Tok::Close });
            return Ok((toks, i + 2, false));
        }
        if i > space_start && rest.starts_with("-}}") {
            toks.push(Token { pos: i, tok: Tok::Close });
            return Ok((toks, i + 3, true));
        }
        let c = rest.chars().next().unwrap_or('\0');
        let next = rest[c.len_utf8()..].chars().next();
        let pos = i;
        let tok = match c {
            '|' => {
                i += 1;
                Tok::Pipe
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '"' => {
                let (value, len) = lex_quoted(rest).map_err(|m| Fault::parse(pos, m))?;
                i += len;
                Tok::Str(value, rest[..len].to_string())
            }
            '`' => {
                let Some(end) = rest[1..].find('`') else {
                    return Err(Fault::parse(pos, "unterminated raw quoted string"));
                };
                i += end + 2;
                Tok::Str(rest[1..end + 1].to_string(), rest[..end + 2].to_string())
            }
            '\'' => return Err(Fault::parse(pos, "character constants are not supported")),
            '$' => return Err(Fault::parse(pos, "variables are not supported")),
            '.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                return Err(Fault::parse(pos, "floating-point numbers are not supported"));
            }
            '.' if next.is_some_and(|n| n.is_alphanumeric() || n == '_') => {
                return Err(Fault::parse(pos, "field access is not supported"));
            }
            '.' => {
                i += 1;
                Tok::Dot
            }
            '0'..='9' | '+' | '-' if c.is_ascii_digit() || next.is_some_and(|n| n.is_ascii_digit()) => {
                let len = rest[1..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
                    .map_or(rest.len(), |n| n + 1);
                let text = &rest[..len];
                i += len;
                Tok::Int(parse_go_int(text).map_err(|m| Fault::parse(pos, m))?, text.to_string())
            }
            c if c.is_alphabetic() || c == '_' => {
                let len = rest.find(|ch: char| !(ch.is_alphanumeric() || ch == '_')).unwrap_or(rest.len());
                i += len;
                match &rest[..len] {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    word => Tok::Ident(word.to_string()),
                }
            }
            ':' | '=' => return Err(Fault::parse(pos, "variables are not supported")),
            c => return Err(Fault::parse(pos, format!("unrecognized character in action: {}", go_char(c)))),
        };
        toks.push(Token { pos, tok });
    }
}

/// Lexes a Go double-quoted string at the start of `s`; returns its value and source length.
fn lex_quoted(s: &str) -> Result<(String, usize), SyntaxError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                let simple = match e {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(ch) = simple {
                    out.push(ch);
                    continue;
                }
                let (digits, radix) = match e {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => (2, 8),
                    _ => return Err(SyntaxError::Escape),
                };
                let mut code = if radix == 8 { e.to_digit(8).unwrap_or(0) } else { 0 };
                for _ in 0..digits {
                    let Some(d) = chars.next().and_then(|(_, d)| d.to_digit(radix)) else {
                        return Err(SyntaxError::Escape);
                    };
                    code = code.saturating_mul(radix).saturating_add(d);
                }
                // `\x` and octal escapes are bytes; only ASCII ones make valid UTF-8 on their own.
                let byte_escape = e == 'x' || radix == 8;
                match char::from_u32(code) {
                    Some(ch) if !byte_escape || code < 0x80 => out.push(ch),
                    _ if byte_escape && code <= 0xff => out.push(char::REPLACEMENT_CHARACTER),
                    _ => return Err(SyntaxError::Escape),
                }
            }
            c => out.push(c),
        }
    }
    Err(SyntaxError::UnterminatedString)
}

/// Parses an integer as Go's `strconv.ParseInt(s, 0, 64)`: sign, `0x`/`0o`/`0b`/leading-0 octal.
fn parse_go_int(text: &str) -> Result<i64, SyntaxError> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    let digits = digits.replace('_', "");
    if digits.contains(['.', 'e', 'p']) && radix != 16 || digits.contains('.') {
        return Err(SyntaxError::Float);
    }
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(SyntaxError::Number(text.to_owned()));
    }
    let overflow = || SyntaxError::Overflow(text.to_owned());
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|_| overflow())?;
    let value = if neg { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    value.ok_or_else(overflow)
}

struct Parser<'a> {
    toks: &'a [Token],
    pub(super) i: usize,
    depth: usize,
}

impl Parser<'_> {
    /// Parses commands separated by `|` up to the action's end, or up to `)` when `in_paren`.
    pub(super) fn pipeline(&mut self, in_paren: bool) -> Result<Pipeline, Fault> {
        let mut commands: Vec<Command> = Vec::new();
        let mut operands: Vec<Operand> = Vec::new();
        loop {
            let Some(token) = self.toks.get(self.i) else {
                let pos = self.toks.last().map_or(0, |t| t.pos);
                return Err(Fault::parse(pos, "unclosed action"));
            };
            self.i += 1;
            let pos = token.pos;
            let kind = match &token.tok {
                Tok::Pipe | Tok::Close | Tok::RParen => {
                    let ends = match token.tok {
                        Tok::Pipe => false,
                        Tok::Close if in_paren => return Err(Fault::parse(pos, "unclosed left paren")),
                        Tok::RParen if !in_paren => {
                            return Err(Fault::parse(pos, "unexpected \")\" in command"))
                        }
                        _ => true,
                    };
                    if operands.is_empty() {
                        if !ends {
                            return Err(Fault::parse(pos, "unexpected \"|\" in command"));
                        }
                        if commands.is_empty() {
                            return Err(Fault::parse(pos, "missing value for command"));
                        }
                        // Go accepts a trailing `|` before the end of the action.
                    } else {
                        let stage = commands.len() + 1;
                        if stage > 1 && operands[0].kind.is_literal() {
                            let msg = format!("non executable command in pipeline stage {stage}");
                            return Err(Fault::parse(operands[0].pos, msg));
                        }
                        if stage > PIPELINE_COMMANDS_MAX {
                            let msg = format!("more than {PIPELINE_COMMANDS_MAX} commands in a pipeline");
                            return Err(Fault::parse(operands[0].pos, msg));
                        }
                        commands.push(Command { operands: std::mem::take(&mut operands) });
                    }
                    if ends {
                        return Ok(Pipeline { commands });
                    }
                    continue;
                }
                Tok::LParen => {
                    if self.depth >= PAREN_DEPTH_MAX {
                        return Err(Fault::parse(
                            pos,
                            format!("parentheses nested deeper than {PAREN_DEPTH_MAX}"),
                        ));
                    }
                    self.depth += 1;
                    let inner = self.pipeline(true)?;
                    self.depth -= 1;
                    OperandKind::Pipe(inner)
                }
                Tok::Str(value, text) => OperandKind::Str(value.clone(), text.clone()),
                Tok::Int(value, text) => OperandKind::Int(*value, text.clone()),
                Tok::Bool(b) => OperandKind::Bool(*b),
                Tok::Dot => OperandKind::Dot,
                Tok::Ident(word) => OperandKind::Func(Func::resolve(word).map_err(|m| Fault::parse(pos, m))?),
            };
            if operands.len() >= OPERANDS_MAX {
                return Err(Fault::parse(pos, format!("more than {OPERANDS_MAX} arguments in a command")));
            }
            operands.push(Operand { pos, kind });
        }
    }
}

/// Go's `%#U`-like rendering of a character for lexer errors: `U+0040 '@'`.
fn go_char(c: char) -> String {
    format!("U+{:04X} '{c}'", c as u32)
}
