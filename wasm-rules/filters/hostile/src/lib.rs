//! `hostile`: a filter that misbehaves on purpose, for the agent's sandbox
//! tests; built with the shipped filters but never embedded.
//!
//! `mode`: `spin` loops forever, `hog` allocates without bound, `trap`
//! panics, `short` answers a keep bitmap of the wrong length, `far` patches
//! an event past the batch, `column` replaces a column with one value too
//! few, `code` labels an event with a code past its label values, `calm`
//! keeps everything (reading every column). `after`: the number of
//! good batches before it misbehaves.

use logmon_filter::{
    Batch, Field, Filter, FilterInfo, LabelColumn, Params, TextColumn, Verdict, param,
};

#[derive(Debug, Default)]
pub struct Hostile {
    mode: String,
    after: u64,
    seen: u64,
}

impl Filter for Hostile {
    fn describe() -> FilterInfo {
        FilterInfo {
            name: "hostile".into(),
            description: "Misbehaves on purpose (sandbox tests)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                param(
                    "mode",
                    "spin | hog | trap | short | far | column | code | calm",
                    "calm",
                ),
                param("after", "good batches before misbehaving", 0),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.mode = params.get("mode", "calm".to_owned())?;
        self.after = params.get("after", 0)?;
        Ok(())
    }

    fn filter(&mut self, batch: &Batch) -> Verdict {
        let n = batch.events.len();
        self.seen += 1;
        if self.seen <= self.after {
            return Verdict::keep_all(n);
        }
        match self.mode.as_str() {
            "spin" => {
                let mut x = n as u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile filter trapping on batch {}", self.seen),
            "short" => {
                let mut v = Verdict::keep_all(n);
                v.keep.push(0xff);
                v
            }
            "far" => {
                let mut v = Verdict::keep_all(n);
                v.patch(n + 5, Field::Path, "/nowhere");
                v
            }
            "column" => {
                let mut v = Verdict::keep_all(n);
                let mut values = TextColumn::new();
                for _ in 1..n {
                    values.push("x");
                }
                v.replace_column(Field::Method, values);
                v
            }
            "code" => {
                let mut v = Verdict::keep_all(n);
                let mut l = LabelColumn::new("k", n);
                let code = l.code("v");
                if n > 0 {
                    l.set(n - 1, code + 1);
                }
                v.label_column(l);
                v
            }
            _ => Verdict::keep_all(n),
        }
    }
}

logmon_filter::export_filter!(Hostile);
