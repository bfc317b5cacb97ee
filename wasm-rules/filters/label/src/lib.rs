//! `label`: a label from path patterns. `patterns` lists `value=regex`
//! pairs separated by `;`; the first regex that matches an event's path (as
//! logged, query included) gives the label `key` its value, and `default`
//! (when not empty) labels the events no pattern matches.
//!
//! ```toml
//! { component = "label", params = { key = "route", patterns = 'api=^/api/; static=\.(css|js|png)$', default = "page" } }
//! ```

use logmon_filter::{Batch, Column, Filter, FilterInfo, LabelColumn, Params, Verdict, param};
use regex::bytes::Regex;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

#[derive(Debug, Default)]
pub struct Label {
    key: String,
    patterns: Vec<(String, Matcher)>,
    default: String,
}

/// How one pattern is tested: its regex, or, for a pattern that is only
/// literals anchored at the start and/or the end of the path (`^/api/`,
/// `\.(css|js|png)$`), the same test as byte compares, several times
/// cheaper per event than a regex search.
#[derive(Debug)]
enum Matcher {
    Prefixes(Vec<Vec<u8>>),
    Suffixes(Vec<Vec<u8>>),
    Exact(Vec<Vec<u8>>),
    Regex(Regex),
}

/// Most literal strings a pattern may stand for and still be compared.
const MAX_LITERALS: usize = 32;

impl Matcher {
    fn new(pattern: &str) -> Result<Matcher, regex::Error> {
        let regex = Regex::new(pattern)?;
        Ok(literal_matcher(pattern).unwrap_or(Matcher::Regex(regex)))
    }

    fn is_match(&self, path: &[u8]) -> bool {
        match self {
            Matcher::Prefixes(set) => set.iter().any(|l| path.starts_with(l)),
            Matcher::Suffixes(set) => set.iter().any(|l| path.ends_with(l)),
            Matcher::Exact(set) => set.iter().any(|l| path == l.as_slice()),
            Matcher::Regex(r) => r.is_match(path),
        }
    }
}

/// The literal form of `pattern`, when it has one.
fn literal_matcher(pattern: &str) -> Option<Matcher> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let look = |h: &Hir, want: Look| matches!(h.kind(), HirKind::Look(l) if *l == want);
    let start = parts.first().is_some_and(|h| look(h, Look::Start));
    let rest = &parts[usize::from(start)..];
    let end = rest.last().is_some_and(|h| look(h, Look::End));
    let middle = &rest[..rest.len() - usize::from(end)];
    let mut set = vec![Vec::new()];
    for part in middle {
        set = product(&set, &literals(part)?)?;
    }
    match (start, end) {
        (true, true) => Some(Matcher::Exact(set)),
        (true, false) => Some(Matcher::Prefixes(set)),
        (false, true) => Some(Matcher::Suffixes(set)),
        (false, false) => None,
    }
}

/// Every string `a` then `b` can stand for, if not too many.
fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_LITERALS {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|x| b.iter().map(move |y| [x.as_slice(), y].concat()))
            .collect(),
    )
}

/// The strings `h` matches, if it matches only a few fixed ones.
fn literals(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Empty => Some(vec![Vec::new()]),
        HirKind::Literal(l) => Some(vec![l.0.to_vec()]),
        HirKind::Capture(c) => literals(&c.sub),
        HirKind::Class(Class::Bytes(c)) => {
            let bytes: Vec<Vec<u8>> = c
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .take(MAX_LITERALS + 1)
                .map(|b| vec![b])
                .collect();
            (bytes.len() <= MAX_LITERALS).then_some(bytes)
        }
        HirKind::Class(Class::Unicode(c)) => {
            let chars: Vec<Vec<u8>> = c
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .take(MAX_LITERALS + 1)
                .map(|ch| ch.to_string().into_bytes())
                .collect();
            (chars.len() <= MAX_LITERALS).then_some(chars)
        }
        HirKind::Concat(parts) => parts
            .iter()
            .try_fold(vec![Vec::new()], |set, p| product(&set, &literals(p)?)),
        HirKind::Alternation(alternatives) => {
            let mut all = Vec::new();
            for a in alternatives {
                all.extend(literals(a)?);
                if all.len() > MAX_LITERALS {
                    return None;
                }
            }
            Some(all)
        }
        HirKind::Look(_) | HirKind::Repetition(_) => None,
    }
}

impl Label {
    /// The label value of `path`, if it gets one.
    pub fn value_of(&self, path: &str) -> Option<&str> {
        self.code_of(path.as_bytes()).map(|k| self.value(k))
    }

    /// The label code of `path`: 1 + the index of the first pattern that
    /// matches, `patterns.len() + 1` for the default, `None` for no label.
    fn code_of(&self, path: &[u8]) -> Option<u32> {
        match self.patterns.iter().position(|(_, r)| r.is_match(path)) {
            Some(p) => Some(p as u32 + 1),
            None => (!self.default.is_empty()).then_some(self.patterns.len() as u32 + 1),
        }
    }

    fn value(&self, code: u32) -> &str {
        match self.patterns.get(code as usize - 1) {
            Some((v, _)) => v,
            None => &self.default,
        }
    }
}

impl Filter for Label {
    fn describe() -> FilterInfo {
        FilterInfo {
            name: "label".into(),
            description: "Labels events by the first path pattern they match".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                param("key", "the label's name", "route"),
                param("patterns", "value=regex pairs separated by ;", ""),
                param(
                    "default",
                    "the value when no pattern matches (none when empty)",
                    "",
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.key = params.get("key", "route".to_owned())?;
        if self.key.is_empty() {
            return Err("key: a label needs a name".into());
        }
        self.patterns = params
            .raw("patterns")
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (value, regex) = p
                    .split_once('=')
                    .ok_or_else(|| format!("patterns: `{p}` is not value=regex"))?;
                let matcher = Matcher::new(regex.trim())
                    .map_err(|e| format!("patterns: `{}`: {e}", regex.trim()))?;
                Ok((value.trim().to_owned(), matcher))
            })
            .collect::<Result<_, String>>()?;
        self.default = params.get("default", String::new())?;
        if self.patterns.is_empty() && self.default.is_empty() {
            return Err("patterns: give at least one value=regex (or a default)".into());
        }
        Ok(())
    }

    fn reads(&self) -> Vec<Column> {
        vec![Column::Path]
    }

    fn filter(&mut self, batch: &Batch) -> Verdict {
        let n = batch.events.len();
        // One label column: the values once, a code per event.
        let mut labels = LabelColumn::new(self.key.clone(), n);
        labels.values = self
            .patterns
            .iter()
            .map(|(v, _)| v.clone())
            .chain(std::iter::once(self.default.clone()))
            .collect();
        for i in 0..n {
            if let Some(code) = self.code_of(batch.events.path.bytes(i)) {
                labels.set(i, code);
            }
        }
        let mut verdict = Verdict::keep_all(n);
        verdict.label_column(labels);
        verdict
    }
}

logmon_filter::export_filter!(Label);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_pattern_wins_then_the_default() {
        let mut f = Label::default();
        f.configure(&Params::new(vec![
            (
                "patterns".into(),
                r"api=^/api/; static=\.(css|js)$; any-api=api".into(),
            ),
            ("default".into(), "page".into()),
        ]))
        .unwrap();
        assert_eq!(f.value_of("/api/user"), Some("api"));
        assert_eq!(f.value_of("/app.js"), Some("static"));
        assert_eq!(f.value_of("/x/api"), Some("any-api"));
        assert_eq!(f.value_of("/index.html"), Some("page"));
        let mut b = logmon_filter::BatchBuilder::new("web");
        b.event().path("/api/a");
        b.event().path("/x.css");
        b.event().path("/");
        let v = f.filter(&b.build_reading(&f.reads()));
        assert!(v.labels.is_empty());
        let l = &v.label_columns[0];
        assert_eq!(l.key, "route");
        assert_eq!(
            (0..3).map(|i| l.value(i)).collect::<Vec<_>>(),
            vec![Some("api"), Some("static"), Some("page")]
        );
        f.default.clear();
        let v = f.filter(&b.build_reading(&f.reads()));
        assert_eq!(v.label_columns[0].value(2), None);
    }

    /// Each pattern's literal form, where it has one, decides every path
    /// as the regex does.
    #[test]
    fn literal_forms_agree_with_the_regex() {
        let patterns = [
            (r"^/api/", "prefix"),
            (r"\.(css|js|png)$", "suffix"),
            (r"^/(a|b)c$", "exact"),
            (r"(?i-u)\.CSS$", "suffix"),
            (r"^/v[12]/", "prefix"),
            (r"^$", "exact"),
            (r"api", "regex"),
            (r"^/api/.*\.json$", "regex"),
            (r"(?m)^/api", "regex"),
            (r"^/a|^/b", "prefix"), // the parser factors it: ^/[ab]
            (r"^[a-z]", "prefix"),
            (r"^[a-z0-9]", "regex"), // 36 strings, over the limit
            (r"\.(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)$", "regex"),
            (r"^/é", "prefix"),
        ];
        let paths = [
            "",
            "/",
            "/api/",
            "/api/user",
            "/API/user",
            "/x/api/",
            "/a.css",
            "/a.CSS",
            "/a.js?x",
            "/a.png",
            "/ac",
            "/bc",
            "/abc",
            "/v1/x",
            "/v3/x",
            "/api/x.json",
            "/é",
            "/e",
            "/x.cegikm",
            "/x.dfhjln",
        ];
        for (pattern, kind) in patterns {
            let m = Matcher::new(pattern).unwrap();
            let got = match &m {
                Matcher::Prefixes(_) => "prefix",
                Matcher::Suffixes(_) => "suffix",
                Matcher::Exact(_) => "exact",
                Matcher::Regex(_) => "regex",
            };
            assert_eq!(got, kind, "{pattern}");
            let regex = Regex::new(pattern).unwrap();
            for path in paths {
                assert_eq!(
                    m.is_match(path.as_bytes()),
                    regex.is_match(path.as_bytes()),
                    "{pattern} on {path}"
                );
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        let mut f = Label::default();
        let e = f
            .configure(&Params::new(vec![("patterns".into(), "api".into())]))
            .unwrap_err();
        assert!(e.contains("not value=regex"), "{e}");
        let e = f
            .configure(&Params::new(vec![("patterns".into(), "a=(".into())]))
            .unwrap_err();
        assert!(e.contains("`(`"), "{e}");
    }
}
