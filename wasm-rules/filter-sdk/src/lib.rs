//! The SDK for logmon edge filters.
//!
//! A filter is a type implementing [`Filter`]; [`export_filter!`] turns it
//! into the exports of the `logmon:edge/filter` WebAssembly component world
//! (`wasm-rules/edge-wit/filter.wit`). The agent calls it once per batch of
//! events, by column, and the filter answers with a [`Verdict`]: which
//! events go on, changes to their text fields, labels to add. Filters are
//! plain Rust, so their logic is unit-tested natively with [`BatchBuilder`].
//!
//! ```ignore
//! #[derive(Default)]
//! struct KeepAll;
//! impl logmon_filter::Filter for KeepAll { /* … */ }
//! logmon_filter::export_filter!(KeepAll);
//! ```

mod build;
mod params;

pub use build::BatchBuilder;
pub use params::Params;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "filter",
        path: "../edge-wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "logmon_filter::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::logmon::edge::types::{
    Batch, Column, ColumnPatch, Events, Field, FilterInfo, Label, LabelColumn, Param, Patch,
    TextColumn, Verdict,
};

/// An edge filter. One value lives per configured use of the filter, in its
/// own sandbox, and sees every batch of its source in order.
pub trait Filter: Default + 'static {
    /// Name, description, version and parameters (with defaults as text).
    fn describe() -> FilterInfo;
    /// Apply parameters; absent ones keep their defaults. Unknown names are
    /// refused before this is called.
    fn configure(&mut self, params: &Params) -> Result<(), String>;
    /// The columns [`Filter::filter`] reads, as configured; the agent fills
    /// only these and sends the others empty. The default, every column,
    /// is always right and costs the most.
    fn reads(&self) -> Vec<Column> {
        Column::ALL.to_vec()
    }
    /// The verdict on one batch.
    fn filter(&mut self, batch: &Batch) -> Verdict;
}

/// Build a [`Param`] description.
pub fn param(name: &str, description: &str, default_value: impl ToString) -> Param {
    Param {
        name: name.to_owned(),
        description: description.to_owned(),
        default_value: default_value.to_string(),
    }
}

impl Column {
    /// Every column.
    pub const ALL: [Column; 11] = [
        Column::Timestamp,
        Column::Client,
        Column::User,
        Column::Method,
        Column::Path,
        Column::Protocol,
        Column::Status,
        Column::Bytes,
        Column::Referer,
        Column::UserAgent,
        Column::DurationUs,
    ];
}

impl Field {
    /// The column this field is read from.
    pub fn column(self) -> Column {
        match self {
            Field::Client => Column::Client,
            Field::User => Column::User,
            Field::Method => Column::Method,
            Field::Path => Column::Path,
            Field::Protocol => Column::Protocol,
            Field::Referer => Column::Referer,
            Field::UserAgent => Column::UserAgent,
        }
    }
}

impl Default for TextColumn {
    fn default() -> Self {
        TextColumn::new()
    }
}

impl TextColumn {
    /// An empty column.
    pub fn new() -> TextColumn {
        TextColumn {
            data: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// An empty column with room for `values` values of `bytes` bytes in
    /// all.
    pub fn with_capacity(values: usize, bytes: usize) -> TextColumn {
        TextColumn {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(values),
        }
    }

    /// Appends a value.
    pub fn push(&mut self, value: &str) {
        self.push_bytes(value.as_bytes());
    }

    /// Appends a value given as bytes (the agent refuses a column that is
    /// not UTF-8).
    pub fn push_bytes(&mut self, value: &[u8]) {
        self.data.extend_from_slice(value);
        self.ends.push(self.data.len() as u32);
    }

    /// Value `i`, as bytes: no UTF-8 check, the cheapest read.
    #[inline]
    pub fn bytes(&self, i: usize) -> &[u8] {
        let end = self.ends[i] as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..end]
    }

    /// Value `i`. The host sends UTF-8; anything else reads as "".
    #[inline]
    pub fn get(&self, i: usize) -> &str {
        std::str::from_utf8(self.bytes(i)).unwrap_or("")
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the column holds no value.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl Events {
    /// The number of events.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A text field of event `i`.
    pub fn text(&self, field: Field, i: usize) -> &str {
        match field {
            Field::Client => self.client.get(i),
            Field::User => self.user.get(i),
            Field::Method => self.method.get(i),
            Field::Path => self.path.get(i),
            Field::Protocol => self.protocol.get(i),
            Field::Referer => self.referer.get(i),
            Field::UserAgent => self.user_agent.get(i),
        }
    }
}

impl Verdict {
    /// Keep all `n` events, change nothing.
    pub fn keep_all(n: usize) -> Verdict {
        let mut keep = vec![0xffu8; n.div_ceil(8)];
        if !n.is_multiple_of(8)
            && let Some(last) = keep.last_mut()
        {
            *last = (1u8 << (n % 8)) - 1;
        }
        Verdict {
            keep,
            columns: Vec::new(),
            patches: Vec::new(),
            label_columns: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Replace `field` in every event by `values` (one per event).
    pub fn replace_column(&mut self, field: Field, values: TextColumn) {
        self.columns.push(ColumnPatch { field, values });
    }

    /// Add a column of labels (see [`LabelColumn::new`]).
    pub fn label_column(&mut self, labels: LabelColumn) {
        self.label_columns.push(labels);
    }

    /// Drop event `i`.
    pub fn drop_event(&mut self, i: usize) {
        self.keep[i / 8] &= !(1 << (i % 8));
    }

    /// Whether event `i` is kept.
    pub fn kept(&self, i: usize) -> bool {
        self.keep[i / 8] & (1 << (i % 8)) != 0
    }

    /// How many events are kept.
    pub fn kept_count(&self) -> usize {
        self.keep.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Set `field` of event `i` to `value`.
    pub fn patch(&mut self, i: usize, field: Field, value: impl Into<String>) {
        self.patches.push(Patch {
            index: i as u32,
            field,
            value: value.into(),
        });
    }

    /// Add label `key` = `value` to event `i`.
    pub fn label(&mut self, i: usize, key: impl Into<String>, value: impl Into<String>) {
        self.labels.push(Label {
            index: i as u32,
            key: key.into(),
            value: value.into(),
        });
    }
}

impl LabelColumn {
    /// Label `key` for a batch of `n` events, none labelled yet.
    pub fn new(key: impl Into<String>, n: usize) -> LabelColumn {
        LabelColumn {
            key: key.into(),
            values: Vec::new(),
            codes: vec![0; n],
        }
    }

    /// The code of `value`, added to the values when new.
    pub fn code(&mut self, value: &str) -> u32 {
        match self.values.iter().position(|v| v == value) {
            Some(p) => p as u32 + 1,
            None => {
                self.values.push(value.to_owned());
                self.values.len() as u32
            }
        }
    }

    /// Label event `i` with the value of `code` (0: no label).
    pub fn set(&mut self, i: usize, code: u32) {
        self.codes[i] = code;
    }

    /// The value event `i` gets, if any.
    pub fn value(&self, i: usize) -> Option<&str> {
        match self.codes[i] {
            0 => None,
            k => self.values.get(k as usize - 1).map(String::as_str),
        }
    }
}

/// Export a [`Filter`] implementation as this component's filter.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        const _: () = {
            use ::std::cell::RefCell;
            use $crate::Filter as _;

            ::std::thread_local! {
                static FILTER: RefCell<$filter> = RefCell::new(<$filter>::default());
            }

            struct Export;

            impl $crate::bindings::Guest for Export {
                fn describe() -> $crate::FilterInfo {
                    <$filter>::describe()
                }
                fn configure(params: Vec<(String, String)>) -> Result<(), String> {
                    let params = $crate::Params::new(params);
                    params.check(&<$filter>::describe())?;
                    FILTER.with_borrow_mut(|filter| filter.configure(&params))
                }
                fn reads() -> Vec<$crate::Column> {
                    FILTER.with_borrow(|filter| filter.reads())
                }
                fn filter(batch: $crate::Batch) -> $crate::Verdict {
                    FILTER.with_borrow_mut(|filter| filter.filter(&batch))
                }
            }

            $crate::bindings::export_bindings!(Export);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_all_sets_exactly_n_bits() {
        for n in [0, 1, 7, 8, 9, 16, 17] {
            let v = Verdict::keep_all(n);
            assert_eq!(v.keep.len(), n.div_ceil(8));
            assert_eq!(v.kept_count(), n, "n = {n}");
        }
        let mut v = Verdict::keep_all(10);
        v.drop_event(3);
        v.drop_event(9);
        assert_eq!(v.kept_count(), 8);
        assert!(!v.kept(3) && !v.kept(9) && v.kept(8));
        assert_eq!(v.keep, vec![0b1111_0111, 0b01]);
    }

    #[test]
    fn columns_read_back_what_the_builder_put() {
        let mut b = BatchBuilder::new("web");
        b.event().path("/a?x=1").client("10.0.0.1").status(404);
        b.event().path("/b").user_agent("curl/8");
        let batch = b.build();
        assert_eq!(batch.source, "web");
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.events.path.get(0), "/a?x=1");
        assert_eq!(batch.events.path.get(1), "/b");
        assert_eq!(batch.events.text(Field::Client, 0), "10.0.0.1");
        assert_eq!(batch.events.text(Field::UserAgent, 0), "");
        assert_eq!(batch.events.text(Field::UserAgent, 1), "curl/8");
        assert_eq!(batch.events.status, vec![404, 200]);
        let only = b.build_reading(&[Column::Path]);
        assert_eq!(only.events.len(), 2);
        assert_eq!(only.events.path.get(1), "/b");
        assert!(only.events.client.is_empty() && only.events.status.is_empty());
    }

    #[test]
    fn label_columns_code_each_value_once() {
        let mut l = LabelColumn::new("route", 4);
        let api = l.code("api");
        l.set(0, api);
        l.set(2, api);
        let page = l.code("page");
        l.set(3, page);
        assert_eq!(l.code("api"), api);
        assert_eq!(l.values, vec!["api", "page"]);
        assert_eq!(l.codes, vec![1, 0, 1, 2]);
        assert_eq!(
            (0..4).map(|i| l.value(i)).collect::<Vec<_>>(),
            vec![Some("api"), None, Some("api"), Some("page")]
        );
    }
}
