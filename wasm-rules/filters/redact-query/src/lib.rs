//! `redact-query`: the values of named query parameters (tokens, keys,
//! passwords) replaced before the request leaves the host, in the path and
//! in the referer. `?a=1&token=abc` → `?a=1&token=REDACTED`; names compare
//! without regard to case; everything else of the URL stays byte for byte.

use logmon_filter::{Batch, Column, Field, Filter, FilterInfo, Params, Verdict, param};

#[derive(Debug, Default)]
pub struct RedactQuery {
    names: Vec<String>,
    replacement: String,
    fields: Vec<Field>,
}

/// `url` with the value of every parameter named in `names` replaced, or
/// `None` when nothing changes.
pub fn redact(url: &str, names: &[String], replacement: &str) -> Option<String> {
    let q = url.find('?')?;
    let (head, rest) = url.split_at(q + 1);
    let (query, fragment) = match rest.find('#') {
        Some(f) => rest.split_at(f),
        None => (rest, ""),
    };
    let mut changed = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|part| {
            let (name, value) = match part.find('=') {
                Some(eq) => (&part[..eq], Some(&part[eq + 1..])),
                None => (part, None),
            };
            if names.iter().any(|n| n.eq_ignore_ascii_case(name)) && value != Some(replacement) {
                changed = true;
                format!("{name}={replacement}")
            } else {
                part.to_owned()
            }
        })
        .collect();
    changed.then(|| format!("{head}{}{fragment}", parts.join("&")))
}

impl Filter for RedactQuery {
    fn describe() -> FilterInfo {
        FilterInfo {
            name: "redact-query".into(),
            description: "Replaces the values of named query parameters".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                param(
                    "names",
                    "parameter names (comma-separated)",
                    "token,access_token,api_key,key,password,secret,sig",
                ),
                param("replacement", "what a value becomes", "REDACTED"),
                param(
                    "fields",
                    "where: path, referer (comma-separated)",
                    "path,referer",
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.names = match params.raw("names") {
            Some(_) => params.list("names"),
            None => "token,access_token,api_key,key,password,secret,sig"
                .split(',')
                .map(str::to_owned)
                .collect(),
        };
        if self.names.is_empty() {
            return Err("names: at least one parameter name".into());
        }
        self.replacement = params.get("replacement", "REDACTED".to_owned())?;
        let fields = match params.raw("fields") {
            Some(_) => params.list("fields"),
            None => vec!["path".into(), "referer".into()],
        };
        self.fields = fields
            .iter()
            .map(|f| match f.as_str() {
                "path" => Ok(Field::Path),
                "referer" => Ok(Field::Referer),
                other => Err(format!("fields: `{other}` is not path or referer")),
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn reads(&self) -> Vec<Column> {
        self.fields.iter().map(|f| f.column()).collect()
    }

    fn filter(&mut self, batch: &Batch) -> Verdict {
        let n = batch.events.len();
        let mut verdict = Verdict::keep_all(n);
        for i in 0..n {
            for &field in &self.fields {
                if let Some(v) = redact(batch.events.text(field, i), &self.names, &self.replacement)
                {
                    verdict.patch(i, field, v);
                }
            }
        }
        verdict
    }
}

logmon_filter::export_filter!(RedactQuery);

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["token".into(), "Key".into()]
    }

    #[test]
    fn named_values_are_replaced_and_nothing_else() {
        let r = |u: &str| redact(u, &names(), "X");
        assert_eq!(r("/a?token=abc&b=2").as_deref(), Some("/a?token=X&b=2"));
        assert_eq!(r("/a?b=2&KEY=k#frag").as_deref(), Some("/a?b=2&KEY=X#frag"));
        assert_eq!(r("/a?token").as_deref(), Some("/a?token=X"));
        assert_eq!(r("/a?tokens=1"), None);
        assert_eq!(r("/a?token=X"), None);
        assert_eq!(r("/a"), None);
        assert_eq!(
            r("https://x/?a=1&token=2&token=3").as_deref(),
            Some("https://x/?a=1&token=X&token=X")
        );
    }
}
