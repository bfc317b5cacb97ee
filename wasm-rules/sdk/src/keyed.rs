//! Per-key sums over a sliding window of seconds, kept sparsely.

use crate::{StateReader, StateWriter};
use std::collections::{BTreeMap, VecDeque};

/// Sum of a per-second, per-key quantity (a client's hits, say) over the last
/// `len` seconds `t-len+1 ..= t`.
///
/// Sparse: it holds only the non-zero entries pushed during the window, so
/// its memory follows what was seen (at most `len` × entries per second),
/// not the number of keys ever seen times `len`. A key whose sum falls back to
/// zero is forgotten. Like [`crate::Window`], seconds are slots by arrival:
/// push once per second, silent ones included (with no entries).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedWindow {
    len: usize,
    /// The entries of the seconds in the window, oldest first; fewer than
    /// `len` until `len` seconds were pushed.
    seconds: VecDeque<Vec<(String, u64)>>,
    sums: BTreeMap<String, u64>,
}

impl Default for KeyedWindow {
    /// A one-second window; rules replace it in `configure`.
    fn default() -> Self {
        KeyedWindow::new(1)
    }
}

impl KeyedWindow {
    /// A window of `len` seconds (at least one), empty.
    pub fn new(len: usize) -> KeyedWindow {
        let len = len.max(1);
        KeyedWindow {
            len,
            seconds: VecDeque::with_capacity(len.min(4096)),
            sums: BTreeMap::new(),
        }
    }

    /// Seconds covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No key has a non-zero sum.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Keys with a non-zero sum.
    pub fn keys(&self) -> usize {
        self.sums.len()
    }

    /// Push the newest second's entries (zero values are ignored, repeated
    /// keys added up), dropping the oldest second.
    pub fn push<'a>(&mut self, entries: impl IntoIterator<Item = (&'a str, u64)>) {
        if self.seconds.len() == self.len
            && let Some(old) = self.seconds.pop_front()
        {
            for (key, value) in old {
                if let Some(sum) = self.sums.get_mut(&key) {
                    *sum -= value;
                    if *sum == 0 {
                        self.sums.remove(&key);
                    }
                }
            }
        }
        let mut slot: Vec<(String, u64)> = Vec::new();
        for (key, value) in entries {
            if value == 0 {
                continue;
            }
            match slot.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v += value,
                None => slot.push((key.to_owned(), value)),
            }
            *self.sums.entry(key.to_owned()).or_insert(0) += value;
        }
        self.seconds.push_back(slot);
    }

    /// Sum of `key` over the window (0 for a key not seen in it).
    pub fn get(&self, key: &str) -> u64 {
        self.sums.get(key).copied().unwrap_or(0)
    }

    /// Keys with a non-zero sum and their sums, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.sums.iter().map(|(k, &v)| (k.as_str(), v))
    }

    pub fn save(&self, w: &mut StateWriter) {
        w.u64(self.len as u64).u64(self.seconds.len() as u64);
        for slot in &self.seconds {
            w.u64(slot.len() as u64);
            for (key, value) in slot {
                w.str(key).u64(*value);
            }
        }
    }

    /// Read a window saved by [`KeyedWindow::save`]; its length must equal `len`.
    pub fn restore(r: &mut StateReader<'_>, len: usize) -> Result<KeyedWindow, String> {
        let mut window = KeyedWindow::new(len);
        let saved = r.u64()?;
        if saved != window.len as u64 {
            return Err(format!(
                "saved window has {saved} seconds, configured {}",
                window.len
            ));
        }
        let held = r.u64()?;
        if held > saved {
            return Err(format!("saved window holds {held} of {saved} seconds"));
        }
        for _ in 0..held {
            let n = r.u64()?;
            let mut slot = Vec::new();
            for _ in 0..n {
                let key = r.str()?;
                let value = r.u64()?;
                let sum = window.sums.entry(key.clone()).or_insert(0);
                *sum = sum
                    .checked_add(value)
                    .ok_or_else(|| "saved sums overflow".to_owned())?;
                slot.push((key, value));
            }
            window.seconds.push_back(slot);
        }
        window.sums.retain(|_, v| *v > 0);
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_key_and_forgets_keys_that_left() {
        let mut w = KeyedWindow::new(3);
        w.push([("a", 2), ("b", 1)]);
        w.push([("a", 3), ("a", 1), ("c", 0)]);
        assert_eq!((w.get("a"), w.get("b"), w.get("c")), (6, 1, 0));
        assert_eq!(w.keys(), 2, "a zero value adds no key");
        w.push([]);
        w.push([("b", 5)]);
        // The first second left: a 4, b 5.
        assert_eq!(w.iter().collect::<Vec<_>>(), [("a", 4), ("b", 5)]);
        w.push([]);
        w.push([]);
        assert_eq!(w.iter().collect::<Vec<_>>(), [("b", 5)]);
        w.push([]);
        assert!(w.is_empty(), "every key is forgotten once its seconds left");
        assert!(w.seconds.iter().all(Vec::is_empty));
    }

    #[test]
    fn round_trips_and_refuses_another_length() {
        let mut w = KeyedWindow::new(3);
        w.push([("a", 2), ("b", 1)]);
        w.push([("a", 3)]);
        let mut s = StateWriter::new(1);
        w.save(&mut s);
        let blob = s.finish();
        let mut r = StateReader::new(&blob, 1).unwrap();
        let mut back = KeyedWindow::restore(&mut r, 3).unwrap();
        r.end().unwrap();
        assert_eq!(back, w);
        back.push([]);
        back.push([]);
        assert_eq!(back.iter().collect::<Vec<_>>(), [("a", 3)]);
        let mut r = StateReader::new(&blob, 1).unwrap();
        assert!(KeyedWindow::restore(&mut r, 2).is_err());
    }
}
