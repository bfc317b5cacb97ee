//! A sliding window of per-second values over the last `len` seconds.

use crate::{StateReader, StateWriter};

/// Sum of a per-second quantity over the last `len` seconds `t-len+1 ..= t`.
///
/// The host delivers every second in order, silent ones included, so the
/// window is a ring indexed by arrival; a skipped second (which the host never
/// produces) would be treated as the next slot.
#[derive(Debug, Clone)]
pub struct Window {
    slots: Vec<u64>,
    next: usize,
    sum: u64,
}

/// Two windows are equal when they hold the same seconds in the same order,
/// wherever their rings stand.
impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.slots.len() == other.slots.len() && self.oldest_first().eq(other.oldest_first())
    }
}

impl Default for Window {
    /// A one-second window; rules replace it in `configure`.
    fn default() -> Self {
        Window::new(1)
    }
}

impl Window {
    /// A window of `len` seconds (at least one), all zero: seconds before the
    /// first one seen count as silent.
    pub fn new(len: usize) -> Window {
        Window {
            slots: vec![0; len.max(1)],
            next: 0,
            sum: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sum == 0
    }

    /// Push the newest second's value, dropping the oldest, which is
    /// returned: feeding it to a second window chains the two, so the second
    /// one covers the seconds just before the first (a trailing baseline that
    /// excludes the recent window).
    pub fn push(&mut self, value: u64) -> u64 {
        let old = std::mem::replace(&mut self.slots[self.next], value);
        self.sum = self.sum - old + value;
        self.next = (self.next + 1) % self.slots.len();
        old
    }

    /// Sum over the window.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Mean per second over the whole window length.
    pub fn mean(&self) -> f64 {
        self.sum as f64 / self.slots.len() as f64
    }

    /// Oldest first from position 0, so two windows holding the same
    /// seconds save the same bytes wherever their rings stand (the host
    /// compares saves to pass over long silences).
    pub fn save(&self, w: &mut StateWriter) {
        w.u64(self.slots.len() as u64).u64(0);
        for s in self.oldest_first() {
            w.u64(s);
        }
    }

    /// The seconds' values, oldest first.
    fn oldest_first(&self) -> impl Iterator<Item = u64> + '_ {
        let (newer, older) = self.slots.split_at(self.next);
        older.iter().chain(newer).copied()
    }

    /// Read a window saved by [`Window::save`]; its length must equal `len`.
    pub fn restore(r: &mut StateReader<'_>, len: usize) -> Result<Window, String> {
        let saved = r.u64()?;
        if saved != len as u64 {
            return Err(format!(
                "saved window has {saved} seconds, configured {len}"
            ));
        }
        let next = r.u64()? as usize;
        if next >= len.max(1) {
            return Err("window position out of range".to_owned());
        }
        let mut slots = Vec::with_capacity(len);
        for _ in 0..len {
            slots.push(r.u64()?);
        }
        let sum = slots.iter().sum();
        Ok(Window { slots, next, sum })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_last_len_values() {
        let mut w = Window::new(3);
        for v in [1, 2, 3, 4] {
            w.push(v);
        }
        assert_eq!(w.sum(), 9);
        assert_eq!(w.mean(), 3.0);
        let mut s = StateWriter::new(1);
        w.save(&mut s);
        let blob = s.finish();
        let mut r = StateReader::new(&blob, 1).unwrap();
        let mut back = Window::restore(&mut r, 3).unwrap();
        assert_eq!(back, w);
        back.push(10);
        assert_eq!(back.sum(), 17);
        let mut r = StateReader::new(&blob, 1).unwrap();
        assert!(Window::restore(&mut r, 4).is_err());
    }

    #[test]
    fn the_same_seconds_save_the_same_bytes_wherever_the_ring_stands() {
        let saved = |pushes: &[u64]| {
            let mut w = Window::new(3);
            for &v in pushes {
                w.push(v);
            }
            let mut s = StateWriter::new(1);
            w.save(&mut s);
            s.finish()
        };
        assert_eq!(saved(&[5, 0, 0, 0]), saved(&[9, 9, 0, 0, 0]));
        assert_eq!(saved(&[1, 2, 3]), saved(&[7, 1, 2, 3]));
        assert_ne!(saved(&[1, 2, 3]), saved(&[2, 1, 3]));
        // Restored, it goes on as the original.
        let mut w = Window::new(3);
        for v in [4, 5, 6, 7] {
            w.push(v);
        }
        let blob = saved(&[4, 5, 6, 7]);
        let mut back = Window::restore(&mut StateReader::new(&blob, 1).unwrap(), 3).unwrap();
        for v in [8, 9] {
            assert_eq!(back.push(v), w.push(v));
            assert_eq!(back.sum(), w.sum());
        }
    }

    #[test]
    fn push_returns_what_leaves_so_windows_chain() {
        let mut recent = Window::new(2);
        let mut before = Window::new(3);
        for v in 1..=6 {
            before.push(recent.push(v));
        }
        // recent: 5, 6; before: 2, 3, 4 (1 has left both).
        assert_eq!(recent.sum(), 11);
        assert_eq!(before.sum(), 9);
    }
}
