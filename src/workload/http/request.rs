//! One `[[target.request]]`: its method, its path and body templates, its
//! weight, timeout and the statuses that count as success; and how a
//! response or a transport failure is classified.

use crate::vocab::check::{check, invalid, name, positive_dur, positive_int_or, Checked};
use crate::vocab::outcome::ErrorClass;
use crate::vocab::units::Dur;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

/// A `[[target.request]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    name: Spanned<String>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    body: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
    timeout: Option<Spanned<Dur>>,
    expect_status: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A piece of a path or body: text, or a value drawn per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// `{key}`: a key drawn from `keys` with the target's distribution.
    Key,
    /// `{user}`: the virtual user's index.
    User,
    /// `{seq}`: the user's own request counter.
    Seq,
}

const PLACEHOLDERS: &str = "{key}, {user} and {seq}";

/// A path or body with its placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

impl Template {
    /// Reads `{key}`, `{user}` and `{seq}`; any other `{name}` is refused
    /// at its place. A brace not around a name is text (JSON bodies).
    pub fn parse(s: &Spanned<String>, what: &str) -> Checked<Template> {
        let text = s.get_ref();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find('{') {
            lit.push_str(&rest[..i]);
            let tail = &rest[i + 1..];
            let name_len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..name_len];
            let is_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && tail[name_len..].starts_with('}');
            if !is_name {
                lit.push('{');
                rest = tail;
                continue;
            }
            let piece = match name {
                "key" => Piece::Key,
                "user" => Piece::User,
                "seq" => Piece::Seq,
                other => {
                    return Err(invalid(
                        s.span(),
                        format!(
                        "{what} `{text}`: unknown placeholder `{{{other}}}` (use {PLACEHOLDERS})"
                    ),
                    ))
                }
            };
            if !lit.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut lit)));
            }
            pieces.push(piece);
            rest = &tail[name_len + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Template(pieces))
    }

    /// The text with `key`, `user` and `seq` put in.
    pub fn render(&self, out: &mut String, key: u64, user: usize, seq: u64) {
        use std::fmt::Write;
        out.clear();
        for p in &self.0 {
            let _ = match p {
                Piece::Text(t) => {
                    out.push_str(t);
                    Ok(())
                }
                Piece::Key => write!(out, "{key}"),
                Piece::User => write!(out, "{user}"),
                Piece::Seq => write!(out, "{seq}"),
            };
        }
    }
}

/// Which statuses are a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Any2xx,
    Listed(Vec<u16>),
}

impl Expect {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::Any2xx => (200..300).contains(&status),
            Expect::Listed(list) => list.contains(&status),
        }
    }
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    /// The op name in reports and rules.
    pub name: &'static str,
    pub method: reqwest::Method,
    pub path: Template,
    pub body: Option<Template>,
    pub headers: Vec<(String, String)>,
    pub weight: u32,
    pub timeout: Duration,
    pub expect: Expect,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl RawRequest {
    /// A refusal placed at this request's `name`.
    pub fn name_invalid(&self, message: String) -> crate::vocab::check::Invalid {
        invalid(self.name.span(), message)
    }

    pub fn plan(&self) -> Checked<RequestPlan> {
        let n = name(
            &self.name,
            "-_",
            "a request `name` must be non-empty and use only letters, digits, `-` and `_` (it is an op name in rules)",
        )?;
        check(
            &self.name,
            !n.starts_with("redis_") && n != "caller",
            format!(
                "request name `{n}` is taken: `caller` and `redis_*` are gameday's own op names"
            ),
        )?;
        let method = match &self.method {
            None => reqwest::Method::GET,
            Some(m) => {
                let upper = m.get_ref().to_ascii_uppercase();
                check(
                    m,
                    METHODS.contains(&upper.as_str()),
                    format!(
                        "unknown method `{}` (use one of {})",
                        m.get_ref(),
                        METHODS.join(", ")
                    ),
                )?;
                reqwest::Method::from_bytes(upper.as_bytes()).expect("a listed method")
            }
        };
        check(
            &self.path,
            self.path.get_ref().starts_with('/'),
            format!(
                "a request `path` starts with `/` (it is appended to base_url), not `{}`",
                self.path.get_ref()
            ),
        )?;
        let weight = positive_int_or(self.weight.as_ref(), "weight", 1)?;
        if let Some(w) = &self.weight {
            check(
                w,
                weight <= 1_000_000,
                "`weight` above 1000000 is not supported",
            )?;
        }
        Ok(RequestPlan {
            name: Box::leak(n.into_boxed_str()),
            method,
            path: Template::parse(&self.path, "path")?,
            body: self
                .body
                .as_ref()
                .map(|b| Template::parse(b, "body"))
                .transpose()?,
            headers: self.headers.clone().into_iter().collect(),
            weight: weight as u32,
            timeout: positive_dur(self.timeout.as_ref(), "timeout", Duration::from_secs(2))?,
            expect: self.expect()?,
        })
    }

    fn expect(&self) -> Checked<Expect> {
        let Some(list) = &self.expect_status else {
            return Ok(Expect::Any2xx);
        };
        check(
            list,
            !list.get_ref().is_empty(),
            "`expect_status` lists no status (leave it out for any 2xx)",
        )?;
        let mut out = Vec::new();
        for s in list.get_ref() {
            let v = *s.get_ref();
            check(
                s,
                (100..=599).contains(&v),
                format!("`expect_status`: {v} is not an HTTP status (100..599)"),
            )?;
            out.push(v as u16);
        }
        Ok(Expect::Listed(out))
    }
}

/// The error class of a response with an unexpected status: its family
/// (`http_4xx`, `http_5xx`, ...) is what the recorder files it under; the
/// exact status is kept too.
pub fn status_class(status: u16) -> ErrorClass {
    ErrorClass::Http(status)
}

/// The error class of a request that got no response.
pub fn transport_class(e: &reqwest::Error) -> ErrorClass {
    if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_connect() {
        ErrorClass::Connect
    } else {
        ErrorClass::Reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Checked<Template> {
        Template::parse(&Spanned::new(0..s.len(), s.to_string()), "path")
    }

    #[test]
    fn placeholders_render_and_unknown_ones_are_refused() {
        let tpl = t("/product/{key}?u={user}&n={seq}&x={}").unwrap();
        let mut out = String::new();
        tpl.render(&mut out, 42, 3, 7);
        assert_eq!(out, "/product/42?u=3&n=7&x={}");
        let body = t(r#"{"user": "u{user}", "sku": "{key}", "n": {"a": 1}}"#).unwrap();
        body.render(&mut out, 5, 2, 1);
        assert_eq!(out, r#"{"user": "u2", "sku": "5", "n": {"a": 1}}"#);
        let err = t("/p/{id}").unwrap_err();
        assert!(
            err.message.contains("unknown placeholder `{id}`"),
            "{}",
            err.message
        );
        t("/p/{key").unwrap();
    }
}
