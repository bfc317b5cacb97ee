//! `GET /api/stream`: Server-Sent Events.
//!
//! The engine publishes each event once, already framed, to a
//! [`tokio::sync::broadcast`] channel: sending never waits, whoever listens.
//! Each client has a task that forwards the channel to its response body
//! through a small bounded queue. A client that reads too slowly falls behind
//! in the channel, which keeps a fixed number of frames; what it missed is
//! gone, and it gets `event: reset` (then the newest frames) so the page
//! refetches `api/series` instead of drawing a hole. A comment line every
//! `keep_alive` keeps proxies from closing an idle stream; shutdown ends
//! every stream, so the server's drain does not wait on them.

use crate::http::Body as ResponseBody;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Frames the broadcast channel keeps for clients that fall behind.
pub const CHANNEL_FRAMES: usize = 512;
/// Frames queued between a client's task and its connection.
const CLIENT_FRAMES: usize = 16;
/// How often an idle stream gets a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event: `event: NAME`, the data (a line per line), a blank line.
pub fn frame(event: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(event.len() + data.len() + 16);
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The comment sent on an idle stream.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

/// `event: reset`: the client missed `skipped` events.
pub fn reset(skipped: u64) -> Bytes {
    frame(
        "reset",
        &serde_json::json!({ "skipped": skipped }).to_string(),
    )
}

/// A response body fed by a client's forwarding task.
#[derive(Debug)]
struct SseBody {
    frames: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|f| Ok(Frame::data(f))))
    }
}

/// Starts a client's stream: `hello` first, then every frame published on
/// `events` from the moment `events` was subscribed, until the client goes
/// or `shutdown`. `guard` is held as long as the stream lives.
pub fn stream<G: Send + 'static>(
    hello: Bytes,
    events: broadcast::Receiver<Bytes>,
    keep_alive: Duration,
    shutdown: CancellationToken,
    guard: G,
) -> ResponseBody {
    let (tx, rx) = mpsc::channel(CLIENT_FRAMES);
    tokio::spawn(async move {
        let _guard = guard;
        forward(hello, events, tx, keep_alive, shutdown).await;
    });
    SseBody { frames: rx }.boxed()
}

/// Moves frames from `events` to `to` until either side closes or
/// `shutdown`; a lag becomes a reset frame.
pub(crate) async fn forward(
    hello: Bytes,
    mut events: broadcast::Receiver<Bytes>,
    to: mpsc::Sender<Bytes>,
    every: Duration,
    shutdown: CancellationToken,
) {
    if to.send(hello).await.is_err() {
        return;
    }
    let mut idle = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = to.closed() => return,
            _ = idle.tick() => keep_alive(),
            received = events.recv() => match received {
                Ok(frame) => frame,
                Err(broadcast::error::RecvError::Lagged(skipped)) => reset(skipped),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        idle.reset();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            sent = to.send(next) => if sent.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn frames_follow_the_event_stream_format() {
        assert_eq!(
            text(&frame("second", "{\"t\":1}")),
            "event: second\ndata: {\"t\":1}\n\n"
        );
        assert_eq!(
            text(&frame("note", "two\r\nlines")),
            "event: note\ndata: two\ndata: lines\n\n"
        );
        assert_eq!(text(&keep_alive()), ": keep-alive\n\n");
        assert_eq!(text(&reset(7)), "event: reset\ndata: {\"skipped\":7}\n\n");
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_a_reset_then_the_newest_frames() {
        let (publish, events) = broadcast::channel(4);
        // The engine publishes ten frames before the client reads anything:
        // publishing never waits.
        for i in 0..10 {
            publish.send(frame("second", &i.to_string())).unwrap();
        }
        let (tx, mut rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(forward(
            frame("hello", "{}"),
            events,
            tx,
            KEEP_ALIVE,
            shutdown.clone(),
        ));
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(text(&rx.recv().await.unwrap()).to_owned());
        }
        assert_eq!(got[0], "event: hello\ndata: {}\n\n");
        assert_eq!(got[1], "event: reset\ndata: {\"skipped\":6}\n\n");
        for (i, g) in got[2..].iter().enumerate() {
            assert_eq!(*g, format!("event: second\ndata: {}\n\n", 6 + i));
        }
        // Caught up: new frames flow as they come.
        publish.send(frame("second", "10")).unwrap();
        assert_eq!(
            text(&rx.recv().await.unwrap()),
            "event: second\ndata: 10\n\n"
        );
        shutdown.cancel();
        task.await.unwrap();
        assert!(rx.recv().await.is_none(), "shutdown ends the stream");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_a_comment_every_keep_alive() {
        let (publish, events) = broadcast::channel(4);
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(forward(
            frame("hello", "{}"),
            events,
            tx,
            Duration::from_secs(15),
            CancellationToken::new(),
        ));
        assert_eq!(
            text(&rx.recv().await.unwrap()),
            "event: hello\ndata: {}\n\n"
        );
        // The paused clock jumps to the next timer: the keep-alive.
        assert_eq!(text(&rx.recv().await.unwrap()), ": keep-alive\n\n");
        publish.send(frame("second", "1")).unwrap();
        assert_eq!(
            text(&rx.recv().await.unwrap()),
            "event: second\ndata: 1\n\n"
        );
        // The client goes away: its task ends.
        drop(rx);
        task.await.unwrap();
        drop(publish);
    }
}
