//! Which route a request is, decided on its canonical path.
//!
//! Prices are only as good as route matching: `/v1/%71uote` or `/v1//quote/` must not reach a priced
//! upstream path as a free or unknown route. So the path is percent-decoded exactly once and refused when
//! decoding is ambiguous (an encoded `/`, `\` or `%`, a NUL, a `.` or `..` segment, an empty segment); a
//! trailing slash is ignored for matching. The upstream receives the request target as sent.

use http::Method;

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous path: {0}")]
pub(crate) struct AmbiguousPath(pub &'static str);

/// The path as routes see it: decoded once, without a trailing slash (except the root).
pub(crate) fn canonical_path(raw: &str) -> Result<String, AmbiguousPath> {
    if !raw.starts_with('/') {
        return Err(AmbiguousPath("the path does not start with /"));
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(AmbiguousPath("truncated percent escape"))?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(AmbiguousPath("invalid percent escape"))?;
            match value {
                b'/' => return Err(AmbiguousPath("encoded slash")),
                b'\\' => return Err(AmbiguousPath("encoded backslash")),
                b'%' => return Err(AmbiguousPath("encoded percent sign")),
                0 => return Err(AmbiguousPath("NUL byte")),
                _ => decoded.push(value),
            }
            i += 3;
        } else {
            if b == b'\\' {
                return Err(AmbiguousPath("backslash"));
            }
            decoded.push(b);
            i += 1;
        }
    }
    let path = String::from_utf8(decoded).map_err(|_| AmbiguousPath("not UTF-8"))?;
    if path.contains(|c: char| c.is_control()) {
        return Err(AmbiguousPath("control character"));
    }
    let trimmed = if path.len() > 1 { path.strip_suffix('/').unwrap_or(&path) } else { &path };
    for segment in trimmed.split('/').skip(1) {
        match segment {
            "" if trimmed != "/" => return Err(AmbiguousPath("empty segment")),
            "." | ".." => return Err(AmbiguousPath("dot segment")),
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
}

/// A route's path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segments: Vec<Segment>,
    /// Ends in `/*`: matches any (possibly empty) rest.
    rest: bool,
    /// The pattern as configured (canonical).
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// A pattern that cannot be a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadPattern(pub String);

impl PathPattern {
    /// `/exact/path`, `/items/{id}` or `/items/:id` (one segment), `/files/*` (any rest).
    pub(crate) fn parse(pattern: &str) -> Result<Self, BadPattern> {
        let canonical = canonical_path(pattern).map_err(|e| BadPattern(format!("{pattern:?}: {e}")))?;
        let (body, rest) = match canonical.strip_suffix("/*") {
            Some(body) => (body, true),
            None if canonical == "/*" => ("", true),
            None => (canonical.as_str(), false),
        };
        let mut segments = Vec::new();
        for segment in body.split('/').skip(1).filter(|s| !s.is_empty()) {
            if segment.contains('*') {
                return Err(BadPattern(format!("{pattern:?}: `*` may only end the pattern, as /*")));
            }
            let param = (segment.starts_with('{') && segment.ends_with('}') && segment.len() > 2)
                || (segment.starts_with(':') && segment.len() > 1);
            segments.push(if param { Segment::Param } else { Segment::Literal(segment.to_owned()) });
        }
        Ok(PathPattern { segments, rest, text: canonical.clone() })
    }

    /// Whether the pattern has a parameter or a rest: it matches more than one path.
    pub(crate) fn has_wildcards(&self) -> bool {
        self.rest || self.segments.contains(&Segment::Param)
    }

    /// Whether a canonical path matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/').skip(1).filter(|s| !s.is_empty());
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Literal(lit), Some(part)) if lit == part => {}
                (Segment::Param, Some(_)) => {}
                _ => return false,
            }
        }
        self.rest || parts.next().is_none()
    }
}

/// A route's method and path, and for a route that prices an MCP tool, the tool's name.
#[derive(Debug, Clone)]
pub(crate) struct RouteMatcher {
    pub method: Option<Method>,
    pub pattern: PathPattern,
    /// The MCP tool the route prices: it matches that tool's `tools/call` sent to its path (`crate::mcp`), never
    /// a plain request.
    pub tool: Option<String>,
}

impl RouteMatcher {
    /// The path pattern as configured (`/items/{id}`, `/files/*`).
    pub(crate) fn pattern_text(&self) -> &str {
        &self.pattern.text
    }

    /// Whether a plain request (not an MCP tool call) is this route's.
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.tool.is_none()
            && self.method.as_ref().is_none_or(|m| m == method || (*m == Method::GET && *method == Method::HEAD))
            && self.pattern.matches(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_decode_once() {
        assert_eq!(canonical_path("/v1/%71uote").unwrap(), "/v1/quote");
        assert_eq!(canonical_path("/v1/quote/").unwrap(), "/v1/quote");
        assert_eq!(canonical_path("/").unwrap(), "/");
        assert_eq!(canonical_path("/caf%C3%A9").unwrap(), "/café");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for bad in [
            "/v1%2Fquote",
            "/v1%2fquote",
            "/v1/%252F",
            "/v1//quote",
            "/v1/./quote",
            "/v1/../admin",
            "/v1/%2e%2e/admin",
            "/v1/%00",
            "/v1\\quote",
            "/v1/%5Cquote",
            "/v1/%zz",
            "/v1/%4",
            "/v1/%ff",
            "v1/quote",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_segments_params_and_rest() {
        let exact = PathPattern::parse("/v1/quote").unwrap();
        assert!(exact.matches("/v1/quote"));
        assert!(!exact.matches("/v1/quote/x"));
        assert!(!exact.matches("/v1"));
        let param = PathPattern::parse("/items/{id}/price").unwrap();
        assert!(param.matches("/items/42/price"));
        assert!(!param.matches("/items/price"));
        let colon = PathPattern::parse("/items/:id").unwrap();
        assert!(colon.matches("/items/7"));
        let rest = PathPattern::parse("/files/*").unwrap();
        assert!(rest.matches("/files"));
        assert!(rest.matches("/files/a/b/c"));
        assert!(!rest.matches("/filesystem"));
        assert!(PathPattern::parse("/*").unwrap().matches("/anything/at/all"));
        assert!(PathPattern::parse("/a*b").is_err());
    }

    #[test]
    fn get_routes_serve_head() {
        let m = RouteMatcher { method: Some(Method::GET), pattern: PathPattern::parse("/a").unwrap(), tool: None };
        assert!(m.matches(&Method::HEAD, "/a"));
        assert!(!m.matches(&Method::POST, "/a"));
    }
}
