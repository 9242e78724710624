//! A documented subset of the AIP-160 filter language, parsed into a small AST that each
//! service translates to SQL over the fields it allows.
//!
//! Grammar (as in AIP-160, `OR` binds tighter than `AND`):
//! ```text
//! filter     = expression
//! expression = sequence { "AND" sequence }
//! sequence   = factor { "OR" factor }
//! factor     = [ "NOT" | "-" ] term
//! term       = "(" expression ")" | comparison
//! comparison = member op value
//! member     = name { "." name }             e.g. ci_class, labels.team
//! op         = "=" | "!=" | "<" | "<=" | ">" | ">="
//! value      = "quoted string" | bare word or number
//! ```
//! Limits: 2,000 characters, nesting depth 16, 64 comparisons.

use crate::error::Error;

pub const MAX_FILTER_LEN: usize = 2000;
pub const MAX_DEPTH: usize = 16;
pub const MAX_COMPARISONS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare { member: String, op: Op, value: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    Op(Op),
    Word(String),
    Quoted(String),
    Minus,
}

fn invalid(description: impl Into<String>) -> Error {
    Error::invalid("filter", description)
}

fn tokenize(input: &str) -> Result<Vec<Token>, Error> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::LParen);
            }
            ')' => {
                chars.next();
                tokens.push(Token::RParen);
            }
            '=' => {
                chars.next();
                tokens.push(Token::Op(Op::Eq));
            }
            '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err(invalid("expected `!=`"));
                }
                tokens.push(Token::Op(Op::Ne));
            }
            '<' | '>' => {
                chars.next();
                let eq = chars.peek() == Some(&'=');
                if eq {
                    chars.next();
                }
                tokens.push(Token::Op(match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                }));
            }
            '-' if tokens.last().is_none_or(|t| {
                matches!(t, Token::LParen | Token::Word(_)) && !matches!(t, Token::Word(w) if !is_keyword(w))
            }) =>
            {
                chars.next();
                tokens.push(Token::Minus);
            }
            '"' | '\'' => {
                let quote = c;
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(invalid("unterminated string")),
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(invalid("unterminated string")),
                        },
                        Some(ch) if ch == quote => break,
                        Some(ch) => value.push(ch),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_alphanumeric() || matches!(ch, '_' | '.' | '-' | ':' | '/' | '*' | '+') {
                        word.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if word.is_empty() {
                    return Err(invalid(format!("unexpected character `{c}`")));
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

fn is_keyword(word: &str) -> bool {
    matches!(word, "AND" | "OR" | "NOT")
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    comparisons: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == keyword)
    }

    fn expression(&mut self, depth: usize) -> Result<Expr, Error> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut parts = vec![self.sequence(depth)?];
        while self.at_keyword("AND") {
            self.next();
            parts.push(self.sequence(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }

    fn sequence(&mut self, depth: usize) -> Result<Expr, Error> {
        let mut parts = vec![self.factor(depth)?];
        while self.at_keyword("OR") {
            self.next();
            parts.push(self.factor(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
    }

    fn factor(&mut self, depth: usize) -> Result<Expr, Error> {
        if self.at_keyword("NOT") || self.peek() == Some(&Token::Minus) {
            self.next();
            return Ok(Expr::Not(Box::new(self.term(depth + 1)?)));
        }
        self.term(depth)
    }

    fn term(&mut self, depth: usize) -> Result<Expr, Error> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match self.next() {
            Some(Token::LParen) => {
                let inner = self.expression(depth + 1)?;
                match self.next() {
                    Some(Token::RParen) => Ok(inner),
                    _ => Err(invalid("missing `)`")),
                }
            }
            Some(Token::Word(member)) if !is_keyword(&member) => {
                if !member.split('.').all(|part| {
                    !part.is_empty()
                        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                }) {
                    return Err(invalid(format!("`{member}` is not a field name")));
                }
                let Some(Token::Op(op)) = self.next() else {
                    return Err(invalid(format!("expected an operator after `{member}`")));
                };
                let value = match self.next() {
                    Some(Token::Quoted(v)) => v,
                    Some(Token::Word(v)) if !is_keyword(&v) => v,
                    _ => return Err(invalid(format!("expected a value after `{member}`"))),
                };
                self.comparisons += 1;
                if self.comparisons > MAX_COMPARISONS {
                    return Err(invalid(format!("more than {MAX_COMPARISONS} comparisons")));
                }
                Ok(Expr::Compare { member, op, value })
            }
            Some(other) => Err(invalid(format!("unexpected {other:?}"))),
            None => Err(invalid("unexpected end of filter")),
        }
    }
}

/// Parses a filter; an empty filter is `None`.
pub fn parse(input: &str) -> Result<Option<Expr>, Error> {
    if input.len() > MAX_FILTER_LEN {
        return Err(invalid(format!("longer than {MAX_FILTER_LEN} characters")));
    }
    if input.trim().is_empty() {
        return Ok(None);
    }
    let mut parser = Parser { tokens: tokenize(input)?, pos: 0, comparisons: 0 };
    let expr = parser.expression(0)?;
    if parser.pos < parser.tokens.len() {
        return Err(invalid("unexpected text after the end of the filter"));
    }
    Ok(Some(expr))
}

/// Parses `order_by` (`field [desc]`) against the allowed fields; empty → `None`.
pub fn parse_order_by<'a>(input: &str, allowed: &[&'a str]) -> Result<Option<(&'a str, bool)>, Error> {
    let parts: Vec<&str> = input.split_whitespace().collect();
    let (field, descending) = match parts.as_slice() {
        [] => return Ok(None),
        [field] => (*field, false),
        [field, dir] if dir.eq_ignore_ascii_case("desc") => (*field, true),
        [field, dir] if dir.eq_ignore_ascii_case("asc") => (*field, false),
        _ => return Err(Error::invalid("order_by", "expected `field` or `field desc`")),
    };
    match allowed.iter().find(|a| **a == field) {
        Some(found) => Ok(Some((found, descending))),
        None => Err(Error::invalid(
            "order_by",
            format!("cannot order by `{field}`; allowed: {}", allowed.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(member: &str, op: Op, value: &str) -> Expr {
        Expr::Compare { member: member.into(), op, value: value.into() }
    }

    #[test]
    fn parses_comparisons_and_precedence() {
        // OR binds tighter than AND (AIP-160).
        let e = parse(r#"a = 1 AND b != "x y" OR labels.team = payments"#).unwrap().unwrap();
        assert_eq!(
            e,
            Expr::And(vec![
                cmp("a", Op::Eq, "1"),
                Expr::Or(vec![cmp("b", Op::Ne, "x y"), cmp("labels.team", Op::Eq, "payments")]),
            ])
        );
        let e = parse("(a = 1 AND b = 2) OR NOT c = 3").unwrap().unwrap();
        assert_eq!(
            e,
            Expr::Or(vec![
                Expr::And(vec![cmp("a", Op::Eq, "1"), cmp("b", Op::Eq, "2")]),
                Expr::Not(Box::new(cmp("c", Op::Eq, "3"))),
            ])
        );
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(parse("  ").unwrap(), None);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "a =",
            "= 1",
            "a = 1 AND",
            "(a = 1",
            "a = \"unterminated",
            "a ! 1",
            "a = 1 b = 2",
            "a; DROP TABLE x = 1",
            "a = 1)",
            "AND = 1",
        ] {
            assert!(matches!(parse(bad), Err(Error::InvalidArgument(_))), "{bad}");
        }
    }

    #[test]
    fn limits_depth_length_and_size() {
        let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).is_err());
        let long = format!("a = \"{}\"", "x".repeat(3000));
        assert!(parse(&long).is_err());
        let many = vec!["a = 1"; 100].join(" AND ");
        assert!(parse(&many).is_err());
    }

    #[test]
    fn order_by() {
        let allowed = ["display_name", "create_time"];
        assert_eq!(parse_order_by("", &allowed).unwrap(), None);
        assert_eq!(parse_order_by("create_time desc", &allowed).unwrap(), Some(("create_time", true)));
        assert_eq!(parse_order_by("display_name", &allowed).unwrap(), Some(("display_name", false)));
        assert!(parse_order_by("etag", &allowed).is_err());
        assert!(parse_order_by("a b c", &allowed).is_err());
    }
}
