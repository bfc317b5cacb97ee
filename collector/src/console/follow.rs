//! Where `replay` reads its lines: a finished file or standard input read to
//! its end, or a live input followed as it grows — a file through the
//! agent's tailer (`logmon_io::tail`: rename rotation and copytruncate, never
//! a second copy of that logic), or standard input when it is a pipe or a
//! terminal. A followed input says when nothing has arrived for a moment
//! ([`Step::Idle`]), so the caller can let the wall clock close seconds.

use anyhow::Context as _;
use logmon_io::tail::{Checkpoints, StartAt, Tailer, TailerConfig};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// How long a followed input waits for more before saying it is idle.
pub const POLL: Duration = Duration::from_millis(100);

/// Most bytes a followed file yields per step.
const BUDGET: u64 = 1 << 20;

/// What one [`Input::next`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Lines were handed on (or the handler asked to stop).
    Lines,
    /// A followed input had nothing new for [`POLL`].
    Idle,
    /// The end of input (never for a followed file).
    End,
}

/// A source of lines. `each` gets every line without its terminator and
/// answers whether to go on.
pub trait Input {
    /// Whether this input is followed (may be idle, ends only on request
    /// or at the end of a pipe).
    fn follows(&self) -> bool;
    fn next(&mut self, each: &mut dyn FnMut(&[u8]) -> anyhow::Result<bool>)
    -> anyhow::Result<Step>;
}

/// How [`open`] reads its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Follow a named file (`--follow`).
    pub follow: bool,
    /// Follow standard input when it is a pipe or a terminal.
    pub follow_stdin: bool,
    /// A followed file starts at its end (`--from-end`).
    pub from_end: bool,
}

/// Opens `input` (standard input when `None` or `-`), with the name
/// diagnostics use.
pub fn open(input: Option<&Path>, opts: Reading) -> anyhow::Result<(String, Box<dyn Input>)> {
    let stdin = input.is_none_or(|p| p == Path::new("-"));
    if stdin {
        anyhow::ensure!(
            !opts.follow,
            "--follow takes a file; standard input is followed by itself when it is a pipe or a terminal"
        );
        let name = "<stdin>".to_owned();
        if opts.follow_stdin && !stdin_is_a_file() {
            return Ok((name, Box::new(Pipe::start()?)));
        }
        let reader: Box<dyn Read> = Box::new(std::io::stdin().lock());
        return Ok((name, Box::new(Whole::new(reader))));
    }
    let path = input.expect("not stdin");
    let name = path.display().to_string();
    if opts.follow {
        return Ok((name, Box::new(Follow::open(path, opts.from_end)?)));
    }
    anyhow::ensure!(
        !opts.from_end,
        "--from-end goes with --follow (a file read once starts at its beginning)"
    );
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    Ok((name, Box::new(Whole::new(Box::new(file)))))
}

/// Whether standard input is a regular file (`replay - < access.log`),
/// read to its end like a named one.
fn stdin_is_a_file() -> bool {
    use std::os::fd::AsFd as _;
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file())
}

/// A file or standard input read to its end, one buffer reused per line.
struct Whole {
    inner: BufReader<Box<dyn Read>>,
    buf: Vec<u8>,
}

impl Whole {
    fn new(reader: Box<dyn Read>) -> Self {
        Whole {
            inner: BufReader::with_capacity(1 << 20, reader),
            buf: Vec::with_capacity(4096),
        }
    }
}

impl Input for Whole {
    fn follows(&self) -> bool {
        false
    }

    fn next(
        &mut self,
        each: &mut dyn FnMut(&[u8]) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Step> {
        loop {
            self.buf.clear();
            if self.inner.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(Step::End);
            }
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            }
            if !each(&self.buf)? {
                return Ok(Step::Lines);
            }
        }
    }
}

/// A file followed like `tail -F`, through the agent's tailer: it keeps
/// reading as the file grows, finishes a file renamed away from its open
/// handle and starts the new one at the path, and starts again at 0 after a
/// copytruncate. Nothing is checkpointed: a new `replay` starts afresh.
struct Follow {
    tailer: Tailer,
    last_error: Option<String>,
}

impl Follow {
    fn open(path: &Path, from_end: bool) -> anyhow::Result<Self> {
        // A missing file is far more often a typo than a log yet to come.
        std::fs::metadata(path).with_context(|| format!("opening {}", path.display()))?;
        let mut config = TailerConfig::for_file(path);
        config.start_at = if from_end {
            StartAt::End
        } else {
            StartAt::Beginning
        };
        let tailer = Tailer::new(config, Checkpoints::new())
            .with_context(|| format!("following {}", path.display()))?;
        Ok(Follow {
            tailer,
            last_error: None,
        })
    }
}

impl Input for Follow {
    fn follows(&self) -> bool {
        true
    }

    fn next(
        &mut self,
        each: &mut dyn FnMut(&[u8]) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Step> {
        let batches = self.tailer.poll(BUDGET);
        let error = self.tailer.last_error().map(str::to_owned);
        if error.is_some() && error != self.last_error {
            tracing::warn!("following: {}", error.as_deref().unwrap_or_default());
        }
        self.last_error = error;
        if batches.is_empty() {
            std::thread::sleep(POLL);
            return Ok(Step::Idle);
        }
        for batch in batches {
            for line in &batch.lines {
                if !each(line.text.as_bytes())? {
                    return Ok(Step::Lines);
                }
            }
            // Read and handled: the tailer may let a rotated file go.
            self.tailer.ack(&batch.stream, batch.end);
        }
        Ok(Step::Lines)
    }
}

/// Standard input that is a pipe or a terminal: a thread reads it, so a
/// quiet writer can be noticed.
struct Pipe {
    chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    /// The unfinished last line of what arrived.
    carry: Vec<u8>,
    ended: bool,
}

impl Pipe {
    fn start() -> anyhow::Result<Self> {
        let (send, chunks) = mpsc::sync_channel(8);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                loop {
                    let mut buf = vec![0; 256 << 10];
                    match stdin.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            buf.truncate(n);
                            if send.send(Ok(buf)).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = send.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .context("starting the standard input reader")?;
        Ok(Pipe {
            chunks,
            carry: Vec::new(),
            ended: false,
        })
    }
}

impl Input for Pipe {
    fn follows(&self) -> bool {
        true
    }

    fn next(
        &mut self,
        each: &mut dyn FnMut(&[u8]) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Step> {
        if self.ended {
            return Ok(Step::End);
        }
        let chunk = match self.chunks.recv_timeout(POLL) {
            Ok(chunk) => chunk.context("reading standard input")?,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(Step::Idle),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.ended = true;
                let last = std::mem::take(&mut self.carry);
                if !last.is_empty() {
                    each(&last)?;
                }
                return Ok(Step::End);
            }
        };
        self.carry.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(at) = memchr::memchr(b'\n', &self.carry[start..]) {
            let go_on = each(&self.carry[start..start + at])?;
            start += at + 1;
            if !go_on {
                break;
            }
        }
        self.carry.drain(..start);
        Ok(Step::Lines)
    }
}
