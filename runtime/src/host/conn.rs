//! One agent connection of `stockade serve`: NDJSON in (capped frames), NDJSON out through a
//! bounded buffer.
//!
//! Slow agents: the daemon never blocks on a connection. Messages are queued in the
//! connection's buffer and written as the socket drains; a connection that lets more than
//! `max_outbound_bytes` of answers pile up (it stopped reading) is **dropped**: closed, reported
//! on stderr and counted. One message alone is always queued, however large ([`Conn::push`]):
//! a queue holds at most the cap or one message. Dropping beats silently discarding answers: an agent that misses a
//! response would wait for it forever, one that is disconnected knows to reconnect. Plugins'
//! `log` and `event` notifications are another matter ([`Conn::queue_notification`]): they are
//! discarded and counted past an eighth of the cap, so no plugin can get agents dropped.
//!
//! Fast agents: a connection's requests are answered one at a time, and only while less than a
//! quarter of `max_outbound_bytes` waits to be written to it ([`Conn::has_room`]); the rest wait
//! decoded in its backlog, and nothing more is read until they are answered. An agent that
//! pipelines requests as fast as it can, and reads the answers as fast as it can, is slowed to
//! its own reading pace (its writes block) instead of being dropped for answers that piled up
//! within one turn — however large each answer is next to its request. One that stops reading
//! altogether stalls: with a quarter of the cap of answers waiting (its input paused, or every
//! request read before the answers came) and not one byte taken for [`STALL`], it is dropped
//! as a slow agent.
//!
//! Announcements: a `plugin_state` is never discarded, but one still waiting in the queue is
//! **replaced in place** by a newer one of the same plugin in the same state (same `state`,
//! same `pid`): what repeats in one state is a plugin's late hook registrations (`ready`, each
//! carrying the whole hook list, at most one per `plugin::ANNOUNCE_INTERVAL`) and a restart
//! refused again (`restarting`), and of those only the newest says anything. So an agent that
//! reads slowly holds one announcement per plugin and state change in its queue, however many
//! registrations there were (a plugin registering one hook per 100 ms used to add its whole
//! list, up to 64 KiB, to every connection's queue ten times a second). The newer message takes
//! the older one's place, not the end of the queue: it is not pushed back behind what was queued
//! since (a plugin re-announcing every 100 ms would otherwise never reach an agent that keeps
//! falling behind), so an agent may read a hook list that is newer than messages it reads after
//! it. A change of state is never folded into another: an `exited` or `terminated` (and its
//! reason) is always seen before the `restarting` that follows. A message of which some bytes
//! are already written is never replaced (the newer one is queued after it).
//!
//! End of input is not the end of the connection: an agent that sends its requests and then
//! shuts down its writing side (`shutdown(SHUT_WR)`, as `socat` and `nc -N` do with piped input)
//! still gets every answer. The daemon closes such a connection once nothing it asked for is
//! pending and its answers are written.

use crate::sys::sock::PeerCred;
use mio::net::UnixStream;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};
use stockade_policy::protocol::frame::{encode, Frame, FrameDecoder};

/// Reads per connection per wake-up (fairness between agents).
pub const READ_BUDGET: usize = 16;

/// Requests answered per connection per wake-up (fairness between agents and plugins).
pub const FRAME_BUDGET: usize = 256;

/// How long a connection may be without room (a quarter of the cap of answers waiting) while
/// the agent takes none of its answers, before it is dropped as a slow agent.
pub const STALL: Duration = Duration::from_secs(10);

/// Queued messages handed to one `writev` at most (a turn's answers are many small frames:
/// one write each would be a syscall per message).
const WRITE_SLICES: usize = 64;

/// What makes a queued `plugin_state` replaceable by a newer one: the same plugin in the same
/// state of the same process.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StateKey {
    state: Value,
    pid: Value,
}

/// One message waiting to be written.
struct Queued {
    bytes: Vec<u8>,
    /// A `plugin_state`'s plugin and key (see the module doc, Announcements).
    state: Option<(String, StateKey)>,
}

/// A connection's outbound messages, in order, with the newest `plugin_state` of each plugin
/// findable for replacement.
#[derive(Default)]
struct Outbox {
    q: VecDeque<Queued>,
    /// Bytes of the front message already written.
    head_written: usize,
    /// Bytes waiting (the front message's unwritten part included).
    len: usize,
    /// Sequence number of `q[0]` (every message queued gets the next one).
    base: u64,
    /// Plugin → sequence number of its newest `plugin_state` still queued.
    latest_state: HashMap<String, u64>,
}

impl Outbox {
    fn clear(&mut self) {
        self.base += self.q.len() as u64;
        self.q.clear();
        self.head_written = 0;
        self.len = 0;
        self.latest_state.clear();
    }

    /// The queued `plugin_state` that a new one of `plugin` with `key` replaces: the plugin's
    /// newest one still queued, in the same state, nothing of it written yet.
    fn replaceable(&self, plugin: &str, key: &StateKey) -> Option<usize> {
        let seq = *self.latest_state.get(plugin)?;
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let q = self.q.get(i)?;
        let unsent = i > 0 || self.head_written == 0;
        (unsent && q.state.as_ref().is_some_and(|(_, k)| k == key)).then_some(i)
    }

    fn push(&mut self, m: Queued) {
        if let Some((plugin, _)) = &m.state {
            let seq = self.base + self.q.len() as u64;
            self.latest_state.insert(plugin.clone(), seq);
        }
        self.len += m.bytes.len();
        self.q.push_back(m);
    }

    /// `n` bytes were written.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self.q.front().expect("written bytes were queued");
            let left = front.bytes.len() - self.head_written;
            if n < left {
                self.head_written += n;
                return;
            }
            n -= left;
            self.head_written = 0;
            let done = self.q.pop_front().expect("front");
            if let Some((plugin, _)) = done.state {
                if self.latest_state.get(&plugin) == Some(&self.base) {
                    self.latest_state.remove(&plugin);
                }
            }
            self.base += 1;
        }
    }

    /// The unwritten bytes of the first messages, for one `writev`.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        self.q
            .iter()
            .take(WRITE_SLICES)
            .enumerate()
            .map(|(i, m)| {
                IoSlice::new(if i == 0 {
                    &m.bytes[self.head_written..]
                } else {
                    &m.bytes
                })
            })
            .collect()
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The agent closed it.
    Eof,
    /// A read or write failed.
    Error,
    /// Its outbound buffer overflowed (a slow agent).
    Overflow,
    /// It was without room while its agent took nothing for [`STALL`].
    Stalled,
}

/// One connection.
pub struct Conn {
    /// The socket (non-blocking).
    pub stream: UnixStream,
    /// Its peer's credentials.
    pub peer: PeerCred,
    decoder: FrameDecoder,
    out: Outbox,
    max_out: usize,
    /// Set once it must be closed.
    pub closed: Option<Closed>,
    /// The agent's input ended (EOF): nothing more is read; answers still go out.
    pub read_closed: bool,
    /// Input was left unread for back-pressure ([`Conn::has_room`]): read it once there is
    /// room (the poller is edge-triggered and will not say again).
    pub paused: bool,
    /// Requests read and decoded, not yet answered (for lack of room).
    pub backlog: VecDeque<Frame>,
    /// Since when the connection has been without room ([`Conn::has_room`]) while the agent
    /// took no byte.
    stalled_since: Option<Instant>,
    /// Notifications discarded for lack of room since the agent was last told.
    dropped_notes: u64,
}

/// What one read produced.
pub enum ReadOutcome {
    /// Nothing more to read now (the socket is drained, at its end, or failed).
    Drained,
    /// A chunk was read; more may wait.
    More,
}

impl Conn {
    /// A connection accepting frames of at most `max_frame` bytes and queueing at most
    /// `max_out` bytes.
    pub fn new(stream: UnixStream, peer: PeerCred, max_frame: usize, max_out: usize) -> Self {
        Self {
            stream,
            peer,
            decoder: FrameDecoder::new(max_frame),
            out: Outbox::default(),
            max_out,
            closed: None,
            read_closed: false,
            paused: false,
            backlog: VecDeque::new(),
            stalled_since: None,
            dropped_notes: 0,
        }
    }

    /// Queue a plugin's notification (`log`, `event`) — unless an eighth of the outbound cap
    /// is already waiting: then it is discarded and counted, and the agent is told how many once
    /// there is room again ([`Conn::report_dropped`]). Plugins decide how many of these there
    /// are (a burst of large events), so they must not be able to get a reading agent dropped,
    /// nor keep its requests waiting: below [`Conn::has_room`]'s quarter, notifications alone
    /// never hold up its requests. Answers, which an agent waits for, and `plugin_state`, which
    /// it tracks, are never discarded: a plugin's `plugin_state`s are few (its changes of state,
    /// and its late hook registrations gathered, at most one list per 100 ms:
    /// `plugin::ANNOUNCE_INTERVAL`), and one still queued is replaced by a newer one of the same
    /// plugin in the same state ([`Conn::queue_state`]).
    pub fn queue_notification(&mut self, v: &Value) {
        if self.closed.is_some() {
            return;
        }
        if v["method"] == "plugin_state" {
            return self.queue_state(v);
        }
        let b = encode(v);
        if self.out.len + b.len() > self.max_out / 8 {
            self.dropped_notes += 1;
            return;
        }
        self.report_dropped();
        self.out.push(Queued {
            bytes: b,
            state: None,
        });
    }

    /// Queue a `plugin_state`, in place of the plugin's newest one still unsent if that one is
    /// in the same state (module doc, Announcements); overflowing marks the connection dropped.
    fn queue_state(&mut self, v: &Value) {
        let p = &v["params"];
        let Some(plugin) = p["plugin"].as_str() else {
            return self.queue(v);
        };
        let key = StateKey {
            state: p["state"].clone(),
            pid: p["pid"].clone(),
        };
        let bytes = encode(v);
        match self.out.replaceable(plugin, &key) {
            Some(i) => {
                let old = self.out.q[i].bytes.len();
                let others = self.out.len - old;
                // Alone in the queue, it is taken whatever its size ([`Conn::push`]).
                if others > 0 && others + bytes.len() > self.max_out {
                    return self.overflow();
                }
                self.out.len = self.out.len - old + bytes.len();
                self.out.q[i].bytes = bytes;
            }
            None => self.push(bytes, Some((plugin.to_string(), key))),
        }
    }

    /// Tell the agent how many notifications were discarded for it, if any, when there is
    /// room for the message (called as notifications are queued and as the buffer drains).
    pub fn report_dropped(&mut self) {
        if self.dropped_notes == 0 || self.out.len >= self.max_out / 8 {
            return;
        }
        let n = std::mem::take(&mut self.dropped_notes);
        self.queue(&serde_json::json!({
            "jsonrpc": "2.0",
            "method": "log",
            "params": {"level": "warn", "source": "runtime", "dropped_notifications": n,
                       "message": format!("{n} notifications dropped: this connection's \
                                           outbound buffer was too full to take them")},
        }));
    }

    /// Note a turn on which the connection has no room (answers waiting): true once it has stalled
    /// for [`STALL`] (then it is marked dropped, as an overflow is).
    pub fn stalled(&mut self, now: Instant) -> bool {
        let since = *self.stalled_since.get_or_insert(now);
        if now.duration_since(since) >= STALL {
            self.out.clear();
            self.closed = Some(Closed::Stalled);
            return true;
        }
        false
    }

    /// When a connection without room counts as stalled (for the loop's timeout).
    pub fn stall_deadline(&self) -> Option<Instant> {
        self.stalled_since.map(|s| s + STALL)
    }

    /// Whether its answers have room for more requests to be read: less than a quarter of the
    /// outbound cap is waiting.
    pub fn has_room(&self) -> bool {
        self.out.len < self.max_out / 4
    }

    /// Queue a message; overflowing marks the connection dropped.
    pub fn queue(&mut self, v: &Value) {
        if self.closed.is_some() {
            return;
        }
        self.push(encode(v), None);
    }

    fn push(&mut self, bytes: Vec<u8>, state: Option<(String, StateKey)>) {
        if self.closed.is_some() {
            return;
        }
        if self.out.len + bytes.len() > self.max_out {
            // What the socket takes now is not piling up: write first, then judge.
            self.flush();
            if self.closed.is_some() {
                return;
            }
            // One message alone is always taken: the cap bounds what an agent lets pile up,
            // and a message larger than the cap (a `plugin_list` of many plugins, a fan-out
            // of many large results, a `plugin_state` with a long hook list under a small
            // cap) said nothing of how the agent reads — it was dropped, as "stopped reading",
            // whatever it did, and again at each try. So a queue holds at most the cap or one
            // message, whichever is larger.
            if self.out.len > 0 && self.out.len + bytes.len() > self.max_out {
                return self.overflow();
            }
        }
        self.out.push(Queued { bytes, state });
    }

    fn overflow(&mut self) {
        self.out.clear();
        self.closed = Some(Closed::Overflow);
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.out.len
    }

    /// Messages waiting to be written (the one partly written included).
    pub fn pending_messages(&self) -> usize {
        self.out.q.len()
    }

    /// Write what the socket takes now.
    pub fn flush(&mut self) {
        while self.out.len > 0 && self.closed.is_none() {
            match self.stream.write_vectored(&self.out.slices()) {
                Ok(0) => self.closed = Some(Closed::Error),
                Ok(n) => {
                    self.out.consume(n);
                    self.stalled_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // After its EOF, an agent that closed the whole socket: gone, not a failure.
                Err(_) if self.read_closed => self.closed = Some(Closed::Eof),
                Err(_) => self.closed = Some(Closed::Error),
            }
        }
    }

    /// Read one chunk, decoding frames into `frames` (the daemon answers them before it reads
    /// the next: [`Conn::has_room`]).
    pub fn read_chunk(&mut self, buf: &mut [u8], frames: &mut Vec<Frame>) -> ReadOutcome {
        loop {
            if self.closed.is_some() || self.read_closed {
                return ReadOutcome::Drained;
            }
            return match self.stream.read(buf) {
                Ok(0) => {
                    // A last request without its newline is one too.
                    self.decoder.finish(frames);
                    self.read_closed = true;
                    ReadOutcome::Drained
                }
                Ok(n) => {
                    self.decoder.feed(&buf[..n], frames);
                    ReadOutcome::More
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Drained,
                Err(_) => {
                    self.closed = Some(Closed::Error);
                    ReadOutcome::Drained
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pair(max_out: usize) -> (Conn, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        wrap(a, b, max_out)
    }

    /// [`pair`] whose kernel buffer holds `sndbuf` bytes or so (the kernel doubles it, within
    /// its bounds) whatever the host's default (`net.core.wmem_default`): for a test that needs
    /// a message larger than what the socket takes at once.
    fn small_pair(max_out: usize, sndbuf: usize) -> (Conn, std::os::unix::net::UnixStream) {
        use nix::sys::socket::{setsockopt, sockopt::SndBuf};
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        setsockopt(&a, SndBuf, &sndbuf).unwrap();
        wrap(a, b, max_out)
    }

    fn wrap(
        a: std::os::unix::net::UnixStream,
        b: std::os::unix::net::UnixStream,
        max_out: usize,
    ) -> (Conn, std::os::unix::net::UnixStream) {
        a.set_nonblocking(true).unwrap();
        let peer = PeerCred {
            pid: 1,
            uid: 0,
            gid: 0,
        };
        (Conn::new(UnixStream::from_std(a), peer, 1024, max_out), b)
    }

    #[test]
    fn a_reader_gets_everything_and_a_stalled_one_is_dropped_not_waited_for() {
        let (mut c, mut peer) = pair(8192);
        c.queue(&json!({"a": 1}));
        c.flush();
        let mut buf = [0u8; 64];
        let n = peer.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"{\"a\":1}\n");
        // The peer stops reading: the kernel buffer fills, then ours, then the connection is
        // dropped; nothing here ever blocks.
        let big = json!({"x": "y".repeat(1000)});
        let mut i = 0;
        while c.closed.is_none() {
            c.queue(&big);
            c.flush();
            i += 1;
            assert!(i < 100_000, "never overflowed");
        }
        assert_eq!(c.closed, Some(Closed::Overflow));
        assert_eq!(c.pending(), 0);
    }

    /// One message larger than the cap reaches an agent that reads: it was dropped at once as
    /// a reader that stopped (audit-127: a `plugin_state` of 150 hooks under a 4 KiB cap, a
    /// `plugin_list` of many plugins under the default 4 MiB). Behind something still waiting,
    /// that the peer does not take, such a message overflows as before.
    #[test]
    fn one_message_larger_than_the_cap_is_taken_alone() {
        let (mut c, mut peer) = small_pair(4096, 4096);
        let big = json!({"x": "y".repeat(64 * 1024)});
        c.queue(&big);
        assert_eq!(c.closed, None, "dropped for one message");
        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        while c.closed.is_none() && !got.ends_with(b"\n") {
            c.flush();
            match peer.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(serde_json::from_slice::<Value>(&got).unwrap(), big);
        // Two in a row, the peer taking nothing: the second overflows.
        c.queue(&big);
        c.queue(&big);
        assert_eq!(c.closed, Some(Closed::Overflow));
    }

    /// Plugins' notifications never fill a connection past the point where its requests wait
    /// (they are discarded and counted first); `plugin_state` is never discarded; the count is
    /// told once there is room.
    #[test]
    fn notifications_are_discarded_before_they_hold_up_requests() {
        let (mut c, mut peer) = pair(64 * 1024);
        let event =
            json!({"jsonrpc": "2.0", "method": "event", "params": {"data": "x".repeat(1000)}});
        for _ in 0..200 {
            c.queue_notification(&event);
            assert!(c.has_room(), "notifications alone held up requests");
        }
        assert!(c.dropped_notes > 0);
        let state =
            json!({"jsonrpc": "2.0", "method": "plugin_state", "params": {"state": "ready"}});
        let before = c.pending();
        c.queue_notification(&state);
        assert!(c.pending() > before, "plugin_state is never discarded");
        c.flush();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < before {
            got += peer.read(&mut buf).unwrap();
        }
        c.report_dropped();
        c.flush();
        let n = peer.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.contains("dropped_notifications"), "{text}");
    }

    fn state(plugin: &str, state: &str, pid: u32, hooks: usize) -> Value {
        let hooks: Vec<String> = (0..hooks).map(|i| format!("on:hook-{i:04}")).collect();
        json!({"jsonrpc": "2.0", "method": "plugin_state",
               "params": {"plugin": plugin, "state": state, "pid": pid, "hooks": hooks}})
    }

    /// Everything the peer can read now (the connection flushed as it drains).
    fn read_all(c: &mut Conn, peer: &mut std::os::unix::net::UnixStream) -> Vec<Value> {
        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            c.flush();
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && c.pending() == 0 => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        String::from_utf8(got)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit's finding: three plugins each registering a hook at a time, every registration
    /// announced with the whole list, to an agent that reads nothing. Its queue holds one
    /// announcement per plugin (the newest, in the oldest one's place), not all 900 (2 MB,
    /// which a few more registrations would have taken past the cap: the agent dropped).
    #[test]
    fn a_slow_agent_holds_one_announcement_per_plugin_not_every_registration() {
        let (mut c, mut peer) = pair(4 << 20);
        c.queue(&json!({"id": 1, "result": "first"}));
        let plugins = ["a", "b", "c"];
        for p in plugins {
            c.queue_notification(&state(p, "starting", 7, 0));
        }
        let mut newest = 0;
        for k in 1..=300 {
            for p in plugins {
                let m = state(p, "ready", 7, k);
                newest = encode(&m).len();
                c.queue_notification(&m);
            }
            if k == 1 {
                c.queue(&json!({"id": 2, "result": "between"}));
            }
        }
        assert_eq!(c.closed, None, "the queue overflowed");
        let starting = encode(&state("a", "starting", 7, 0)).len();
        let answers = encode(&json!({"id": 1, "result": "first"})).len()
            + encode(&json!({"id": 2, "result": "between"})).len();
        assert!(
            c.pending() <= answers + 3 * (starting + newest),
            "{} bytes queued: every announcement was kept",
            c.pending()
        );
        let got = read_all(&mut c, &mut peer);
        // In order: the answer, the three `starting`, each plugin's `ready` where its first one
        // was queued (before the answer queued after it) carrying the newest list, the answer.
        let summary: Vec<String> = got
            .iter()
            .map(|m| match m["params"]["state"].as_str() {
                Some(s) => format!(
                    "{}:{s}:{}",
                    m["params"]["plugin"].as_str().unwrap(),
                    m["params"]["hooks"].as_array().unwrap().len()
                ),
                None => m["result"].as_str().unwrap().to_string(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "first",
                "a:starting:0",
                "b:starting:0",
                "c:starting:0",
                "a:ready:300",
                "b:ready:300",
                "c:ready:300",
                "between"
            ]
        );
    }

    /// A change of state is never folded into another (an exit's reason is always seen), nor
    /// is an announcement of another process; and a message partly written stays whole.
    #[test]
    fn changes_of_state_are_kept_and_a_message_partly_written_is_not_replaced() {
        // The big announcement below (≈ 600 KB) must not fit in the socket at once.
        let (mut c, mut peer) = small_pair(4 << 20, 64 * 1024);
        for (s, pid) in [
            ("ready", 7),
            ("exited", 7),
            ("restarting", 0),
            ("starting", 8),
        ] {
            c.queue_notification(&state("a", s, pid, 1));
        }
        c.queue_notification(&state("a", "ready", 8, 1));
        c.queue_notification(&state("a", "ready", 8, 2));
        let got = read_all(&mut c, &mut peer);
        let seen: Vec<(&str, u64, usize)> = got
            .iter()
            .map(|m| {
                let p = &m["params"];
                (
                    p["state"].as_str().unwrap(),
                    p["pid"].as_u64().unwrap(),
                    p["hooks"].as_array().unwrap().len(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("ready", 7, 1),
                ("exited", 7, 1),
                ("restarting", 0, 1),
                ("starting", 8, 1),
                ("ready", 8, 2)
            ]
        );

        // An announcement larger than the socket takes at once: partly written, then a newer
        // one comes. It goes after the first, which arrives whole.
        let big = state("a", "ready", 9, 40_000);
        c.queue_notification(&big);
        c.flush();
        assert!(
            c.pending() > 0 && c.pending() < encode(&big).len(),
            "not partly written"
        );
        c.queue_notification(&state("a", "ready", 9, 3));
        c.queue_notification(&state("a", "ready", 9, 4));
        let got = read_all(&mut c, &mut peer);
        let lens: Vec<usize> = got
            .iter()
            .map(|m| m["params"]["hooks"].as_array().unwrap().len())
            .collect();
        assert_eq!(lens, [40_000, 4]);
    }

    #[test]
    fn frames_are_decoded_with_the_cap() {
        let (mut c, mut peer) = pair(8192);
        peer.write_all(b"{\"a\":1}\n").unwrap();
        peer.write_all(&vec![b'x'; 2000]).unwrap();
        peer.write_all(b"\n").unwrap();
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 4096];
        c.read_chunk(&mut buf, &mut frames);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].is_ok());
        assert!(frames[1].is_err());
        // The peer's end of input (a half-close): nothing more is read, answers still go out.
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        c.read_chunk(&mut buf, &mut frames);
        assert!(c.read_closed);
        assert_eq!(c.closed, None, "still open for the answers");
        c.queue(&json!({"answer": 1}));
        c.flush();
        let mut got = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&peer), &mut got).unwrap();
        assert_eq!(got, "{\"answer\":1}\n");
        // The peer gone altogether: a write after its EOF ends the connection quietly.
        drop(peer);
        while c.closed.is_none() {
            c.queue(&json!({"answer": 2}));
            c.flush();
        }
        assert_eq!(c.closed, Some(Closed::Eof));
    }
}
