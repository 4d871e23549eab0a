//! Parser for the QBO query-language subset:
//! `SELECT * | SELECT *, field... | SELECT COUNT(*) | SELECT field[, field...] FROM <Entity>
//! [WHERE cond AND ...] [ORDERBY | ORDER BY field [ASC|DESC]] [STARTPOSITION n] [MAXRESULTS m]`
//! (the last two in either order, as QBO takes them).
//! Deliberately strict: OR, NOT, `!=`, parentheses around conditions, unknown escapes and trailing
//! tokens are errors, as is STARTPOSITION < 1. MAXRESULTS over 1000 is refused by `eval` with
//! QBO's validation wording.
//! Field and entity names are resolved later (see `eval`), since they depend on the entity.

pub const MAX_RESULTS_LIMIT: u64 = 1000;
pub const DEFAULT_MAX_RESULTS: u64 = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    /// Kept as text so integers (Ids) are not squeezed through f64.
    Num(String),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Like,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub field: String,
    pub op: Op,
    /// One literal, or several for `IN`.
    pub values: Vec<Literal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub count: bool,
    /// `SELECT Id, MetaData.LastUpdatedTime`: the projected fields; `None` for `*`.
    pub fields: Option<Vec<String>>,
    pub entity: String,
    pub conds: Vec<Cond>,
    /// Field and `true` for descending.
    pub order_by: Option<(String, bool)>,
    /// 1-based.
    pub start_position: u64,
    pub max_results: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Star,
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            '=' => {
                toks.push(Tok::Op("="));
                i += 1;
            }
            '<' | '>' | '!' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) if chars.get(i + 1) == Some(&'>') => {
                        return Err("operator '<>' is not supported".into())
                    }
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => return Err("operator '!=' is not supported".into()),
                };
                toks.push(Tok::Op(op));
                i += if two { 2 } else { 1 };
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\\') => match chars.get(i + 1) {
                            Some(&e @ ('\'' | '\\')) => {
                                s.push(e);
                                i += 2;
                            }
                            Some(e) => return Err(format!("invalid escape sequence '\\{e}'")),
                            None => return Err("unterminated string literal".into()),
                        },
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                toks.push(Tok::Str(s));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if text.matches('.').count() > 1 || text.ends_with('.') {
                    return Err(format!("invalid number '{text}'"));
                }
                toks.push(Tok::Num(text));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                toks.push(Tok::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn keyword(&mut self, kw: &str) -> Result<(), String> {
        if self.peek_keyword(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {kw} but found {}", describe(self.peek())))
        }
    }

    fn expect(&mut self, want: Tok) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!(
                "expected {want:?} but found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w)) if !is_reserved(&w) => Ok(w),
            other => Err(format!(
                "expected {what} but found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Num(n)) => Ok(Literal::Num(n)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            other => Err(format!(
                "expected a literal but found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn positive(&mut self, what: &str) -> Result<u64, String> {
        match self.next() {
            Some(Tok::Num(n)) => match n.parse::<u64>() {
                Ok(v) if v >= 1 => Ok(v),
                _ => Err(format!("{what} must be a positive integer, got {n}")),
            },
            other => Err(format!(
                "expected a number after {what} but found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn cond(&mut self) -> Result<Cond, String> {
        if matches!(self.peek(), Some(Tok::LParen)) {
            return Err("parenthesised conditions are not supported".into());
        }
        if self.peek_keyword("NOT") {
            return Err("NOT is not supported".into());
        }
        let field = self.ident("a field name")?;
        let (op, values) = match self.next() {
            Some(Tok::Op(o)) => {
                let op = match o {
                    "=" => Op::Eq,
                    "<" => Op::Lt,
                    ">" => Op::Gt,
                    "<=" => Op::Le,
                    _ => Op::Ge,
                };
                (op, vec![self.literal()?])
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => {
                self.expect(Tok::LParen)?;
                let mut vals = vec![self.literal()?];
                while matches!(self.peek(), Some(Tok::Comma)) {
                    self.pos += 1;
                    vals.push(self.literal()?);
                }
                self.expect(Tok::RParen)?;
                (Op::In, vals)
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => match self.literal()? {
                lit @ Literal::Str(_) => (Op::Like, vec![lit]),
                _ => return Err("LIKE needs a string pattern".into()),
            },
            other => {
                return Err(format!(
                    "expected an operator after {field} but found {}",
                    describe(other.as_ref())
                ))
            }
        };
        Ok(Cond { field, op, values })
    }
}

const RESERVED: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "ORDERBY",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "STARTPOSITION",
    "MAXRESULTS",
    "IN",
    "LIKE",
    "COUNT",
];

fn is_reserved(w: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "end of query".into(),
        Some(Tok::Word(w)) => format!("'{w}'"),
        Some(Tok::Str(s)) => format!("string '{s}'"),
        Some(Tok::Num(n)) => format!("number {n}"),
        Some(Tok::Star) => "'*'".into(),
        Some(Tok::LParen) => "'('".into(),
        Some(Tok::RParen) => "')'".into(),
        Some(Tok::Comma) => "','".into(),
        Some(Tok::Op(o)) => format!("'{o}'"),
    }
}

/// Parses a query; the error text becomes the Fault's `Detail` after `QueryParserError: `.
pub fn parse(src: &str) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
    };
    p.keyword("SELECT")?;
    let (count, fields) = if p.peek_keyword("COUNT") {
        p.pos += 1;
        p.expect(Tok::LParen)?;
        p.expect(Tok::Star)?;
        p.expect(Tok::RParen)?;
        (true, None)
    } else if matches!(p.peek(), Some(Tok::Star)) {
        p.pos += 1;
        // `SELECT *, Sku FROM Item` (python-quickbooks asks for Item this way): every field
        // is already in `*`, so the extra names add nothing.
        while matches!(p.peek(), Some(Tok::Comma)) {
            p.pos += 1;
            p.ident("a field name after '*,'")?;
        }
        (false, None)
    } else {
        let mut fields = vec![p.ident("'*', COUNT(*) or a field name")?];
        while matches!(p.peek(), Some(Tok::Comma)) {
            p.pos += 1;
            fields.push(p.ident("a field name after ','")?);
        }
        (false, Some(fields))
    };
    p.keyword("FROM")?;
    let entity = p.ident("an entity name")?;
    let mut q = Query {
        count,
        fields,
        entity,
        conds: Vec::new(),
        order_by: None,
        start_position: 1,
        max_results: DEFAULT_MAX_RESULTS,
    };
    if p.peek_keyword("WHERE") {
        p.pos += 1;
        q.conds.push(p.cond()?);
        loop {
            if p.peek_keyword("AND") {
                p.pos += 1;
                q.conds.push(p.cond()?);
            } else if p.peek_keyword("OR") {
                return Err("OR is not supported; use AND or IN".into());
            } else {
                break;
            }
        }
    }
    let order_by = if p.peek_keyword("ORDERBY") {
        p.pos += 1;
        true
    } else if p.peek_keyword("ORDER") {
        p.pos += 1;
        p.keyword("BY")?;
        true
    } else {
        false
    };
    if order_by {
        let field = p.ident("a field name after ORDERBY")?;
        let desc = if p.peek_keyword("DESC") {
            p.pos += 1;
            true
        } else {
            if p.peek_keyword("ASC") {
                p.pos += 1;
            }
            false
        };
        q.order_by = Some((field, desc));
    }
    // STARTPOSITION and MAXRESULTS come in either order, each at most once.
    let (mut start, mut max) = (None, None);
    loop {
        if start.is_none() && p.peek_keyword("STARTPOSITION") {
            p.pos += 1;
            start = Some(p.positive("STARTPOSITION")?);
        } else if max.is_none() && p.peek_keyword("MAXRESULTS") {
            p.pos += 1;
            max = Some(p.positive("MAXRESULTS")?);
        } else {
            break;
        }
    }
    q.start_position = start.unwrap_or(1);
    q.max_results = max.unwrap_or(DEFAULT_MAX_RESULTS);
    if let Some(t) = p.peek() {
        return Err(format!("unexpected {} at end of query", describe(Some(t))));
    }
    Ok(q)
}

/// Case-insensitive `LIKE` with `%` wildcards (QBO supports no other wildcard).
pub fn like(pattern: &str, text: &str) -> bool {
    let pat: Vec<char> = pattern.to_lowercase().chars().collect();
    let txt: Vec<char> = text.to_lowercase().chars().collect();
    // Classic greedy wildcard match with backtracking to the last '%'.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        if p < pat.len() && pat[p] == '%' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && pat[p] == txt[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Literal {
        Literal::Str(v.into())
    }

    #[test]
    fn full_query() {
        let q = parse(
            "select * from Invoice where MetaData.LastUpdatedTime >= '2024-01-01' and \
             MetaData.LastUpdatedTime < '2024-02-01T00:00:00-08:00' OrderBy MetaData.LastUpdatedTime desc \
             startposition 101 maxresults 1000",
        )
        .unwrap();
        assert!(!q.count);
        assert_eq!(q.entity, "Invoice");
        assert_eq!(q.conds.len(), 2);
        assert_eq!(q.conds[0].op, Op::Ge);
        assert_eq!(q.conds[1].values, vec![s("2024-02-01T00:00:00-08:00")]);
        assert_eq!(q.order_by, Some(("MetaData.LastUpdatedTime".into(), true)));
        assert_eq!((q.start_position, q.max_results), (101, 1000));
        let q = parse("SELECT * FROM Invoice ORDER BY Id DESC MAXRESULTS 5").unwrap();
        assert_eq!(q.order_by, Some(("Id".into(), true)));
        assert!(parse("SELECT * FROM Invoice ORDER Id").is_err());
    }

    #[test]
    fn defaults_and_count() {
        let q = parse("SELECT COUNT(*) FROM Customer").unwrap();
        assert!(q.count);
        assert_eq!((q.start_position, q.max_results), (1, DEFAULT_MAX_RESULTS));
    }

    #[test]
    fn escapes_round_trip() {
        let q = parse(r"SELECT * FROM Customer WHERE DisplayName = 'O\'Brien' AND CompanyName = 'back\\slash'").unwrap();
        assert_eq!(q.conds[0].values, vec![s("O'Brien")]);
        assert_eq!(q.conds[1].values, vec![s(r"back\slash")]);
        assert!(parse(r"SELECT * FROM Customer WHERE DisplayName = 'bad\n'").is_err());
        assert!(parse("SELECT * FROM Customer WHERE DisplayName = 'open").is_err());
        assert!(parse(r"SELECT * FROM Customer WHERE DisplayName = 'open\'").is_err());
    }

    #[test]
    fn in_like_bool_numbers() {
        let q = parse(
            "SELECT * FROM Item WHERE Active IN (true, false) AND Name LIKE 'Con%' AND Id > 5",
        )
        .unwrap();
        assert_eq!(q.conds[0].op, Op::In);
        assert_eq!(
            q.conds[0].values,
            vec![Literal::Bool(true), Literal::Bool(false)]
        );
        assert_eq!(q.conds[1].op, Op::Like);
        assert_eq!(q.conds[2].values, vec![Literal::Num("5".into())]);
        assert!(parse("SELECT * FROM Item WHERE Name LIKE 5").is_err());
        assert!(parse("SELECT * FROM Item WHERE Id IN ()").is_err());
    }

    #[test]
    fn and_only() {
        assert!(parse("SELECT * FROM Item WHERE Id = '1' OR Id = '2'")
            .unwrap_err()
            .contains("OR"));
        assert!(parse("SELECT * FROM Item WHERE (Id = '1')").is_err());
        assert!(parse("SELECT * FROM Item WHERE NOT Id = '1'").is_err());
        assert!(parse("SELECT * FROM Item WHERE Id != '1'").is_err());
    }

    #[test]
    fn paging_limits() {
        // Over 1000 parses; `eval` refuses it with QBO's wording.
        assert_eq!(
            parse("SELECT * FROM Item MAXRESULTS 1001")
                .unwrap()
                .max_results,
            1001
        );
        assert!(parse("SELECT * FROM Item MAXRESULTS 0").is_err());
        assert!(parse("SELECT * FROM Item STARTPOSITION 0").is_err());
        assert!(parse("SELECT * FROM Item STARTPOSITION -1").is_err());
        assert!(parse("SELECT * FROM Item STARTPOSITION 1.5").is_err());
        // MAXRESULTS before STARTPOSITION is QBO's grammar too; repeats and junk are not.
        let q = parse("SELECT * FROM Item MAXRESULTS 10 STARTPOSITION 21").unwrap();
        assert_eq!((q.start_position, q.max_results), (21, 10));
        assert!(parse("SELECT * FROM Item MAXRESULTS 10 MAXRESULTS 20").is_err());
        assert!(parse("SELECT * FROM Item STARTPOSITION 1 STARTPOSITION 2").is_err());
        assert!(parse("SELECT * FROM Item;").is_err());
        assert!(parse("SELECT FROM Item").is_err());
        assert!(parse("SELECT Id, FROM Item").is_err());
        assert!(parse("SELECT Id, * FROM Item").is_err());
        assert_eq!(parse("SELECT *, Sku FROM Item").unwrap().fields, None);
        assert!(parse("SELECT *, FROM Item").is_err());
        assert!(parse("SELECT COUNT(*), Id FROM Item").is_err());
        assert!(parse("SELECT * FROM").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn projections() {
        let q = parse("select Id, MetaData.LastUpdatedTime from Invoice where Id > '5'").unwrap();
        assert_eq!(
            q.fields,
            Some(vec!["Id".into(), "MetaData.LastUpdatedTime".into()])
        );
        assert!(!q.count);
        assert_eq!(parse("SELECT * FROM Item").unwrap().fields, None);
        assert_eq!(parse("SELECT COUNT(*) FROM Item").unwrap().fields, None);
    }

    #[test]
    fn like_matching() {
        assert!(like("Con%", "consulting"));
        assert!(like("%ing", "Consulting"));
        assert!(like("%sul%", "Consulting"));
        assert!(like("C%s%g", "Consulting"));
        assert!(!like("Con", "Consulting"));
        assert!(like("%", ""));
        assert!(like("José%", "JOSÉ O'Brien"));
    }
}
