//! The parser: Go's `text/template/parse/parse.go` and the node types of `node.go`.
//!
//! It reads the lexer's items through the same three-item look-ahead buffer as Go, so that an
//! error names the same line Go names (Go reports the line of the furthest item read).

use std::collections::BTreeMap;

use super::lex::{lex, Item, ItemKind};
use super::{ParseError, PARSE_DEPTH_MAX};

/// A list of nodes: a template body, or the body of an `if`/`range`/`with`.
#[derive(Clone, Debug, Default)]
pub(super) struct List {
    pub(super) nodes: Vec<Node>,
}

/// A statement-level node.
#[derive(Clone, Debug)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    If(Control),
    Range(Control),
    With(Control),
    Template { pos: usize, name: String, pipe: Option<Pipe> },
    Break { pos: usize },
    Continue { pos: usize },
}

/// The shared shape of `if`, `range` and `with`.
#[derive(Clone, Debug)]
pub(super) struct Control {
    pub(super) pipe: Pipe,
    pub(super) list: List,
    pub(super) else_list: Option<List>,
}

/// A pipeline, with its optional variable declarations.
#[derive(Clone, Debug)]
pub(super) struct Pipe {
    pub(super) pos: usize,
    pub(super) is_assign: bool,
    pub(super) decl: Vec<String>,
    pub(super) cmds: Vec<Command>,
}

/// One stage of a pipeline: a function (or field, or constant) and its arguments.
#[derive(Clone, Debug)]
pub(super) struct Command {
    pub(super) pos: usize,
    pub(super) args: Vec<Arg>,
}

/// An operand.
#[derive(Clone, Debug)]
pub(super) enum Arg {
    Field { pos: usize, idents: Vec<String> },
    Variable { pos: usize, idents: Vec<String> },
    Chain { pos: usize, node: Box<Arg>, fields: Vec<String> },
    Identifier { pos: usize, name: String },
    Dot { pos: usize },
    Nil { pos: usize },
    Bool { pos: usize, value: bool },
    Number { pos: usize, number: Number },
    String { pos: usize, quoted: String, text: String },
    Pipe(Box<Pipe>),
}

/// A numeric constant with every interpretation Go's `NumberNode` records.
#[derive(Clone, Debug, Default)]
pub(super) struct Number {
    pub(super) text: String,
    pub(super) int: Option<i64>,
    pub(super) uint: Option<u64>,
    pub(super) float: Option<f64>,
}

impl Arg {
    pub(super) fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::String { pos, .. } => *pos,
            Arg::Pipe(pipe) => pipe.pos,
        }
    }
}

impl std::fmt::Display for Arg {
    /// Go's `Node.String()`, used in error contexts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Field { idents, .. } => {
                for ident in idents {
                    write!(f, ".{ident}")?;
                }
                Ok(())
            }
            Arg::Variable { idents, .. } => write!(f, "{}", idents.join(".")),
            Arg::Chain { node, fields, .. } => {
                match node.as_ref() {
                    Arg::Pipe(p) => write!(f, "({p})")?,
                    other => write!(f, "{other}")?,
                }
                for field in fields {
                    write!(f, ".{field}")?;
                }
                Ok(())
            }
            Arg::Identifier { name, .. } => write!(f, "{name}"),
            Arg::Dot { .. } => write!(f, "."),
            Arg::Nil { .. } => write!(f, "nil"),
            Arg::Bool { value, .. } => write!(f, "{value}"),
            Arg::Number { number, .. } => write!(f, "{}", number.text),
            Arg::String { quoted, .. } => write!(f, "{quoted}"),
            Arg::Pipe(p) => write!(f, "{p}"),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            match arg {
                Arg::Pipe(p) => write!(f, "({p})")?,
                other => write!(f, "{other}")?,
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            write!(f, "{}", self.decl.join(", "))?;
            write!(f, "{}", if self.is_assign { " = " } else { " := " })?;
        }
        for (i, cmd) in self.cmds.iter().enumerate() {
            if i > 0 {
                write!(f, " | ")?;
            }
            write!(f, "{cmd}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for List {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for node in &self.nodes {
            write!(f, "{node}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let control = |f: &mut std::fmt::Formatter<'_>, word: &str, c: &Control| {
            write!(f, "{{{{{word} {}}}}}{}", c.pipe, c.list)?;
            if let Some(e) = &c.else_list {
                write!(f, "{{{{else}}}}{e}")?;
            }
            write!(f, "{{{{end}}}}")
        };
        match self {
            Node::Text(text) => write!(f, "{}", crate::go_quote::quote(text)),
            Node::Action(pipe) => write!(f, "{{{{{pipe}}}}}"),
            Node::If(c) => control(f, "if", c),
            Node::Range(c) => control(f, "range", c),
            Node::With(c) => control(f, "with", c),
            Node::Template { name, pipe: None, .. } => {
                write!(f, "{{{{template {}}}}}", crate::go_quote::quote(name))
            }
            Node::Template { name, pipe: Some(p), .. } => {
                write!(f, "{{{{template {} {p}}}}}", crate::go_quote::quote(name))
            }
            Node::Break { .. } => write!(f, "{{{{break}}}}"),
            Node::Continue { .. } => write!(f, "{{{{continue}}}}"),
        }
    }
}

/// What `itemList` stopped on.
enum ListEnd {
    End,
    Else,
}

/// Whether a function name exists, asked while parsing (Go checks at parse time).
pub(super) type FunctionCheck = fn(&str) -> bool;

/// Parses `text` into its trees: the main one under `name`, plus every `define` and `block`.
pub(super) fn parse(
    name: &str,
    text: &str,
    delims: (&str, &str),
    has_function: FunctionCheck,
) -> Result<BTreeMap<String, List>, ParseError> {
    let items = lex(text, delims.0, delims.1);
    let mut parser = Parser {
        parse_name: name.to_string(),
        items,
        next_item: 0,
        token: Vec::new(),
        peek_count: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        depth: 0,
        action_line: 0,
        has_function,
        trees: BTreeMap::new(),
    };
    parser.token = vec![parser.items[0].clone(), parser.items[0].clone(), parser.items[0].clone()];
    let root = parser.parse_top()?;
    parser.add(name, root)?;
    Ok(parser.trees)
}

struct Parser {
    parse_name: String,
    items: Vec<Item>,
    next_item: usize,
    token: Vec<Item>,
    peek_count: usize,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    action_line: usize,
    has_function: FunctionCheck,
    trees: BTreeMap<String, List>,
}

type PResult<T> = Result<T, ParseError>;

impl Parser {
    fn lex_next(&mut self) -> Item {
        let item = self.items.get(self.next_item).or(self.items.last()).cloned();
        self.next_item += 1;
        // SAFETY-INVARIANT: `lex` always returns at least the final EOF or error item.
        item.expect("lexer returns at least one item")
    }

    fn next(&mut self) -> Item {
        if self.peek_count > 0 {
            self.peek_count -= 1;
        } else {
            self.token[0] = self.lex_next();
        }
        self.token[self.peek_count].clone()
    }

    fn backup(&mut self) {
        self.peek_count += 1;
    }

    fn backup2(&mut self, t1: Item) {
        self.token[1] = t1;
        self.peek_count = 2;
    }

    fn backup3(&mut self, t2: Item, t1: Item) {
        self.token[1] = t1;
        self.token[2] = t2;
        self.peek_count = 3;
    }

    fn peek(&mut self) -> Item {
        if self.peek_count > 0 {
            return self.token[self.peek_count - 1].clone();
        }
        self.peek_count = 1;
        self.token[0] = self.lex_next();
        self.token[0].clone()
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.kind != ItemKind::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn error<T>(&self, message: impl Into<String>) -> PResult<T> {
        Err(ParseError { name: self.parse_name.clone(), line: self.token[0].line, message: message.into() })
    }

    fn unexpected<T>(&self, token: &Item, context: &str) -> PResult<T> {
        if token.kind == ItemKind::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != token.line {
                extra = format!(" in action started at {}:{}", self.parse_name, self.action_line);
                if token.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.error(format!("{}{extra}", token.describe()));
        }
        self.error(format!("unexpected {} in {context}", token.describe()))
    }

    fn expect(&mut self, kind: ItemKind, context: &str) -> PResult<Item> {
        let token = self.next_non_space();
        if token.kind != kind {
            return self.unexpected(&token, context);
        }
        Ok(token)
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > PARSE_DEPTH_MAX {
            return self.error(format!("max nesting depth {PARSE_DEPTH_MAX} exceeded"));
        }
        Ok(())
    }

    fn add(&mut self, name: &str, root: List) -> PResult<()> {
        match self.trees.get(name) {
            Some(existing) if !is_empty_tree(existing) => {
                if !is_empty_tree(&root) {
                    return self.error(format!(
                        "template: multiple definition of template {}",
                        crate::go_quote::quote(name)
                    ));
                }
            }
            _ => {
                self.trees.insert(name.to_string(), root);
            }
        }
        Ok(())
    }

    fn parse_top(&mut self) -> PResult<List> {
        let mut root = List::default();
        while self.peek().kind != ItemKind::Eof {
            if self.peek().kind == ItemKind::LeftDelim {
                let delim = self.next();
                if self.next_non_space().kind == ItemKind::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.backup2(delim);
            }
            match self.text_or_action()? {
                Ok(node) => root.nodes.push(node),
                Err(ListEnd::End) => return self.error("unexpected {{end}}"),
                Err(ListEnd::Else) => return self.error("unexpected {{else}}"),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let token = self.next_non_space();
        if token.kind != ItemKind::String && token.kind != ItemKind::RawString {
            return self.unexpected(&token, CONTEXT);
        }
        let name = self.unquote(&token.val)?;
        self.expect(ItemKind::RightDelim, CONTEXT)?;
        // A definition is a tree of its own: the enclosing variables and ranges are not visible.
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_range_depth = std::mem::replace(&mut self.range_depth, 0);
        let listed = self.item_list();
        self.vars = saved_vars;
        self.range_depth = saved_range_depth;
        let (list, end) = listed?;
        if let ListEnd::Else = end {
            return self.error(format!("unexpected {{{{else}}}} in {CONTEXT}"));
        }
        self.add(&name, list)
    }

    fn unquote(&self, quoted: &str) -> PResult<String> {
        match unquote(quoted) {
            Some(s) => Ok(s),
            None => self.error("invalid syntax"),
        }
    }

    /// Go's `itemList`: nodes up to an `{{end}}` or `{{else}}`.
    fn item_list(&mut self) -> PResult<(List, ListEnd)> {
        self.enter()?;
        let mut list = List::default();
        while self.peek_non_space().kind != ItemKind::Eof {
            match self.text_or_action()? {
                Ok(node) => list.nodes.push(node),
                Err(end) => {
                    self.depth -= 1;
                    return Ok((list, end));
                }
            }
        }
        self.error("unexpected EOF")
    }

    /// A node, or the `end`/`else` that closes the enclosing list. A comment yields `Text("")`
    /// which is dropped by the caller's printing (it prints nothing).
    fn text_or_action(&mut self) -> PResult<Result<Node, ListEnd>> {
        let token = self.next_non_space();
        match token.kind {
            ItemKind::Text => Ok(Ok(Node::Text(token.val))),
            ItemKind::LeftDelim => {
                self.action_line = token.line;
                let node = self.action();
                self.action_line = 0;
                node
            }
            _ => self.unexpected(&token, "input"),
        }
    }

    fn action(&mut self) -> PResult<Result<Node, ListEnd>> {
        let token = self.next_non_space();
        match token.kind {
            ItemKind::Block => return self.block_control().map(Ok),
            ItemKind::Break => return self.loop_control(token.pos, "{{break}}").map(Ok),
            ItemKind::Continue => return self.loop_control(token.pos, "{{continue}}").map(Ok),
            ItemKind::Else => return self.else_control().map(Err),
            ItemKind::End => {
                self.expect(ItemKind::RightDelim, "end")?;
                return Ok(Err(ListEnd::End));
            }
            ItemKind::If => return self.control("if").map(|c| Ok(Node::If(c))),
            ItemKind::Range => return self.control("range").map(|c| Ok(Node::Range(c))),
            ItemKind::Template => return self.template_control().map(Ok),
            ItemKind::With => return self.control("with").map(|c| Ok(Node::With(c))),
            _ => {}
        }
        self.backup();
        let pipe = self.pipeline("command", ItemKind::RightDelim)?;
        Ok(Ok(Node::Action(pipe)))
    }

    fn loop_control(&mut self, pos: usize, context: &str) -> PResult<Node> {
        let token = self.next_non_space();
        if token.kind != ItemKind::RightDelim {
            return self.unexpected(&token, context);
        }
        if self.range_depth == 0 {
            return self.error(format!("{context} outside {{{{range}}}}"));
        }
        Ok(if context == "{{break}}" { Node::Break { pos } } else { Node::Continue { pos } })
    }

    fn else_control(&mut self) -> PResult<ListEnd> {
        let peek = self.peek_non_space();
        if peek.kind == ItemKind::If || peek.kind == ItemKind::With {
            return Ok(ListEnd::Else);
        }
        self.expect(ItemKind::RightDelim, "else")?;
        Ok(ListEnd::Else)
    }

    fn control(&mut self, context: &str) -> PResult<Control> {
        let vars_len = self.vars.len();
        let result = self.control_inner(context);
        self.vars.truncate(vars_len);
        result
    }

    fn control_inner(&mut self, context: &str) -> PResult<Control> {
        let pipe = self.pipeline(context, ItemKind::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let listed = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, end) = listed?;
        let mut else_list = None;
        if let ListEnd::Else = end {
            if context == "if" && self.peek().kind == ItemKind::If {
                self.next();
                self.enter()?;
                let nested = self.control("if")?;
                self.depth -= 1;
                else_list = Some(List { nodes: vec![Node::If(nested)] });
            } else if context == "with" && self.peek().kind == ItemKind::With {
                // Go 1.23's `{{else with}}`; older Go rejects it (see the report).
                self.next();
                self.enter()?;
                let nested = self.control("with")?;
                self.depth -= 1;
                else_list = Some(List { nodes: vec![Node::With(nested)] });
            } else {
                let (list, end) = self.item_list()?;
                if let ListEnd::Else = end {
                    return self.error("expected end; found {{else}}");
                }
                else_list = Some(list);
            }
        }
        Ok(Control { pipe, list, else_list })
    }

    fn block_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "block clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, ItemKind::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_range_depth = std::mem::replace(&mut self.range_depth, 0);
        let listed = self.item_list();
        self.vars = saved_vars;
        self.range_depth = saved_range_depth;
        let (list, end) = listed?;
        if let ListEnd::Else = end {
            return self.error(format!("unexpected {{{{else}}}} in {CONTEXT}"));
        }
        self.add(&name, list)?;
        Ok(Node::Template { pos: token.pos, name, pipe: Some(pipe) })
    }

    fn template_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "template clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, CONTEXT)?;
        let mut pipe = None;
        if self.next_non_space().kind != ItemKind::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(CONTEXT, ItemKind::RightDelim)?);
        }
        Ok(Node::Template { pos: token.pos, name, pipe })
    }

    fn template_name(&self, token: &Item, context: &str) -> PResult<String> {
        match token.kind {
            ItemKind::String | ItemKind::RawString => self.unquote(&token.val),
            _ => self.unexpected(token, context),
        }
    }

    fn pipeline(&mut self, context: &str, end: ItemKind) -> PResult<Pipe> {
        self.enter()?;
        let token = self.peek_non_space();
        let mut pipe = Pipe { pos: token.pos, is_assign: false, decl: Vec::new(), cmds: Vec::new() };
        self.pipeline_decls(&mut pipe, context)?;
        loop {
            let token = self.next_non_space();
            match token.kind {
                k if k == end => {
                    self.check_pipeline(&pipe, context)?;
                    self.depth -= 1;
                    return Ok(pipe);
                }
                ItemKind::Bool
                | ItemKind::CharConstant
                | ItemKind::Complex
                | ItemKind::Dot
                | ItemKind::Field
                | ItemKind::Identifier
                | ItemKind::Number
                | ItemKind::Nil
                | ItemKind::RawString
                | ItemKind::String
                | ItemKind::Variable
                | ItemKind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&token, context),
            }
        }
    }

    fn pipeline_decls(&mut self, pipe: &mut Pipe, context: &str) -> PResult<()> {
        loop {
            let v = self.peek_non_space();
            if v.kind != ItemKind::Variable {
                return Ok(());
            }
            self.next();
            let after = self.peek();
            let next = self.peek_non_space();
            if next.kind == ItemKind::Assign || next.kind == ItemKind::Declare {
                pipe.is_assign = next.kind == ItemKind::Assign;
                self.next_non_space();
                pipe.decl.push(v.val.clone());
                self.vars.push(v.val);
                return Ok(());
            }
            if next.kind == ItemKind::Char && next.val == "," {
                self.next_non_space();
                pipe.decl.push(v.val.clone());
                self.vars.push(v.val);
                if context == "range" && pipe.decl.len() < 2 {
                    match self.peek_non_space().kind {
                        ItemKind::Variable | ItemKind::RightDelim | ItemKind::RightParen => continue,
                        _ => return self.error("range can only initialize variables"),
                    }
                }
                return self.error(format!("too many declarations in {context}"));
            }
            if after.kind == ItemKind::Space {
                self.backup3(v, after);
            } else {
                self.backup2(v);
            }
            return Ok(());
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return self.error(format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool { .. }
                    | Arg::Dot { .. }
                    | Arg::Nil { .. }
                    | Arg::Number { .. }
                    | Arg::String { .. }
            ) {
                return self.error(format!("non executable command in pipeline stage {}", i + 1));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Command> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Command { pos, args: Vec::new() };
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                cmd.args.push(operand);
            }
            let token = self.next();
            match token.kind {
                ItemKind::Space => continue,
                ItemKind::RightDelim | ItemKind::RightParen => self.backup(),
                ItemKind::Pipe => {}
                _ => return self.unexpected(&token, "operand"),
            }
            break;
        }
        if cmd.args.is_empty() {
            return self.error("empty command");
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != ItemKind::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == ItemKind::Field {
            let val = self.next().val;
            fields.extend(val[1..].split('.').map(str::to_string));
        }
        Ok(Some(match node {
            Arg::Field { idents, .. } => {
                let mut idents = idents;
                idents.extend(fields);
                Arg::Field { pos, idents }
            }
            Arg::Variable { idents, .. } => {
                let mut idents = idents;
                idents.extend(fields);
                Arg::Variable { pos, idents }
            }
            Arg::Bool { .. }
            | Arg::String { .. }
            | Arg::Number { .. }
            | Arg::Nil { .. }
            | Arg::Dot { .. } => {
                return self
                    .error(format!("unexpected . after term {}", crate::go_quote::quote(&node.to_string())));
            }
            other => Arg::Chain { pos, node: Box::new(other), fields },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let token = self.next_non_space();
        let pos = token.pos;
        let arg = match token.kind {
            ItemKind::Identifier => {
                if !(self.has_function)(&token.val) {
                    return self
                        .error(format!("function {} not defined", crate::go_quote::quote(&token.val)));
                }
                Arg::Identifier { pos, name: token.val }
            }
            ItemKind::Dot => Arg::Dot { pos },
            ItemKind::Nil => Arg::Nil { pos },
            ItemKind::Variable => self.use_var(pos, &token.val)?,
            ItemKind::Field => {
                Arg::Field { pos, idents: token.val[1..].split('.').map(str::to_string).collect() }
            }
            ItemKind::Bool => Arg::Bool { pos, value: token.val == "true" },
            ItemKind::CharConstant | ItemKind::Complex | ItemKind::Number => {
                let number = match parse_number(&token.val, token.kind) {
                    Ok(n) => n,
                    Err(message) => return self.error(message),
                };
                Arg::Number { pos, number }
            }
            ItemKind::LeftParen => {
                Arg::Pipe(Box::new(self.pipeline("parenthesized pipeline", ItemKind::RightParen)?))
            }
            ItemKind::String | ItemKind::RawString => {
                let text = self.unquote(&token.val)?;
                Arg::String { pos, quoted: token.val, text }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(arg))
    }

    fn use_var(&self, pos: usize, name: &str) -> PResult<Arg> {
        let idents: Vec<String> = name.split('.').map(str::to_string).collect();
        if self.vars.iter().any(|v| *v == idents[0]) {
            return Ok(Arg::Variable { pos, idents });
        }
        self.error(format!("undefined variable {}", crate::go_quote::quote(&idents[0])))
    }
}

/// Go's `IsEmptyTree`: only whitespace text and comments.
fn is_empty_tree(list: &List) -> bool {
    list.nodes
        .iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim_matches(|c: char| c.is_whitespace()).is_empty()))
}

/// Go's `NumberNode` construction (`newNumber`): every reading of the literal that succeeds.
fn parse_number(text: &str, kind: ItemKind) -> Result<Number, String> {
    let mut n = Number { text: text.to_string(), ..Number::default() };
    if kind == ItemKind::CharConstant {
        let value = unquote_char(text).ok_or_else(|| format!("malformed character constant: {text}"))?;
        n.int = Some(i64::from(value));
        n.uint = Some(u64::from(value));
        n.float = Some(f64::from(value));
        return Ok(n);
    }
    if kind == ItemKind::Complex || text.ends_with('i') {
        return Err(format!("complex constants are not supported: {text}"));
    }
    let uint = parse_go_uint(text);
    let int = parse_go_int(text);
    n.uint = uint;
    if let Some(i) = int {
        n.int = Some(i);
        if i == 0 {
            n.uint = Some(0);
        }
        n.float = Some(i as f64);
    } else if let Some(u) = uint {
        n.float = Some(u as f64);
    } else if let Some(f) = parse_go_float(text) {
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!("integer overflow: {}", crate::go_quote::quote(text)));
        }
        n.float = Some(f);
        if f.fract() == 0.0 && (-9.223372036854776e18..9.223372036854776e18).contains(&f) {
            n.int = Some(f as i64);
        }
        if f.fract() == 0.0 && (0.0..1.8446744073709552e19).contains(&f) {
            n.uint = Some(f as u64);
        }
    }
    if n.int.is_none() && n.uint.is_none() && n.float.is_none() {
        return Err(format!("illegal number syntax: {}", crate::go_quote::quote(text)));
    }
    Ok(n)
}

/// Splits a Go integer literal (base prefix rules of `strconv.ParseInt(s, 0, 64)`) into sign,
/// radix and digits, with underscores checked and removed.
fn split_go_int(text: &str) -> Option<(bool, u32, String)> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    if !underscores_ok(digits, prefixed) {
        return None;
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    Some((negative, radix, digits))
}

/// Go allows `_` only between digits, or right after a base prefix.
fn underscores_ok(digits: &str, prefixed: bool) -> bool {
    let mut last_underscore = false;
    let mut seen_digit = prefixed;
    for c in digits.chars() {
        if c == '_' {
            if !seen_digit || last_underscore {
                return false;
            }
            last_underscore = true;
        } else {
            seen_digit = true;
            last_underscore = false;
        }
    }
    !last_underscore
}

fn parse_go_uint(text: &str) -> Option<u64> {
    let (negative, radix, digits) = split_go_int(text)?;
    if negative || text.starts_with('+') {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

fn parse_go_int(text: &str) -> Option<i64> {
    let (negative, radix, digits) = split_go_int(text)?;
    let magnitude = u128::from_str_radix(&digits, radix).ok()?;
    let value = if negative { -(magnitude as i128) } else { magnitude as i128 };
    i64::try_from(value).ok()
}

/// `strconv.ParseFloat(s, 64)` for the literals the lexer can produce: decimal (with
/// underscores between digits) and hexadecimal (`0x1p-2`) floats.
pub(super) fn parse_go_float(text: &str) -> Option<f64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let value = if let Some(hex) = lower.strip_prefix("0x") {
        parse_hex_float(hex)?
    } else {
        if !underscores_ok(&lower, false) || lower.contains("_.") || lower.contains("._") {
            return None;
        }
        let plain: String = lower.chars().filter(|c| *c != '_').collect();
        if plain.is_empty()
            || plain.starts_with(|c: char| c.is_alphabetic())
            || plain.contains("inf")
            || plain.contains("nan")
        {
            return None;
        }
        plain.parse::<f64>().ok()?
    };
    Some(if negative { -value } else { value })
}

fn parse_hex_float(hex: &str) -> Option<f64> {
    let (mantissa, exponent) = match hex.split_once('p') {
        Some((m, e)) => (m, e.replace('_', "").parse::<i32>().ok()?),
        None => return None,
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int_part = int_part.replace('_', "");
    let frac_part = frac_part.replace('_', "");
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in int_part.chars().chain(frac_part.chars()) {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let shift = exponent - 4 * i32::try_from(frac_part.len()).ok()?;
    Some(value * 2f64.powi(shift))
}

/// Go's `strconv.Unquote` for `"..."` and `` `...` `` strings.
pub(super) fn unquote(quoted: &str) -> Option<String> {
    if quoted.len() >= 2 && quoted.starts_with('`') && quoted.ends_with('`') {
        return Some(quoted[1..quoted.len() - 1].replace('\r', ""));
    }
    if quoted.len() < 2 || !quoted.starts_with('"') || !quoted.ends_with('"') {
        return None;
    }
    let body = &quoted[1..quoted.len() - 1];
    let mut out = String::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (c, tail) = unquote_one(rest, '"')?;
        out.push_str(&c);
        rest = tail;
    }
    Some(out)
}

/// Go's `strconv.UnquoteChar` applied to a whole `'x'` literal.
fn unquote_char(text: &str) -> Option<u32> {
    let body = text.strip_prefix('\'')?;
    let (c, tail) = unquote_one(body, '\'')?;
    if tail != "'" {
        return None;
    }
    let mut chars = c.chars();
    let first = chars.next()?;
    // A `\xNN` byte escape yields one byte that may not be a char on its own.
    if chars.next().is_some() {
        return None;
    }
    Some(first as u32)
}

/// One (possibly escaped) character from the front of `s`.
fn unquote_one(s: &str, quote: char) -> Option<(String, &str)> {
    let c = s.chars().next()?;
    if c == quote && quote == '\'' {
        return None;
    }
    if c == quote || c == '\n' {
        return None;
    }
    if c != '\\' {
        return Some((c.to_string(), &s[c.len_utf8()..]));
    }
    let rest = &s[1..];
    let e = rest.chars().next()?;
    let after = &rest[e.len_utf8()..];
    let simple = match e {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        '\'' | '"' if e == quote => Some(e),
        _ => None,
    };
    if let Some(c) = simple {
        return Some((c.to_string(), after));
    }
    let hex_len = match e {
        'x' => 2,
        'u' => 4,
        'U' => 8,
        '0'..='7' => {
            let digits = rest.get(..3)?;
            let v = u32::from_str_radix(digits, 8).ok()?;
            if v > 255 {
                return None;
            }
            return Some((char::from_u32(v)?.to_string(), &rest[3..]));
        }
        _ => return None,
    };
    let digits = after.get(..hex_len)?;
    let v = u32::from_str_radix(digits, 16).ok()?;
    Some((char::from_u32(v)?.to_string(), &after[hex_len..]))
}
