//! `sample`: keeps 1 in N of the events that match (by path prefix and
//! status class), and every event that does not. The count runs on across
//! batches, so which events are kept is reproducible: the first matching
//! event, the (N+1)-th, and so on.

use logmon_filter::{Batch, Column, Filter, FilterInfo, Params, Verdict, param};

#[derive(Debug, Default)]
pub struct Sample {
    one_in: u64,
    path_prefix: Vec<String>,
    status_class: Vec<u16>,
    /// Matching events seen so far.
    seen: u64,
}

impl Sample {
    fn matches(&self, batch: &Batch, i: usize) -> bool {
        let prefix = self.path_prefix.is_empty() || {
            let path = batch.events.path.bytes(i);
            self.path_prefix
                .iter()
                .any(|p| path.starts_with(p.as_bytes()))
        };
        let class = self.status_class.is_empty()
            || self.status_class.contains(&(batch.events.status[i] / 100));
        prefix && class
    }
}

impl Filter for Sample {
    fn describe() -> FilterInfo {
        FilterInfo {
            name: "sample".into(),
            description: "Keeps 1 in N of the events that match, and all others".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                param("one_in", "keep one matching event in this many", 10),
                param(
                    "path_prefix",
                    "only paths starting with one of these (comma-separated; all when empty)",
                    "",
                ),
                param(
                    "status_class",
                    "only these status classes (2, 3; comma-separated; all when empty)",
                    "",
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.one_in = params.get("one_in", 10u64)?;
        if self.one_in == 0 {
            return Err("one_in must be at least 1".into());
        }
        self.path_prefix = params.list("path_prefix");
        self.status_class = params
            .list("status_class")
            .iter()
            .map(|c| match c.trim_end_matches("xx").parse::<u16>() {
                Ok(c @ 1..=9) => Ok(c),
                _ => Err(format!("status_class `{c}`: a digit 1 to 9 (or 2xx)")),
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn reads(&self) -> Vec<Column> {
        let mut reads = Vec::new();
        if !self.path_prefix.is_empty() {
            reads.push(Column::Path);
        }
        if !self.status_class.is_empty() {
            reads.push(Column::Status);
        }
        reads
    }

    fn filter(&mut self, batch: &Batch) -> Verdict {
        let n = batch.events.len();
        let mut verdict = Verdict::keep_all(n);
        for i in 0..n {
            if self.matches(batch, i) {
                if !self.seen.is_multiple_of(self.one_in) {
                    verdict.drop_event(i);
                }
                self.seen += 1;
            }
        }
        verdict
    }
}

logmon_filter::export_filter!(Sample);

#[cfg(test)]
mod tests {
    use super::*;
    use logmon_filter::BatchBuilder;

    #[test]
    fn keeps_one_in_n_of_the_matching_across_batches() {
        let mut f = Sample::default();
        let params = Params::new(vec![
            ("one_in".into(), "3".into()),
            ("status_class".into(), "2".into()),
        ]);
        f.configure(&params).unwrap();
        let mut b = BatchBuilder::new("web");
        for i in 0..5 {
            b.event().status(if i == 2 { 500 } else { 200 });
        }
        let batch = b.build_reading(&f.reads());
        let first = f.filter(&batch);
        let second = f.filter(&batch);
        let kept = |v: &Verdict| (0..5).filter(|&i| v.kept(i)).collect::<Vec<_>>();
        // Matching: 0, 1, 3, 4 then again 0, 1, 3, 4 (counts 0..8): kept at
        // counts 0, 3, 6 → first batch 0 and 4, second batch 3; the 500 always.
        assert_eq!(kept(&first), vec![0, 2, 4]);
        assert_eq!(kept(&second), vec![2, 3]);
    }
}
