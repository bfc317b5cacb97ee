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
    Batch, Events, Field, FilterInfo, Label, Param, Patch, TextColumn, Verdict,
};

/// An edge filter. One value lives per configured use of the filter, in its
/// own sandbox, and sees every batch of its source in order.
pub trait Filter: Default + 'static {
    /// Name, description, version and parameters (with defaults as text).
    fn describe() -> FilterInfo;
    /// Apply parameters; absent ones keep their defaults. Unknown names are
    /// refused before this is called.
    fn configure(&mut self, params: &Params) -> Result<(), String>;
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

impl TextColumn {
    /// Value `i`. The host sends UTF-8; anything else reads as "".
    pub fn get(&self, i: usize) -> &str {
        let end = self.ends[i] as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        std::str::from_utf8(&self.data[start..end]).unwrap_or("")
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
        self.timestamp.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.timestamp.is_empty()
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
            patches: Vec::new(),
            labels: Vec::new(),
        }
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
    }
}
