//! SCIM filters (RFC 7644 §3.4.2.2): a recursive-descent parser into an AST, an evaluator over
//! JSON resources, and a printer whose output parses back to the same AST.
//!
//! ```text
//! filter    = term *("or" term)
//! term      = factor *("and" factor)
//! factor    = "not" "(" filter ")" / "(" filter ")" / attrPath "[" filter "]"
//!           / attrPath "pr" / attrPath compareOp compValue
//! attrPath  = [URI ":"] attrName ["." subAttr]
//! ```
//!
//! Operators and attribute names match in any case; string comparisons follow the attribute's
//! `caseExact`. Every error is a 400 `invalidFilter` naming what was expected and where.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use crate::schema::{self, Kind, Type};
use crate::{Result, ScimError, ScimType};

/// Longest filter accepted, in bytes, and deepest nesting: bounds on what a client can make
/// the parser do.
pub const MAX_FILTER_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

/// `[URI ":"] name ["." sub]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Parses a bare attribute path (no filter), as `sortBy` and PATCH paths carry.
    pub fn parse(input: &str) -> std::result::Result<AttrPath, String> {
        let (uri, rest) = match input.get(..4) {
            Some(prefix) if prefix.eq_ignore_ascii_case("urn:") => match input.rfind(':') {
                Some(at) => (
                    Some(input.get(..at).unwrap_or_default().to_owned()),
                    input.get(at + 1..).unwrap_or_default(),
                ),
                None => (None, input),
            },
            _ => (None, input),
        };
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        let valid = |s: &str| {
            let mut chars = s.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !valid(name) || sub.is_some_and(|s| !valid(s)) {
            return Err(format!("{input:?} is not an attribute path"));
        }
        Ok(AttrPath { uri, name: name.to_owned(), sub: sub.map(str::to_owned) })
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    const ALL: [(Op, &'static str); 9] = [
        (Op::Eq, "eq"),
        (Op::Ne, "ne"),
        (Op::Co, "co"),
        (Op::Sw, "sw"),
        (Op::Ew, "ew"),
        (Op::Gt, "gt"),
        (Op::Ge, "ge"),
        (Op::Lt, "lt"),
        (Op::Le, "le"),
    ];

    fn parse(word: &str) -> Option<Op> {
        Op::ALL.iter().find(|(_, name)| name.eq_ignore_ascii_case(word)).map(|(op, _)| *op)
    }

    fn as_str(self) -> &'static str {
        Op::ALL.iter().find(|(op, _)| *op == self).map_or("eq", |(_, name)| name)
    }
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, Value),
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`.
    ValuePath(AttrPath, Box<Filter>),
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::And(a, b) => write!(f, "({a} and {b})"),
            Filter::Or(a, b) => write!(f, "({a} or {b})"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Compare(path, op, value) => write!(f, "{path} {} {value}", op.as_str()),
            Filter::ValuePath(path, inner) => write!(f, "{path}[{inner}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Literal(Value),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, detail)
}

fn tokenize(input: &str) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
            }
            '"' => {
                // A JSON string: find its end (a quote not escaped), then let serde decode it.
                chars.next();
                let mut escaped = false;
                let mut end = None;
                for (i, ch) in chars.by_ref() {
                    match (escaped, ch) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end
                    .ok_or_else(|| invalid(format!("the string starting at character {at} is not closed")))?;
                let raw = input.get(at..=end).unwrap_or_default();
                let value: Value = serde_json::from_str(raw).map_err(|_| {
                    invalid(format!("the string starting at character {at} is not a valid JSON string"))
                })?;
                tokens.push(Token::Literal(value));
            }
            _ => {
                let mut end = at;
                while let Some(&(i, ch)) = chars.peek() {
                    if ch.is_whitespace() || "()[]\"".contains(ch) {
                        break;
                    }
                    end = i + ch.len_utf8();
                    chars.next();
                }
                let word = input.get(at..end).unwrap_or_default();
                let literal = match word.to_ascii_lowercase().as_str() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    "null" => Some(Value::Null),
                    _ if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') => Some(
                        serde_json::from_str::<serde_json::Number>(word)
                            .map(Value::Number)
                            .map_err(|_| invalid(format!("{word:?} at character {at} is not a number")))?,
                    ),
                    _ => None,
                };
                tokens.push(match literal {
                    Some(value) => Token::Literal(value),
                    None => Token::Word(word.to_owned()),
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, token: &Token, what: &str) -> Result<()> {
        match self.next() {
            Some(ref t) if t == token => Ok(()),
            Some(other) => Err(invalid(format!("expected {what}, found {}", describe(&other)))),
            None => Err(invalid(format!("expected {what}, found the end of the filter"))),
        }
    }

    fn filter(&mut self) -> Result<Filter> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(format!("the filter nests deeper than {MAX_DEPTH} levels")));
        }
        let mut left = self.term()?;
        while self.keyword("or") {
            self.next();
            left = Filter::Or(Box::new(left), Box::new(self.term()?));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn term(&mut self) -> Result<Filter> {
        let mut left = self.factor()?;
        while self.keyword("and") {
            self.next();
            left = Filter::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Filter> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.filter()?;
                self.expect(&Token::Close, "\")\"")?;
                Ok(inner)
            }
            // `not` is the operator only before "(": elsewhere it is an attribute's name
            // (`not pr`, `not[value pr]`).
            Some(Token::Word(word))
                if word.eq_ignore_ascii_case("not") && matches!(self.peek(), Some(Token::Open)) =>
            {
                self.expect(&Token::Open, "\"(\" after not")?;
                let inner = self.filter()?;
                self.expect(&Token::Close, "\")\"")?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Some(Token::Word(word)) => {
                let path = AttrPath::parse(&word).map_err(invalid)?;
                match self.next() {
                    Some(Token::OpenBracket) => {
                        if path.sub.is_some() {
                            return Err(invalid(format!(
                                "{path}[…]: a value filter applies to an attribute, not a sub-attribute"
                            )));
                        }
                        let inner = self.filter()?;
                        self.expect(&Token::CloseBracket, "\"]\"")?;
                        Ok(Filter::ValuePath(path, Box::new(inner)))
                    }
                    Some(Token::Word(op)) if op.eq_ignore_ascii_case("pr") => Ok(Filter::Present(path)),
                    Some(Token::Word(op)) => {
                        let op = Op::parse(&op).ok_or_else(|| {
                            invalid(format!("{op:?} is not an operator (eq ne co sw ew gt ge lt le pr)"))
                        })?;
                        match self.next() {
                            Some(Token::Literal(value)) => Ok(Filter::Compare(path, op, value)),
                            Some(other) => Err(invalid(format!(
                                "expected a value after {path} {}, found {}; strings are in double quotes",
                                op.as_str(),
                                describe(&other)
                            ))),
                            None => Err(invalid(format!("expected a value after {path} {}", op.as_str()))),
                        }
                    }
                    Some(other) => {
                        Err(invalid(format!("expected an operator after {path}, found {}", describe(&other))))
                    }
                    None => Err(invalid(format!("expected an operator after {path}"))),
                }
            }
            Some(other) => {
                Err(invalid(format!("expected an attribute, \"(\" or not, found {}", describe(&other))))
            }
            None => Err(invalid("the filter ends where an expression was expected")),
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("{word:?}"),
        Token::Literal(value) => value.to_string(),
        Token::Open => "\"(\"".into(),
        Token::Close => "\")\"".into(),
        Token::OpenBracket => "\"[\"".into(),
        Token::CloseBracket => "\"]\"".into(),
    }
}

/// Parses a filter (not checked against a schema; see [`check`]).
pub fn parse(input: &str) -> Result<Filter> {
    if input.len() > MAX_FILTER_LEN {
        return Err(invalid(format!("the filter is longer than {MAX_FILTER_LEN} bytes")));
    }
    if input.trim().is_empty() {
        return Err(invalid("the filter is empty"));
    }
    let mut parser = Parser { tokens: tokenize(input)?, at: 0, depth: 0 };
    let filter = parser.filter()?;
    match parser.next() {
        None => Ok(filter),
        Some(extra) => Err(invalid(format!("unexpected {} after a complete expression", describe(&extra)))),
    }
}

/// Checks that every attribute `filter` names exists in `kind`'s schemas (an unknown one is an
/// `invalidFilter`, not an empty result that hides a typo).
pub fn check(kind: Kind, filter: &Filter) -> Result<()> {
    check_in(kind, filter, None)
}

fn check_in(kind: Kind, filter: &Filter, parent: Option<&AttrPath>) -> Result<()> {
    let known = |path: &AttrPath| -> Result<()> {
        let full = match parent {
            Some(parent) if path.uri.is_none() && path.sub.is_none() => {
                AttrPath { uri: parent.uri.clone(), name: parent.name.clone(), sub: Some(path.name.clone()) }
            }
            Some(_) => return Err(invalid(format!("{path}: a value filter names sub-attributes only"))),
            None => path.clone(),
        };
        schema::resolve(kind, &full).map(|_| ()).map_err(|e| invalid(e.detail))
    };
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_in(kind, a, parent)?;
            check_in(kind, b, parent)
        }
        Filter::Not(inner) => check_in(kind, inner, parent),
        Filter::Present(path) | Filter::Compare(path, _, _) => known(path),
        Filter::ValuePath(path, inner) => {
            if parent.is_some() {
                return Err(invalid(format!("{path}[…] cannot be nested in another value filter")));
            }
            known(path)?;
            check_in(kind, inner, Some(path))
        }
    }
}

/// Whether `resource` (a full resource: attributes, `id`, `meta`) matches `filter`.
pub fn matches(kind: Kind, filter: &Filter, resource: &Map<String, Value>) -> bool {
    matches_in(kind, filter, resource, None)
}

/// Whether one value of the multi-valued attribute `parent` matches a value filter (the
/// `[…]` of `parent[…]`).
pub fn matches_value(kind: Kind, filter: &Filter, parent: &AttrPath, value: &Map<String, Value>) -> bool {
    matches_in(kind, filter, value, Some(parent))
}

/// `parent`: inside `attr[…]`, the attribute whose values are being tested (`resource` is then
/// one of its values).
fn matches_in(kind: Kind, filter: &Filter, resource: &Map<String, Value>, parent: Option<&AttrPath>) -> bool {
    match filter {
        Filter::And(a, b) => matches_in(kind, a, resource, parent) && matches_in(kind, b, resource, parent),
        Filter::Or(a, b) => matches_in(kind, a, resource, parent) || matches_in(kind, b, resource, parent),
        Filter::Not(inner) => !matches_in(kind, inner, resource, parent),
        Filter::Present(path) => values(kind, resource, path, parent).iter().any(|v| present(v)),
        Filter::Compare(path, op, expected) => {
            let exact = case_exact(kind, path, parent);
            let found = values(kind, resource, path, parent);
            if *op == Op::Ne {
                return !found.iter().any(|v| compare(v, Op::Eq, expected, exact));
            }
            if expected.is_null() && *op == Op::Eq {
                return found.iter().all(|v| !present(v));
            }
            found.iter().any(|v| compare(v, *op, expected, exact))
        }
        Filter::ValuePath(path, inner) => values(kind, resource, path, None)
            .iter()
            .any(|v| v.as_object().is_some_and(|item| matches_in(kind, inner, item, Some(path)))),
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        _ => true,
    }
}

fn case_exact(kind: Kind, path: &AttrPath, parent: Option<&AttrPath>) -> bool {
    let full = match parent {
        Some(parent) => {
            AttrPath { uri: parent.uri.clone(), name: parent.name.clone(), sub: Some(path.name.clone()) }
        }
        None => path.clone(),
    };
    schema::resolve(kind, &full).is_ok_and(|r| r.sub.unwrap_or(r.attr).case_exact)
}

/// Every value at `path` in `resource` (a multi-valued attribute gives each of its values;
/// a sub-attribute of one gives the sub-attribute of each).
pub fn values<'a>(
    kind: Kind,
    resource: &'a Map<String, Value>,
    path: &AttrPath,
    parent: Option<&AttrPath>,
) -> Vec<&'a Value> {
    if parent.is_some() {
        return field(resource, &path.name).into_iter().collect();
    }
    let holder = match schema::resolve(kind, path) {
        Ok(resolved) => match resolved.extension {
            Some(extension) => match field(resource, extension.id).and_then(Value::as_object) {
                Some(object) => object,
                None => return Vec::new(),
            },
            None => resource,
        },
        Err(_) => return Vec::new(),
    };
    let Some(top) = field(holder, &path.name) else { return Vec::new() };
    let tops: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    match &path.sub {
        None => tops,
        Some(sub) => tops.into_iter().filter_map(|v| v.as_object().and_then(|o| field(o, sub))).collect(),
    }
}

/// The field `name` of `object`, matched in any case.
pub fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// Compares a resource's value with a filter's literal.
fn compare(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if exact { (a.clone(), e.clone()) } else { (a.to_lowercase(), e.to_lowercase()) };
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Co => a.contains(&e),
                Op::Sw => a.starts_with(&e),
                Op::Ew => a.ends_with(&e),
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            Op::Eq => a == e,
            Op::Ne => a != e,
            _ => false,
        },
        (Value::Number(a), Value::Number(e)) => {
            let ordering = a.as_f64().zip(e.as_f64()).and_then(|(a, e)| a.partial_cmp(&e));
            match (op, ordering) {
                (Op::Eq, Some(o)) => o == Ordering::Equal,
                (Op::Ne, Some(o)) => o != Ordering::Equal,
                (Op::Gt, Some(o)) => o == Ordering::Greater,
                (Op::Ge, Some(o)) => o != Ordering::Less,
                (Op::Lt, Some(o)) => o == Ordering::Less,
                (Op::Le, Some(o)) => o != Ordering::Greater,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Orders two resources by the value at `path` (the primary value, or the first, of a
/// multi-valued attribute); a resource without one sorts last.
pub fn order(kind: Kind, path: &AttrPath, a: &Map<String, Value>, b: &Map<String, Value>) -> Ordering {
    let key = |resource: &Map<String, Value>| -> Option<Value> {
        let resolved = schema::resolve(kind, path).ok()?;
        let exact = resolved.sub.unwrap_or(resolved.attr).case_exact;
        let mut found = values(kind, resource, path, None);
        if resolved.attr.multi && resolved.attr.ty == Type::Complex && path.sub.is_none() {
            // `emails`: sort by the primary value.
            let primary = found
                .iter()
                .find(|v| v.get("primary") == Some(&Value::Bool(true)))
                .or(found.first())
                .copied();
            found = primary.and_then(|v| v.get("value")).into_iter().collect();
        }
        let value = found.into_iter().find(|v| present(v))?.clone();
        Some(match value {
            Value::String(text) if !exact => Value::String(text.to_lowercase()),
            other => other,
        })
    };
    match (key(a), key(b)) {
        (Some(a), Some(b)) => match (&a, &b) {
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Number(a), Value::Number(b)) => {
                a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)).unwrap_or(Ordering::Equal)
            }
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            _ => Ordering::Equal,
        },
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
