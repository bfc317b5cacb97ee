//! `drop`: leaves out the events nobody needs at the collector — health
//! checks, static assets, bots — by path prefix or regular expression,
//! status, method or user agent.
//!
//! Each parameter given is one condition; an event is dropped when any of
//! them matches (`match = "all"`: when every given one does).

use logmon_filter::{Batch, Column, Filter, FilterInfo, Params, Verdict, param};
use regex_lite::Regex;

#[derive(Debug, Default)]
pub struct Drop {
    path_prefix: Vec<String>,
    path_regex: Option<Regex>,
    status: Vec<StatusMatch>,
    method: Vec<String>,
    /// Searchers of the substrings, built once.
    user_agent: Vec<Caseless>,
    all: bool,
}

/// A substring search that ignores ASCII case without lower-casing the
/// text searched: it finds the needle's rarest byte, in either case, with
/// `memchr2` (SIMD), and compares the needle around each one found.
#[derive(Debug)]
pub struct Caseless {
    /// Lower-cased.
    needle: Vec<u8>,
    /// Where in the needle its rarest byte is.
    at: usize,
    /// That byte, lower and upper case.
    rare: (u8, u8),
}

/// How common a byte is in user agents and paths, roughly (higher: more
/// common): digits and the punctuation of version strings first, then
/// letters by their frequency in English.
fn commonness(b: u8) -> u32 {
    const LETTERS: &[u8] = b"zqxjkvbpygfwmucldrhsnioate";
    match b.to_ascii_lowercase() {
        b'0'..=b'9' | b' ' | b'/' | b'.' | b';' | b'(' | b')' => 100,
        l @ b'a'..=b'z' => 10 + LETTERS.iter().position(|&x| x == l).unwrap_or(0) as u32,
        _ => 20,
    }
}

impl Caseless {
    pub fn new(needle: &str) -> Caseless {
        let needle = needle.to_ascii_lowercase().into_bytes();
        let at = (0..needle.len())
            .min_by_key(|&i| commonness(needle[i]))
            .unwrap_or(0);
        let b = needle.get(at).copied().unwrap_or(0);
        Caseless {
            rare: (b, b.to_ascii_uppercase()),
            at,
            needle,
        }
    }

    /// Whether `text` holds the needle, in any case.
    pub fn is_in(&self, text: &[u8]) -> bool {
        let n = self.needle.len();
        if n == 0 {
            return true;
        }
        if text.len() < n {
            return false;
        }
        // A match starting at `s` has the rare byte at `s + at`.
        let candidates = &text[self.at..text.len() - (n - 1 - self.at)];
        memchr::memchr2_iter(self.rare.0, self.rare.1, candidates)
            .any(|s| text[s..s + n].eq_ignore_ascii_case(&self.needle))
    }
}

/// A status, or a class (`4xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusMatch {
    Exact(u16),
    Class(u16),
}

impl StatusMatch {
    fn parse(s: &str) -> Result<StatusMatch, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(class) = lower.strip_suffix("xx")
            && let Ok(c @ 1..=9) = class.parse::<u16>()
        {
            return Ok(StatusMatch::Class(c));
        }
        s.parse()
            .map(StatusMatch::Exact)
            .map_err(|_| format!("status `{s}`: a status (404) or a class (4xx)"))
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Exact(s) => s == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

impl Drop {
    /// Whether event `i` goes: the given conditions tested cheapest first,
    /// stopping as soon as the outcome is known.
    pub fn drops(&self, batch: &Batch, i: usize) -> bool {
        let e = &batch.events;
        // `Some(outcome)` once one condition settles it.
        let settles = |matched: bool| (matched != self.all).then_some(!self.all);
        if !self.status.is_empty()
            && let Some(out) = settles(self.status.iter().any(|s| s.matches(e.status[i])))
        {
            return out;
        }
        if !self.method.is_empty() {
            let m = e.method.bytes(i);
            if let Some(out) = settles(
                self.method
                    .iter()
                    .any(|x| x.as_bytes().eq_ignore_ascii_case(m)),
            ) {
                return out;
            }
        }
        if !self.path_prefix.is_empty() {
            let path = e.path.bytes(i);
            let matched = self
                .path_prefix
                .iter()
                .any(|p| path.starts_with(p.as_bytes()));
            if let Some(out) = settles(matched) {
                return out;
            }
        }
        if let Some(r) = &self.path_regex
            && let Some(out) = settles(r.is_match(e.path.get(i)))
        {
            return out;
        }
        if !self.user_agent.is_empty() {
            let ua = e.user_agent.bytes(i);
            if let Some(out) = settles(self.user_agent.iter().any(|x| x.is_in(ua))) {
                return out;
            }
        }
        // Every condition given went the same way: all matched (`all`), or
        // none did (`any`).
        self.all
    }
}

impl Filter for Drop {
    fn describe() -> FilterInfo {
        FilterInfo {
            name: "drop".into(),
            description: "Drops events by path prefix or regex, status, method or user agent"
                .into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                param(
                    "path_prefix",
                    "paths starting with one of these (comma-separated)",
                    "",
                ),
                param("path_regex", "paths matching this regular expression", ""),
                param(
                    "status",
                    "statuses or classes (404, 5xx; comma-separated)",
                    "",
                ),
                param("method", "methods (HEAD, OPTIONS; comma-separated)", ""),
                param(
                    "user_agent",
                    "user agents containing one of these, any case (bot, spider)",
                    "",
                ),
                param(
                    "match",
                    "any: drop when one condition matches; all: when every one does",
                    "any",
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.path_prefix = params.list("path_prefix");
        self.path_regex = match params.raw("path_regex").map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(Regex::new(r).map_err(|e| format!("path_regex: {e}"))?),
        };
        self.status = params
            .list("status")
            .iter()
            .map(|s| StatusMatch::parse(s))
            .collect::<Result<_, _>>()?;
        self.method = params.list("method");
        self.user_agent = params
            .list("user_agent")
            .into_iter()
            .map(|s| Caseless::new(&s))
            .collect();
        self.all = match params.get("match", "any".to_owned())?.as_str() {
            "any" => false,
            "all" => true,
            other => return Err(format!("match = `{other}`: any or all")),
        };
        let given = !self.path_prefix.is_empty()
            || self.path_regex.is_some()
            || !self.status.is_empty()
            || !self.method.is_empty()
            || !self.user_agent.is_empty();
        if !given {
            return Err(
                "no condition: give path_prefix, path_regex, status, method or user_agent".into(),
            );
        }
        Ok(())
    }

    fn reads(&self) -> Vec<Column> {
        let mut reads = Vec::new();
        if !self.path_prefix.is_empty() || self.path_regex.is_some() {
            reads.push(Column::Path);
        }
        if !self.status.is_empty() {
            reads.push(Column::Status);
        }
        if !self.method.is_empty() {
            reads.push(Column::Method);
        }
        if !self.user_agent.is_empty() {
            reads.push(Column::UserAgent);
        }
        reads
    }

    fn filter(&mut self, batch: &Batch) -> Verdict {
        let n = batch.events.len();
        let mut verdict = Verdict::keep_all(n);
        for i in 0..n {
            if self.drops(batch, i) {
                verdict.drop_event(i);
            }
        }
        verdict
    }
}

logmon_filter::export_filter!(Drop);

#[cfg(test)]
mod tests {
    use super::*;
    use logmon_filter::BatchBuilder;

    fn configured(params: &[(&str, &str)]) -> Result<Drop, String> {
        let params = Params::new(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        params.check(&Drop::describe())?;
        let mut f = Drop::default();
        f.configure(&params)?;
        Ok(f)
    }

    fn sample_reading(reads: &[Column]) -> Batch {
        let mut b = BatchBuilder::new("web");
        b.event().path("/healthz");
        b.event().path("/static/app.css").status(304);
        b.event().path("/api/user").user_agent("Googlebot/2.1");
        b.event().path("/api/user").method("HEAD");
        b.event().path("/api/order").status(503);
        b.event().path("/index.html");
        b.build_reading(reads)
    }

    fn kept(f: &mut Drop) -> Vec<usize> {
        let batch = sample_reading(&f.reads());
        let v = f.filter(&batch);
        (0..batch.events.len()).filter(|&i| v.kept(i)).collect()
    }

    #[test]
    fn any_condition_drops() {
        let mut f = configured(&[
            ("path_prefix", "/healthz, /static/"),
            ("user_agent", "bot"),
            ("method", "head"),
        ])
        .unwrap();
        assert_eq!(kept(&mut f), vec![4, 5]);
        let mut f = configured(&[("status", "5xx")]).unwrap();
        assert_eq!(kept(&mut f), vec![0, 1, 2, 3, 5]);
        let mut f = configured(&[("path_regex", r"\.(css|js|png)$")]).unwrap();
        assert_eq!(kept(&mut f), vec![0, 2, 3, 4, 5]);
    }

    #[test]
    fn all_conditions_must_match_with_match_all() {
        let mut f = configured(&[
            ("path_prefix", "/api/"),
            ("status", "503"),
            ("match", "all"),
        ])
        .unwrap();
        assert_eq!(kept(&mut f), vec![0, 1, 2, 3, 5]);
    }

    /// The caseless search finds what lower-casing both and `contains`
    /// finds.
    #[test]
    fn caseless_search_agrees_with_lowercased_contains() {
        let texts = [
            "",
            "b",
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
            "BOT",
            "roBoT",
            "bo",
            "xbotx",
            "curl/8.5.0",
            "Bingbot bingbot",
            "zzz-Spider-zzz",
        ];
        let needles = [
            "bot",
            "BoT",
            "spider",
            "b",
            "x86_64",
            "curl/8",
            "bingbot bingbot",
            "-s",
            "",
        ];
        for needle in needles {
            let c = Caseless::new(needle);
            for text in texts {
                let want = text
                    .to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase());
                assert_eq!(c.is_in(text.as_bytes()), want, "{needle:?} in {text:?}");
            }
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(configured(&[]).unwrap_err().contains("no condition"));
        assert!(
            configured(&[("path_regex", "(")])
                .unwrap_err()
                .contains("path_regex")
        );
        assert!(
            configured(&[("status", "abc")])
                .unwrap_err()
                .contains("status `abc`")
        );
        assert!(
            configured(&[("paths", "/x")])
                .unwrap_err()
                .contains("unknown parameter")
        );
    }
}
