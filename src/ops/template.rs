//! The substitution step that turns a template WGSL file in `shaders/` into the WGSL of one
//! kernel variant (a register tile, a subgroup width, a vec4 flag).
//!
//! The register tiles of the matmul and conv kernels are unrolled into scalars (`acc0_0`,
//! `acc0_1`, ...) rather than written as loops over function-local arrays, because such
//! arrays end up in memory on llvmpipe. A template says how to unroll; the rest of the file
//! is plain WGSL and is copied as is. The whole language:
//!
//! - A line whose first non-blank characters are `//#` is a directive; directives never
//!   appear in the output (and are WGSL comments, so a template still reads as WGSL):
//!   - `//# for NAME in A..B` repeats the lines up to the matching `//# end` once for each
//!     integer `NAME` from `A` to `B − 1` (no times when `B ≤ A`);
//!   - `//# if EXPR`, optionally `//# else`, then `//# end`: keeps the first branch when
//!     `EXPR` is not 0, else the second.
//! - In every other line, `${EXPR}` is replaced by the value of `EXPR`, and `${EXPR:CHARS}`
//!   by the character at index `EXPR` of `CHARS` (`${t:xyzw}` names vector component `t`).
//! - `EXPR` is built from integer literals, variables (the variant's parameters, given by
//!   the Rust caller, and the names of the enclosing `for` lines), parentheses, `!`, then
//!   `* / %`, `+ -`, `== != < <= > >=` (1 or 0), `&&`, `||` (short-circuiting), from
//!   tightest to loosest, all on 64-bit signed integers. A variable may hold text instead (an entry point's name); it
//!   can only be substituted alone, as `${NAME}`.
//!
//! Errors name the template and the line.

use std::fmt::Write;

/// The value of a template variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Val<'a> {
    Int(i64),
    Text(&'a str),
}

impl From<u32> for Val<'_> {
    fn from(v: u32) -> Self {
        Val::Int(v.into())
    }
}

impl From<bool> for Val<'_> {
    fn from(v: bool) -> Self {
        Val::Int(v.into())
    }
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(v)
    }
}

enum Node<'t> {
    Line(usize, &'t str),
    For {
        line: usize,
        var: &'t str,
        from: &'t str,
        to: &'t str,
        body: Vec<Node<'t>>,
    },
    If {
        line: usize,
        cond: &'t str,
        then: Vec<Node<'t>>,
        otherwise: Vec<Node<'t>>,
    },
}

/// Expand `template` (named `name` in errors) with the variables `vars`.
pub(crate) fn expand(
    name: &str,
    template: &str,
    vars: &[(&str, Val<'_>)],
) -> Result<String, String> {
    let err = |line: usize, what: String| format!("template {name}, line {line}: {what}");
    let mut lines = template.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (nodes, end) = parse(&mut lines).map_err(|(l, e)| err(l, e))?;
    if let Some((line, word)) = end {
        return Err(err(
            line,
            format!("`//# {word}` without an open `//# for` or `//# if`"),
        ));
    }
    let mut scope: Vec<(&str, Val<'_>)> = vars.to_vec();
    let mut out = String::with_capacity(template.len() * 2);
    render(&nodes, &mut scope, &mut out).map_err(|(l, e)| err(l, e))?;
    Ok(out)
}

type Failure = (usize, String);

/// Parse lines up to an `end` or `else` (returned with its line) or the end of the text.
#[allow(clippy::type_complexity)]
fn parse<'t>(
    lines: &mut impl Iterator<Item = (usize, &'t str)>,
) -> Result<(Vec<Node<'t>>, Option<(usize, &'static str)>), Failure> {
    let mut nodes = Vec::new();
    while let Some((line, text)) = lines.next() {
        let Some(d) = text.trim_start().strip_prefix("//#") else {
            nodes.push(Node::Line(line, text));
            continue;
        };
        let d = d.trim();
        let (word, rest) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        let rest = rest.trim();
        match word {
            "end" => return Ok((nodes, Some((line, "end")))),
            "else" => return Ok((nodes, Some((line, "else")))),
            "for" => {
                let (var, range) = rest
                    .split_once(" in ")
                    .ok_or((line, format!("expected `for NAME in A..B`, got `{d}`")))?;
                let (from, to) = range
                    .split_once("..")
                    .ok_or((line, format!("expected a range A..B, got `{range}`")))?;
                let (body, end) = parse(lines)?;
                if end.map(|e| e.1) != Some("end") {
                    return Err((line, "`//# for` without its `//# end`".into()));
                }
                nodes.push(Node::For {
                    line,
                    var: var.trim(),
                    from: from.trim(),
                    to: to.trim(),
                    body,
                });
            }
            "if" => {
                let (then, end) = parse(lines)?;
                let otherwise = match end.map(|e| e.1) {
                    Some("end") => Vec::new(),
                    Some(_) => {
                        let (otherwise, end) = parse(lines)?;
                        if end.map(|e| e.1) != Some("end") {
                            return Err((line, "`//# else` without its `//# end`".into()));
                        }
                        otherwise
                    }
                    None => return Err((line, "`//# if` without its `//# end`".into())),
                };
                nodes.push(Node::If {
                    line,
                    cond: rest,
                    then,
                    otherwise,
                });
            }
            _ => return Err((line, format!("unknown directive `//# {d}`"))),
        }
    }
    Ok((nodes, None))
}

fn render<'t>(
    nodes: &[Node<'t>],
    scope: &mut Vec<(&'t str, Val<'t>)>,
    out: &mut String,
) -> Result<(), Failure> {
    for node in nodes {
        match node {
            Node::Line(line, text) => {
                substitute(text, scope, out).map_err(|e| (*line, e))?;
                out.push('\n');
            }
            Node::For {
                line,
                var,
                from,
                to,
                body,
            } => {
                let from = int(from, scope).map_err(|e| (*line, e))?;
                let to = int(to, scope).map_err(|e| (*line, e))?;
                for i in from..to {
                    scope.push((var, Val::Int(i)));
                    let r = render(body, scope, out);
                    scope.pop();
                    r?;
                }
            }
            Node::If {
                line,
                cond,
                then,
                otherwise,
            } => {
                let c = int(cond, scope).map_err(|e| (*line, e))?;
                render(if c != 0 { then } else { otherwise }, scope, out)?;
            }
        }
    }
    Ok(())
}

fn substitute(text: &str, scope: &[(&str, Val<'_>)], out: &mut String) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let close = rest[at..]
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
        let inner = &rest[at + 2..at + close];
        let (expr, chars) = match inner.split_once(':') {
            Some((e, c)) => (e, Some(c)),
            None => (inner, None),
        };
        match (eval(expr, scope)?, chars) {
            (Val::Int(v), None) => {
                let _ = write!(out, "{v}");
            }
            (Val::Int(v), Some(chars)) => {
                let c = usize::try_from(v)
                    .ok()
                    .and_then(|i| chars.chars().nth(i))
                    .ok_or_else(|| format!("`${{{inner}}}`: no character {v} in `{chars}`"))?;
                out.push(c);
            }
            (Val::Text(s), None) => out.push_str(s),
            (Val::Text(_), Some(_)) => return Err(format!("`${{{inner}}}`: text is not an index")),
        }
        rest = &rest[at + close + 1..];
    }
    out.push_str(rest);
    Ok(())
}

fn int(expr: &str, scope: &[(&str, Val<'_>)]) -> Result<i64, String> {
    match eval(expr, scope)? {
        Val::Int(v) => Ok(v),
        Val::Text(_) => Err(format!("`{expr}` is text, not a number")),
    }
}

fn eval<'t>(expr: &str, scope: &[(&str, Val<'t>)]) -> Result<Val<'t>, String> {
    let tokens = tokenize(expr)?;
    // A text variable stands alone.
    if let [Tok::Ident(name)] = tokens.as_slice()
        && let Some(Val::Text(s)) = lookup(name, scope)
    {
        return Ok(Val::Text(s));
    }
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        scope,
        expr,
        dead: false,
    };
    let v = p.binary(0)?;
    if p.pos != tokens.len() {
        return Err(format!("`{expr}`: unexpected `{:?}`", tokens[p.pos]));
    }
    Ok(Val::Int(v))
}

fn lookup<'t>(name: &str, scope: &[(&str, Val<'t>)]) -> Option<Val<'t>> {
    scope
        .iter()
        .rev()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'e> {
    Num(i64),
    Ident(&'e str),
    Op(&'static str),
}

const OPS: [&str; 16] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "!",
];

fn tokenize(expr: &str) -> Result<Vec<Tok<'_>>, String> {
    let mut tokens = Vec::new();
    let mut rest = expr.trim_start();
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_ascii_digit() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let v = rest[..end]
                .parse()
                .map_err(|_| format!("`{expr}`: number too large"))?;
            tokens.push(Tok::Num(v));
            rest = &rest[end..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            tokens.push(Tok::Ident(&rest[..end]));
            rest = &rest[end..];
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            tokens.push(Tok::Op(op));
            rest = &rest[op.len()..];
        } else {
            return Err(format!("`{expr}`: unexpected character `{c}`"));
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

struct Parser<'a, 'e, 't> {
    tokens: &'a [Tok<'e>],
    pos: usize,
    scope: &'a [(&'a str, Val<'t>)],
    expr: &'a str,
    /// Inside the right side of a short-circuited `&&` / `||`.
    dead: bool,
}

/// Binary operators from loosest to tightest.
const LEVELS: [&[&str]; 5] = [
    &["||"],
    &["&&"],
    &["==", "!=", "<=", ">=", "<", ">"],
    &["+", "-"],
    &["*", "/", "%"],
];

impl Parser<'_, '_, '_> {
    fn binary(&mut self, level: usize) -> Result<i64, String> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        while let Some(Tok::Op(op)) = self.tokens.get(self.pos)
            && LEVELS[level].contains(op)
        {
            let op = *op;
            self.pos += 1;
            // `&&` and `||` short-circuit: a right side that does not count is parsed but
            // not checked (`SG && TM / SG > 1` with SG = 0).
            let was_dead = self.dead;
            self.dead |= (op == "&&" && lhs == 0) || (op == "||" && lhs != 0);
            let rhs = self.binary(level + 1);
            self.dead = was_dead;
            let rhs = rhs?;
            lhs = match op {
                "||" => i64::from(lhs != 0 || rhs != 0),
                "&&" => i64::from(lhs != 0 && rhs != 0),
                "==" => i64::from(lhs == rhs),
                "!=" => i64::from(lhs != rhs),
                "<=" => i64::from(lhs <= rhs),
                ">=" => i64::from(lhs >= rhs),
                "<" => i64::from(lhs < rhs),
                ">" => i64::from(lhs > rhs),
                "+" => lhs + rhs,
                "-" => lhs - rhs,
                "*" => lhs * rhs,
                _ if rhs == 0 && self.dead => 0,
                _ if rhs == 0 => return Err(format!("`{}`: division by zero", self.expr)),
                "/" => lhs / rhs,
                _ => lhs % rhs,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<i64, String> {
        let tok = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Tok::Num(v)) => Ok(v),
            Some(Tok::Ident(name)) => match lookup(name, self.scope) {
                Some(Val::Int(v)) => Ok(v),
                Some(Val::Text(_)) => Err(format!("`{}`: `{name}` is text", self.expr)),
                None if self.dead => Ok(0),
                None => Err(format!("`{}`: unknown variable `{name}`", self.expr)),
            },
            Some(Tok::Op("!")) => Ok(i64::from(self.unary()? == 0)),
            Some(Tok::Op("-")) => Ok(-self.unary()?),
            Some(Tok::Op("(")) => {
                let v = self.binary(0)?;
                if self.tokens.get(self.pos) != Some(&Tok::Op(")")) {
                    return Err(format!("`{}`: missing `)`", self.expr));
                }
                self.pos += 1;
                Ok(v)
            }
            _ => Err(format!("`{}`: expected a value", self.expr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_conditions_and_expressions() {
        let t = "\
fn ${ENTRY}() {
//# for i in 0..TM
//# for j in 0..TN
    var acc${i}_${j} = ${i * TN + j};
//# end
//# end
//# if SG && TM / SG > 1
    let v = x.${(TM - 1) % 4:xyzw} + ${-(1 + 2) * 3};
//# else
    let v = 0;
//# end
}";
        let vars = [
            ("ENTRY", Val::Text("k_2x2")),
            ("TM", 2u32.into()),
            ("TN", 2u32.into()),
            ("SG", 1u32.into()),
        ];
        let got = expand("t", t, &vars).unwrap();
        assert_eq!(
            got,
            "fn k_2x2() {\n    var acc0_0 = 0;\n    var acc0_1 = 1;\n    var acc1_0 = 2;\n    \
             var acc1_1 = 3;\n    let v = x.y + -9;\n}\n"
        );
        let vars = [
            ("ENTRY", Val::Text("k")),
            ("TM", 0u32.into()),
            ("TN", 2u32.into()),
            ("SG", 0u32.into()),
        ];
        assert_eq!(
            expand("t", t, &vars).unwrap(),
            "fn k() {\n    let v = 0;\n}\n"
        );
    }

    #[test]
    fn errors_name_template_and_line() {
        let e = expand("m", "a\n//# for i in 0..N\nx\n", &[]).unwrap_err();
        assert!(e.contains("template m, line 2"), "{e}");
        let e = expand("m", "a\n//# for i in 0..2\n${j}\n//# end\n", &[]).unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("unknown variable `j`"),
            "{e}"
        );
        let e = expand("m", "//# end\n", &[]).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = expand("m", "${1 / 0}", &[]).unwrap_err();
        assert!(e.contains("division by zero"), "{e}");
        let e = expand("m", "${3:xyz}", &[]).unwrap_err();
        assert!(e.contains("no character 3"), "{e}");
    }
}
