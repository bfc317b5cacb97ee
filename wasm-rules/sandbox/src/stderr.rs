//! A guest's stderr as the host keeps it: the last [`KEPT`] bytes written
//! since the current call began, never more, so a rule that writes without
//! end costs bounded memory and is never stopped for it.

use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of a guest's stderr kept for its fault reports.
pub const KEPT: usize = 4096;

/// The tail of a guest's stderr. Clones share one buffer.
#[derive(Debug, Clone, Default)]
pub struct StderrTail {
    tail: Arc<Mutex<VecDeque<u8>>>,
}

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = &bytes[bytes.len().saturating_sub(KEPT)..];
        let over = (tail.len() + bytes.len()).saturating_sub(KEPT);
        tail.drain(..over);
        tail.extend(bytes);
    }

    /// Forget what was written (a new call begins).
    pub fn clear(&self) {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The end of what was written, lines joined with ` / `, at most `max`
    /// bytes (cut at the start, where `…` says so); `None` when nothing was.
    pub fn last_words(&self, max: usize) -> Option<String> {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = tail.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return None;
        }
        let joined = lines.join(" / ");
        if joined.len() <= max {
            return Some(joined);
        }
        let mut start = joined.len() - max;
        while !joined.is_char_boundary(start) {
            start += 1;
        }
        Some(format!("…{}", &joined[start..]))
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: the oldest bytes make way.
        Ok(KEPT)
    }
}

impl Pollable for StderrTail {
    // `Pollable` is an `async_trait`; this is its expanded form for an
    // always-ready stream.
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_lines() {
        let t = StderrTail::default();
        assert_eq!(t.last_words(100), None);
        t.push(b"Traceback (most recent call last):\n  File \"app.py\", line 3\n\n");
        t.push(b"ValueError: hits were 999\n");
        assert_eq!(
            t.last_words(1000).unwrap(),
            "Traceback (most recent call last): /   File \"app.py\", line 3 / ValueError: hits were 999"
        );
        assert_eq!(t.last_words(25).unwrap(), "…ValueError: hits were 999");
        t.push(&vec![b'x'; 3 * KEPT]);
        t.push(b"\nend");
        assert_eq!(t.tail.lock().unwrap().len(), KEPT);
        assert!(t.last_words(10).unwrap().ends_with("x / end"));
        t.clear();
        assert_eq!(t.last_words(100), None);
    }
}
