//! A tiny versioned binary encoding for rule state (`save`/`restore`).
//!
//! Little-endian fixed-width numbers; readers fail cleanly on short input
//! instead of panicking, so a corrupt snapshot makes the rule start fresh.

/// Appends values to a state buffer.
#[derive(Debug, Default)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    /// Start a state blob tagged with the rule's state format `version`.
    pub fn new(version: u8) -> StateWriter {
        StateWriter { buf: vec![version] }
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v.as_bytes());
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads values written by [`StateWriter`], in the same order.
#[derive(Debug)]
pub struct StateReader<'a> {
    rest: &'a [u8],
}

impl<'a> StateReader<'a> {
    /// Open a state blob, refusing any version but `version`.
    pub fn new(state: &'a [u8], version: u8) -> Result<StateReader<'a>, String> {
        match state.split_first() {
            Some((&v, rest)) if v == version => Ok(StateReader { rest }),
            Some((&v, _)) => Err(format!("state version {v}, expected {version}")),
            None => Err("empty state".to_owned()),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err("state is truncated".to_owned());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn array8(&mut self) -> Result<[u8; 8], String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(a)
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array8()?))
    }
    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array8()?))
    }
    pub fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.array8()?))
    }
    pub fn bool(&mut self) -> Result<bool, String> {
        Ok(self.take(1)?[0] != 0)
    }
    pub fn str(&mut self) -> Result<String, String> {
        let len = usize::try_from(self.u64()?).map_err(|_| "length overflows".to_owned())?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_owned())
    }
    /// Require that everything was read.
    pub fn end(self) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes in state", self.rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let mut w = StateWriter::new(3);
        w.u64(7).i64(-2).f64(1.5).bool(true).str("/api");
        let blob = w.finish();
        let mut r = StateReader::new(&blob, 3).unwrap();
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.i64().unwrap(), -2);
        assert_eq!(r.f64().unwrap(), 1.5);
        assert!(r.bool().unwrap());
        assert_eq!(r.str().unwrap(), "/api");
        r.end().unwrap();
        assert!(StateReader::new(&blob, 4).is_err());
        let mut r = StateReader::new(&blob[..5], 3).unwrap();
        assert_eq!(r.u64(), Err("state is truncated".to_owned()));
    }
}
