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

#[derive(Debug, Default)]
pub struct Label {
    key: String,
    patterns: Vec<(String, Regex)>,
    default: String,
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
                let regex = Regex::new(regex.trim())
                    .map_err(|e| format!("patterns: `{}`: {e}", regex.trim()))?;
                Ok((value.trim().to_owned(), regex))
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
