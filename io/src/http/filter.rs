//! `?filter=`: Consul's boolean expressions (go-bexpr), the subset clients use, evaluated on the
//! JSON each endpoint answers, element by element.
//!
//! ```text
//! expr     = or
//! or       = and { "or" and }
//! and      = unary { "and" unary }
//! unary    = "not" unary | "(" expr ")" | match
//! match    = selector ("==" | "!=") value
//!          | selector ["not"] "contains" value
//!          | selector "is" ["not"] "empty"
//!          | selector ["not"] "matches" value            (a regular expression)
//!          | value ["not"] "in" selector
//! selector = name { "." name | "[" string "]" }           (Service.Tags, NodeMeta.env, Meta["a b"])
//! value    = "string" | `string` | number | true | false
//! ```
//!
//! A selector that crosses a list (`Checks.Status`) stands for the values of every element: `==`,
//! `contains`, `in` and `matches` hold if any element does, their negations if none does. A
//! selector must name a field the answer has (checked against the first element), so a typo is
//! an error, not an empty answer.

use regex::Regex;
use serde_json::Value;

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Expr,
}

/// An expression tree. `or` and `and` chains are lists, not nested pairs, so that only
/// parentheses and `not` deepen the tree, and they are bounded by [`NESTING_MAX`]: parsing,
/// evaluating and dropping it recurse no deeper than that, whatever the text.
#[derive(Debug, Clone)]
enum Expr {
    /// Holds if any term does (at least two).
    Or(Vec<Expr>),
    /// Holds if every term does (at least two).
    And(Vec<Expr>),
    /// Holds if the inner expression does not.
    Not(Box<Expr>),
    /// A selector's values put to a test.
    Match { selector: Vec<String>, test: Test, negated: bool },
}

#[derive(Debug, Clone)]
enum Test {
    Equal(Literal),
    Contains(Literal),
    Empty,
    Matches(Regex),
    In(Literal),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Equal,
    NotEqual,
    Open,
    Close,
    Dot,
    Index(String),
}

/// Why a filter is refused: Consul answers 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to create boolean expression evaluator: {0}")]
pub struct FilterError(Reason);

/// What is wrong with an expression, or with a selector for the data it filters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Reason {
    /// A character no token starts with, or `=`/`!` without `=`, at a byte offset.
    #[error("unexpected {found:?} at {at}")]
    UnexpectedChar { found: char, at: usize },
    /// A quoted string with no closing quote.
    #[error("unterminated string starting at {at}")]
    UnterminatedString { at: usize },
    /// `[` not followed by a quoted key.
    #[error("expected a quoted key after '[' at {at}")]
    IndexNotQuoted { at: usize },
    /// `["key` with no closing quote.
    #[error("unterminated index at {at}")]
    UnterminatedIndex { at: usize },
    /// `["key"` with no `]`.
    #[error("expected ']' after the index at {at}")]
    IndexNotClosed { at: usize },
    /// More than [`NESTING_MAX`] levels of `not` and parentheses.
    #[error("expression nested deeper than {NESTING_MAX} levels")]
    TooDeep,
    /// A keyword or token the grammar needs at this point is missing.
    #[error("expected {0}")]
    Missing(&'static str),
    /// Something else stands where the grammar wants `wanted`.
    #[error("expected {wanted}, found {found}")]
    Expected { wanted: &'static str, found: String },
    /// Tokens left after a whole expression.
    #[error("unexpected {0}")]
    Trailing(String),
    /// A `matches` pattern that is not a regular expression.
    #[error("{0}")]
    Regex(String),
    /// A selector naming a field the data does not have.
    #[error("Selector {0:?} is not valid")]
    UnknownSelector(String),
}

impl Reason {
    /// `wanted` was expected where `found` (a token, or the end) stands.
    fn expected(wanted: &'static str, found: Option<Token>) -> Reason {
        Reason::Expected { wanted, found: format!("{found:?}") }
    }
}

impl From<FilterError> for super::HttpError {
    fn from(error: FilterError) -> super::HttpError {
        super::HttpError::bad_request(error.to_string())
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, Reason> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '.' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Dot,
                });
            }
            '=' | '!' => {
                chars.next();
                if chars.next().map(|(_, c)| c) != Some('=') {
                    return Err(Reason::UnexpectedChar { found: c, at });
                }
                tokens.push(if c == '=' { Token::Equal } else { Token::NotEqual });
            }
            '"' | '`' => {
                chars.next();
                let mut out = String::new();
                loop {
                    match chars.next() {
                        None => return Err(Reason::UnterminatedString { at }),
                        Some((_, '\\')) if c == '"' => match chars.next() {
                            Some((_, escaped)) => out.push(escaped),
                            None => return Err(Reason::UnterminatedString { at }),
                        },
                        Some((_, end)) if end == c => break,
                        Some((_, other)) => out.push(other),
                    }
                }
                tokens.push(Token::Text(out));
            }
            '[' => {
                chars.next();
                let Some((_, quote @ ('"' | '`'))) = chars.next() else {
                    return Err(Reason::IndexNotQuoted { at });
                };
                let mut key = String::new();
                loop {
                    match chars.next() {
                        None => return Err(Reason::UnterminatedIndex { at }),
                        Some((_, end)) if end == quote => break,
                        Some((_, other)) => key.push(other),
                    }
                }
                if chars.next().map(|(_, c)| c) != Some(']') {
                    return Err(Reason::IndexNotClosed { at });
                }
                tokens.push(Token::Index(key));
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' || c == '+' => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    // Digits may carry a fraction: a dot inside a number belongs to it.
                    let in_number =
                        c == '.' && word.chars().all(|d| d.is_ascii_digit() || d == '-' || d == '+');
                    if c.is_alphanumeric()
                        || c == '_'
                        || c == '-'
                        || c == '+'
                        || (in_number && !word.is_empty())
                    {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(Reason::UnexpectedChar { found: other, at }),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// How many `not`s and parentheses enclose the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn or(&mut self) -> Result<Expr, Reason> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.pop().expect("one term") } else { Expr::Or(terms) })
    }

    fn and(&mut self) -> Result<Expr, Reason> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and") {
            self.at += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 { terms.pop().expect("one term") } else { Expr::And(terms) })
    }

    fn unary(&mut self) -> Result<Expr, Reason> {
        if !self.keyword("not") && self.peek() != Some(&Token::Open) {
            return self.matcher();
        }
        // Each level recurses: bound them, or a long enough `((((…` overflows the stack.
        if self.depth == NESTING_MAX {
            return Err(Reason::TooDeep);
        }
        self.depth += 1;
        let nested = self.unary_nested();
        self.depth -= 1;
        nested
    }

    /// `not X` or `(X)`, one level deeper.
    fn unary_nested(&mut self) -> Result<Expr, Reason> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        assert_eq!(self.next(), Some(Token::Open), "unary_nested starts at 'not' or '('");
        let inner = self.or()?;
        if self.next() != Some(Token::Close) {
            return Err(Reason::Missing("')'"));
        }
        Ok(inner)
    }

    fn matcher(&mut self) -> Result<Expr, Reason> {
        // `value [not] in selector` starts with a literal; everything else with a selector.
        let word = |offset: usize, wanted: &str| matches!(self.tokens.get(self.at + offset), Some(Token::Word(w)) if w == wanted);
        let starts_with_value = match self.peek() {
            Some(Token::Text(_)) => true,
            Some(Token::Word(w)) => {
                w.parse::<f64>().is_ok() || word(1, "in") || (word(1, "not") && word(2, "in"))
            }
            _ => false,
        };
        if starts_with_value {
            let value = self.literal()?;
            let negated = self.keyword("not");
            if negated {
                self.at += 1;
            }
            if !self.keyword("in") {
                return Err(Reason::Missing("'in' after a value"));
            }
            self.at += 1;
            let selector = self.selector()?;
            return Ok(Expr::Match { selector, test: Test::In(value), negated });
        }
        let selector = self.selector()?;
        let (test, negated) = match self.next() {
            Some(Token::Equal) => (Test::Equal(self.literal()?), false),
            Some(Token::NotEqual) => (Test::Equal(self.literal()?), true),
            Some(Token::Word(w)) if w == "contains" => (Test::Contains(self.literal()?), false),
            Some(Token::Word(w)) if w == "matches" => (Test::Matches(self.regex()?), false),
            Some(Token::Word(w)) if w == "not" => match self.next() {
                Some(Token::Word(w)) if w == "contains" => (Test::Contains(self.literal()?), true),
                Some(Token::Word(w)) if w == "matches" => (Test::Matches(self.regex()?), true),
                _ => return Err(Reason::Missing("'contains' or 'matches' after 'not'")),
            },
            Some(Token::Word(w)) if w == "is" => {
                let negated = self.keyword("not");
                if negated {
                    self.at += 1;
                }
                if !self.keyword("empty") {
                    return Err(Reason::Missing("'empty' after 'is'"));
                }
                self.at += 1;
                (Test::Empty, negated)
            }
            other => return Err(Reason::expected("an operator", other)),
        };
        Ok(Expr::Match { selector, test, negated })
    }

    fn selector(&mut self) -> Result<Vec<String>, Reason> {
        let mut path = match self.next() {
            Some(Token::Word(name)) => vec![name],
            other => return Err(Reason::expected("a selector", other)),
        };
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Word(name)) => path.push(name),
                        other => return Err(Reason::expected("a name after '.'", other)),
                    }
                }
                Some(Token::Index(key)) => {
                    path.push(key.clone());
                    self.at += 1;
                }
                _ => return Ok(path),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, Reason> {
        match self.next() {
            Some(Token::Text(text)) => Ok(Literal::Text(text)),
            Some(Token::Word(w)) if w == "true" => Ok(Literal::Bool(true)),
            Some(Token::Word(w)) if w == "false" => Ok(Literal::Bool(false)),
            Some(Token::Word(w)) => match w.parse::<f64>() {
                Ok(number) => Ok(Literal::Number(number)),
                // go-bexpr takes a bare word as a string value.
                Err(_) => Ok(Literal::Text(w)),
            },
            other => Err(Reason::expected("a value", other)),
        }
    }

    fn regex(&mut self) -> Result<Regex, Reason> {
        match self.literal()? {
            Literal::Text(pattern) => Regex::new(&pattern).map_err(|e| Reason::Regex(e.to_string())),
            other => Err(Reason::Expected { wanted: "a regular expression", found: format!("{other:?}") }),
        }
    }
}

impl Filter {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = tokenize(text).map_err(FilterError)?;
        let mut parser = Parser { tokens, at: 0, depth: 0 };
        let root = parser.or().map_err(FilterError)?;
        if parser.at < parser.tokens.len() {
            return Err(FilterError(Reason::Trailing(format!("{:?}", parser.tokens[parser.at]))));
        }
        Ok(Filter { root })
    }

    /// Parses `?filter`, if the query has one (a bad one is Consul's 400).
    pub fn from_query(query: &super::Query) -> Result<Option<Filter>, super::HttpError> {
        Ok(query.get("filter").map(Filter::parse).transpose()?)
    }

    /// Filters an answer: the elements of a list, or the values of a map (the agent's services
    /// and checks); anything else is left as it is.
    pub fn apply_to(&self, answer: Value) -> Result<Value, super::HttpError> {
        match answer {
            Value::Array(items) => Ok(Value::Array(self.apply(items)?)),
            Value::Object(map) => {
                let (keys, values): (Vec<String>, Vec<Value>) = map.into_iter().unzip();
                let Some(first) = values.first() else { return Ok(Value::Object(serde_json::Map::new())) };
                self.root.check_selectors(first).map_err(FilterError)?;
                let kept = keys.into_iter().zip(values).filter(|(_, v)| self.root.holds(v)).collect();
                Ok(Value::Object(kept))
            }
            other => Ok(other),
        }
    }

    /// Keeps the elements of `items` the expression holds for; a selector naming a field the
    /// first element lacks is an error.
    pub fn apply(&self, items: Vec<Value>) -> Result<Vec<Value>, FilterError> {
        if let Some(first) = items.first() {
            self.root.check_selectors(first).map_err(FilterError)?;
        }
        Ok(items.into_iter().filter(|item| self.root.holds(item)).collect())
    }
}

impl Expr {
    fn check_selectors(&self, sample: &Value) -> Result<(), Reason> {
        match self {
            Expr::Or(terms) | Expr::And(terms) => {
                terms.iter().try_for_each(|term| term.check_selectors(sample))
            }
            Expr::Not(inner) => inner.check_selectors(sample),
            Expr::Match { selector, .. } => match sample {
                Value::Object(fields) if !fields.contains_key(&selector[0]) => {
                    Err(Reason::UnknownSelector(selector.join(".")))
                }
                _ => Ok(()),
            },
        }
    }

    fn holds(&self, item: &Value) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|term| term.holds(item)),
            Expr::And(terms) => terms.iter().all(|term| term.holds(item)),
            Expr::Not(inner) => !inner.holds(item),
            Expr::Match { selector, test, negated } => {
                let mut values = Vec::new();
                select(item, selector, &mut values);
                let found = match test {
                    Test::Empty => values.iter().all(|v| is_empty(v)),
                    Test::Equal(literal) => values.iter().any(|v| equals(v, literal)),
                    Test::Contains(literal) | Test::In(literal) => {
                        values.iter().any(|v| contains(v, literal))
                    }
                    Test::Matches(regex) => {
                        values.iter().any(|v| v.as_str().is_some_and(|s| regex.is_match(s)))
                    }
                };
                found != *negated
            }
        }
    }
}

/// The values a selector reaches, fanning out over lists.
fn select<'a>(value: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(value);
        return;
    };
    match value {
        Value::Object(fields) => match fields.get(first) {
            Some(next) => select(next, rest, out),
            None => out.push(&Value::Null),
        },
        Value::Array(items) => {
            for item in items {
                select(item, path, out);
            }
        }
        _ => out.push(&Value::Null),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

fn equals(value: &Value, literal: &Literal) -> bool {
    match (value, literal) {
        (Value::String(s), Literal::Text(t)) => s == t,
        (Value::String(s), Literal::Number(n)) => s.parse::<f64>().is_ok_and(|v| v == *n),
        (Value::String(s), Literal::Bool(b)) => s == &b.to_string(),
        (Value::Number(v), Literal::Number(n)) => v.as_f64() == Some(*n),
        (Value::Number(v), Literal::Text(t)) => t.parse::<f64>().is_ok_and(|n| v.as_f64() == Some(n)),
        (Value::Bool(v), Literal::Bool(b)) => v == b,
        (Value::Bool(v), Literal::Text(t)) => t == &v.to_string(),
        (Value::Null, Literal::Text(t)) => t.is_empty(),
        _ => false,
    }
}

/// `contains`/`in`: a list holds an equal element, a map has the key, a string the substring.
fn contains(value: &Value, literal: &Literal) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| equals(item, literal)),
        Value::Object(fields) => matches!(literal, Literal::Text(t) if fields.contains_key(t)),
        Value::String(s) => matches!(literal, Literal::Text(t) if s.contains(t.as_str())),
        _ => false,
    }
}

/// How deeply `not`s and parentheses may nest. Filters written by hand nest a few levels; the
/// bound keeps the parser's recursion (a few stack frames a level) far from the 2 MiB stack of
/// the runtime's worker threads.
const NESTING_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn instances() -> Vec<Value> {
        vec![
            json!({"Node": {"Node": "a", "Meta": {"env": "prod"}}, "Service": {"Tags": ["rails", "v1"], "Port": 80},
                   "Checks": [{"Status": "passing"}, {"Status": "passing"}]}),
            json!({"Node": {"Node": "b", "Meta": {"env": "dev"}}, "Service": {"Tags": [], "Port": 8080},
                   "Checks": [{"Status": "passing"}, {"Status": "critical"}]}),
        ]
    }

    fn nodes(expression: &str) -> Vec<String> {
        let filter = Filter::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
        let kept = filter.apply(instances()).unwrap_or_else(|e| panic!("{expression}: {e}"));
        kept.iter().map(|v| v["Node"]["Node"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn the_common_operators_select_as_go_bexpr_does() {
        assert_eq!(nodes(r#""rails" in Service.Tags"#), ["a"]);
        assert_eq!(nodes(r#""rails" not in Service.Tags"#), ["b"]);
        assert_eq!(nodes(r#"Service.Tags contains "v1""#), ["a"]);
        assert_eq!(nodes("Service.Tags is empty"), ["b"]);
        assert_eq!(nodes("Service.Tags is not empty"), ["a"]);
        assert_eq!(nodes("Service.Port == 8080"), ["b"]);
        assert_eq!(nodes(r#"Node.Meta.env == "prod""#), ["a"]);
        assert_eq!(nodes(r#"Node.Meta["env"] != prod"#), ["b"]);
        assert_eq!(nodes(r#"Node.Node matches "^[ab]$" and not (Node.Node == "a")"#), ["b"]);
        assert_eq!(nodes(r#"Checks.Status == critical"#), ["b"], "any check");
        assert_eq!(nodes(r#"Checks.Status != critical"#), ["a"], "no check");
        assert_eq!(nodes(r#"Node.Node == "a" or Service.Port == 8080"#), ["a", "b"]);
        assert_eq!(nodes(r#"Node.Node == `b`"#), ["b"]);
    }

    #[test]
    fn bad_expressions_and_unknown_selectors_are_errors() {
        for bad in [
            "Service.Port ==",
            "(Node.Node == \"a\"",
            "Node.Node = \"a\"",
            "\"a\" Node",
            "Node.Node matches \"(\"",
        ] {
            let refused = Filter::parse(bad).unwrap_err().to_string();
            assert!(
                refused.starts_with("Failed to create boolean expression evaluator: "),
                "{bad}: {refused}"
            );
        }
        let filter = Filter::parse(r#"Servcie.Port == 80"#).unwrap();
        assert_eq!(
            filter.apply(instances()).unwrap_err().to_string(),
            "Failed to create boolean expression evaluator: Selector \"Servcie.Port\" is not valid"
        );
    }

    /// Found by fuzz_targets/filter.rs: `?filter=((((…` a hundred thousand levels deep, or a
    /// chain of a hundred thousand `and`s, overflowed the stack (parsing, evaluating and
    /// dropping the tree all recursed once a level) and took the agent down.
    #[test]
    fn deep_nesting_is_refused_and_long_chains_do_not_recurse() {
        let deep = format!("{}Node.Node == \"a\"{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(
            Filter::parse(&deep).unwrap_err().to_string(),
            "Failed to create boolean expression evaluator: expression nested deeper than 64 levels"
        );
        assert!(Filter::parse(&format!("{}Node.Node == \"a\"", "not ".repeat(100_000))).is_err());
        let nested = format!("{}Node.Node == \"a\"{}", "(".repeat(64), ")".repeat(64));
        assert_eq!(nodes(&nested), ["a"], "64 levels are allowed");
        let chain = vec![r#"Node.Node != "c""#; 100_000].join(" and ");
        assert_eq!(nodes(&chain), ["a", "b"]);
        let chain = vec![r#"Node.Node == "c""#; 100_000].join(" or ");
        assert!(nodes(&chain).is_empty());
    }
}
