//! `stockade serve`'s stderr, written without ever waiting for its reader.
//!
//! The daemon is one event loop (and must stay one thread: `sandbox::launch` forks without
//! fork handlers). Its log lines and the audit log's `stderr` sink (when there is no journal)
//! went to stderr with blocking writes, so a supervisor that started it with a pipe as stderr
//! and stopped reading (SIGSTOPped, busy, wedged) froze every agent and plugin once the pipe
//! filled (64 KiB). Once [`install`]ed, every [`crate::output::print_stderr`] line goes
//! through a queue instead: written at once what the stream takes now
//! ([`crate::sys::sock::write_now`], never `O_NONBLOCK`, which other holders of the stream
//! would see), the rest kept — at most [`CAP`] bytes — and written when the loop is told the
//! stream is writable again (it registers stderr with its `mio` poll: [`Daemon`]) or at the
//! next line. A line that finds the queue full is dropped and counted; "N log line(s)
//! dropped" takes its place in the stream once there is room.
//!
//! An audit record is not a log line: it must not be dropped. [`write_required`] queues it
//! after what is waiting (the stream keeps its order), then waits for it to be written, a
//! bounded time (`serve`'s audit wait, `audit::AuditLog::waiting_at_most`); a record not
//! begun by then is taken back out of the queue and the caller's rule for an unwritten
//! record applies (`audit.busy`, 75: a required record refuses its action). One the stream
//! took part of (longer than `PIPE_BUF`) is committed: written in full, first, and reported
//! written ([`Required::Written`]) — never a refused action whose record still appears. A stream that
//! fails (its reader closed its end, a full disk) loses what was queued; a required record
//! among it is [`Required::Failed`] (`audit`, 74: refused as well, never counted as written).
//!
//! [`Daemon`]: crate::host::daemon::Daemon

use crate::sys::sock::{self, StreamKind};
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Bytes kept waiting at most (log lines; a required record may go past it).
pub const CAP: usize = 256 * 1024;

struct Queue {
    kind: StreamKind,
    /// Lines waiting, each with its sequence number; the first may be partly written
    /// (`offset` bytes of it).
    lines: VecDeque<(u64, Vec<u8>)>,
    offset: usize,
    bytes: usize,
    next_seq: u64,
    /// Lines dropped since the last notice was queued.
    dropped: u64,
    /// Every line up to this sequence number is written (or lost with a broken stream).
    done: u64,
    /// Every line up to this sequence number that was not written was lost with a broken
    /// stream (the reader closed its end, a full disk), and why: a required record among them
    /// is not written ([`Required::Failed`]).
    lost: u64,
    lost_why: Option<(std::io::ErrorKind, String)>,
    /// What the "dropped" notice starts with (the daemon's log prefix).
    prefix: &'static str,
}

static QUEUE: Mutex<Option<Queue>> = Mutex::new(None);

fn queue() -> std::sync::MutexGuard<'static, Option<Queue>> {
    QUEUE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Send this process's stderr through the queue from now on; `prefix` starts the "dropped"
/// notice. Whether the loop must watch stderr for writability (`false`: a regular file or a
/// device that is no terminal — `/dev/null`, `/dev/kmsg` —, which is written as it is and never
/// waits for a reader; or stderr cannot be inspected).
pub fn install(prefix: &'static str) -> bool {
    let kind = sock::stream_kind(std::io::stderr().as_fd()).unwrap_or(StreamKind::File);
    *queue() = Some(Queue {
        kind,
        lines: VecDeque::new(),
        offset: 0,
        bytes: 0,
        next_seq: 1,
        dropped: 0,
        done: 0,
        lost: 0,
        lost_why: None,
        prefix,
    });
    kind != StreamKind::File
}

/// Whether a queue is installed on a stream the loop must watch for writability ([`install`]).
pub fn watched() -> bool {
    queue().as_ref().is_some_and(|q| q.kind != StreamKind::File)
}

/// Write stderr directly again (what the queue still holds is written first, blocking).
pub fn uninstall() {
    let q = queue().take();
    if let Some(q) = q {
        let mut err = std::io::stderr().lock();
        for (i, (_, l)) in q.lines.iter().enumerate() {
            let from = if i == 0 { q.offset } else { 0 };
            let _ = std::io::Write::write_all(&mut err, &l[from..]);
        }
    }
}

impl Queue {
    fn enqueue(&mut self, text: Vec<u8>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += text.len();
        self.lines.push_back((seq, text));
        seq
    }

    fn queue_notice(&mut self) {
        let n = std::mem::take(&mut self.dropped);
        let notice = format!(
            "{}{n} log line(s) dropped: stderr was not being read\n",
            self.prefix
        );
        self.enqueue(notice.into_bytes());
    }

    /// Write what the stream takes now; whether the queue is empty.
    fn drain(&mut self) -> bool {
        let stderr = std::io::stderr();
        loop {
            if self.lines.is_empty() {
                if self.dropped == 0 {
                    return true;
                }
                self.queue_notice();
            }
            let Some((seq, line)) = self.lines.front() else {
                return true;
            };
            match sock::write_now(stderr.as_fd(), self.kind, &line[self.offset..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.offset += n;
                    if self.offset >= line.len() {
                        self.done = *seq;
                        self.bytes -= line.len();
                        self.offset = 0;
                        self.lines.pop_front();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Nobody can read it (the reader closed its end): lost, as a blocking write's
                // failure lost it (`print_stderr` ignores those).
                Err(e) => {
                    self.lost = self.next_seq - 1;
                    self.lost_why = Some((e.kind(), e.to_string()));
                    self.done = self.next_seq - 1;
                    self.lines.clear();
                    self.bytes = 0;
                    self.offset = 0;
                    self.dropped = 0;
                    return true;
                }
            }
        }
    }
}

/// Queue one line (its newline included) and write what the stream takes now; `false` when no
/// queue is installed (the caller writes it itself). A line that does not fit in [`CAP`] is
/// dropped and counted.
pub fn push(text: &[u8]) -> bool {
    let mut g = queue();
    let Some(q) = g.as_mut() else {
        return false;
    };
    if q.bytes + text.len() > CAP {
        q.dropped += 1;
        return true;
    }
    if q.dropped > 0 {
        q.queue_notice();
    }
    q.enqueue(text.to_vec());
    q.drain();
    true
}

/// Write what is waiting and the stream takes now (the loop calls this when stderr is
/// writable, and once a turn).
pub fn drain() {
    if let Some(q) = queue().as_mut() {
        q.drain();
    }
}

/// What [`write_required`] did.
#[derive(Debug)]
pub enum Required {
    /// No queue: the caller writes it itself (the CLI; blocking, as before).
    NotQueued,
    /// Written to the stream: in full, or begun — the stream took part of it (a line longer
    /// than the pipe's atomic write, `PIPE_BUF`) before the wait ran out. A begun record is
    /// committed: its rest stays first in the queue, never dropped nor taken back, and is
    /// written before anything after it, so the stream never holds part of a record, nor a
    /// record of an action that was refused (it was reported `Busy` and its rest still written:
    /// a record of what did not happen). It is lost only as a record the pipe holds is, with
    /// the stream (its reader closed its end).
    Written,
    /// Not written: the stream failed (its reader closed its end, a full disk) — the record is
    /// lost, as a log line would be, and the caller's rule for an unwritten record applies.
    Failed(std::io::Error),
    /// Not begun within the wait: taken back out of the queue, none of it in the stream.
    Busy,
}

/// Write `text` (a whole line) after what is queued, waiting `wait` at most for the stream to
/// take it; it is never dropped as a log line is.
pub fn write_required(text: &[u8], wait: Duration) -> Required {
    let mut g = queue();
    let Some(q) = g.as_mut() else {
        return Required::NotQueued;
    };
    if q.dropped > 0 {
        q.queue_notice();
    }
    let seq = q.enqueue(text.to_vec());
    let deadline = Instant::now() + wait;
    let stderr = std::io::stderr();
    loop {
        q.drain();
        if q.lost >= seq {
            let (kind, why) = q
                .lost_why
                .clone()
                .unwrap_or((std::io::ErrorKind::Other, String::new()));
            return Required::Failed(std::io::Error::new(kind, why));
        }
        if q.done >= seq {
            return Required::Written;
        }
        let now = Instant::now();
        if now >= deadline {
            // Begun: committed, its rest written first (see `Required::Written`).
            let started = q.lines.front().is_some_and(|(s, _)| *s == seq) && q.offset > 0;
            if started {
                return Required::Written;
            }
            if let Some(i) = q.lines.iter().position(|(s, _)| *s == seq) {
                if let Some((_, l)) = q.lines.remove(i) {
                    q.bytes -= l.len();
                }
            }
            return Required::Busy;
        }
        let left = deadline.saturating_duration_since(now);
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        match q.kind {
            // Always writable: the drain above wrote it (or the stream broke).
            StreamKind::File => {}
            _ => {
                if sock::writable_within(stderr.as_fd(), ms).is_err() {
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                }
            }
        }
    }
}

/// Wait `wait` at most for the queue to be written (the daemon's last lines, at exit).
pub fn flush(wait: Duration) {
    let deadline = Instant::now() + wait;
    let stderr = std::io::stderr();
    loop {
        let mut g = queue();
        let Some(q) = g.as_mut() else {
            return;
        };
        if q.drain() {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        if sock::writable_within(stderr.as_fd(), ms).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    /// A required record longer than `PIPE_BUF` that the pipe takes only part of before the
    /// wait runs out is committed: reported written (its action goes ahead), its rest written
    /// first once the reader reads again, the record whole and once in the stream. It was
    /// reported `Busy` (the action refused) while its rest was still written: a record of an
    /// action that did not happen. One the pipe takes nothing of is `Busy` and never appears.
    #[test]
    fn a_record_the_stream_took_part_of_is_finished_and_counts_as_written() {
        // The queue writes this process's fd 2: a pipe stands in for it during the test (and
        // the old stderr is put back before any assertion can fail).
        let (rd, wr) = nix::unistd::pipe().unwrap();
        let saved = std::io::stderr().as_fd().try_clone_to_owned().unwrap();
        crate::sys::dup2(wr.as_fd(), 2).unwrap();
        let mut writer = std::fs::File::from(wr);
        let mut reader = std::fs::File::from(rd);
        // Fill all but one page of the pipe (64 KiB, 16 pages): `write_now` takes one
        // `PIPE_BUF` (4 KiB), then the pipe is full.
        let filler = vec![b'.'; 15 * 4096];
        writer.write_all(&filler).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            assert!(install("test: "));
            let mut record = vec![b'r'; 10_000];
            record.push(b'\n');
            let begun = write_required(&record, Duration::from_millis(100));
            // Nothing of this one fits now: not begun, taken back.
            let never = write_required(b"never\n", Duration::from_millis(50));
            (begun, never)
        });
        let mut got = vec![0; filler.len()];
        reader.read_exact(&mut got).unwrap();
        flush(Duration::from_secs(5));
        uninstall();
        crate::sys::dup2(saved.as_fd(), 2).unwrap();
        drop(writer);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        let (begun, never) = outcome.unwrap();
        assert!(matches!(begun, Required::Written), "{begun:?}");
        assert!(matches!(never, Required::Busy), "{never:?}");
        let mut want = vec![b'r'; 10_000];
        want.push(b'\n');
        assert_eq!(rest, want, "the record, whole, and nothing after it");
    }
}
