//! N plugins in one mio event loop: descriptors, readiness, the timer heap.
//!
//! The [`Supervisor`] owns each plugin's three pipes (non-blocking, registered edge-triggered
//! with one [`mio::Poll`]) and a min-heap of timers (those left with nothing to do, such as an
//! answered call's deadline, dropped as it grows: `compact_timers`); it moves bytes between the
//! pipes and the [`PluginHandle`]s and collects what the handles say for the agent in
//! [`Supervisor::to_agent`].
//! No thread per plugin: one stuck or flooding plugin only costs its own reads, and every read is
//! bounded (64 KiB per wake-up, frames capped before parsing). Writes to a plugin are queued in a
//! bounded buffer and flushed as its pipe drains (back-pressure: a full buffer makes new calls
//! `overloaded`). `stockade run` drives one plugin; `stockade serve` drives many, loading,
//! unloading and restarting them: a slot is [`Supervisor::remove`]d once its plugin is gone and
//! slot numbers are never reused (a restart is a new slot), so a stale token or timer can never
//! reach the wrong plugin. Only live slots are kept (a map by number, not a vector indexed by
//! it): a daemon that runs for months launches plugins without end — every restart, load and
//! relaunch is a new number —, and what it holds follows the plugins it has, not every launch
//! it ever made.
//!
//! A plugin's stderr is read as fast as it comes until the plugin has written its
//! `max_stderr_bytes` (the most of it forwarded); past that nothing of it is forwarded, and
//! reading it as fast as the plugin writes cost the loop half a core for nothing. It is then
//! **throttled** ([`STDERR_THROTTLE`]): after each read of at most that many bytes the pipe
//! leaves the poller until a timer ([`Timer::StderrRead`]) reads it again; a pipe found empty
//! goes back into the poller, so a plugin that has gone quiet costs no wake-up. A plugin
//! flooding it blocks on its own full pipe; the loop, and every other plugin, never wait for
//! it. Its end (EOF, an exit, a kill) closes the pipe as before: a plugin that closed its stdout
//! is reaped after `LINGER` whatever is left in its stderr.
//!
//! Tokens below [`PLUGIN_TOKEN_BASE`] belong to the caller (agent input, signals, sockets).

use super::plugin::{Child, Effects, PluginConfig, PluginHandle, Stuck, Timer};
use crate::sandbox::Sandboxed;
use crate::sys;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use stockade_policy::protocol::message::{codes, notification, response_err, HookInvoke, RpcError};

/// First token used for plugin pipes.
pub const PLUGIN_TOKEN_BASE: usize = 16;

struct Slot {
    handle: PluginHandle,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    /// Its stderr is throttled and out of the poller until its [`Timer::StderrRead`].
    stderr_paused: bool,
}

/// The plugins of one event loop.
pub struct Supervisor {
    poll: Poll,
    /// The plugins not yet removed, by slot number (in launch order).
    slots: BTreeMap<usize, Slot>,
    /// The number the next plugin gets (never reused).
    next_slot: usize,
    timers: BinaryHeap<Reverse<(Instant, usize, Timer)>>,
    /// Messages for the agent, in order (the caller writes them out).
    pub to_agent: Vec<Value>,
    buf: Vec<u8>,
    /// Tokens whose reads stopped at the per-wake-up budget (edge-triggered: no new event will
    /// come for data already there, so they are served on the next turn without waiting).
    hot: Vec<Token>,
    /// Slots whose handle was acted on since [`Supervisor::take_touched`] (only they can have
    /// changed state): the daemon's supervision looks at these, not at every plugin, so a turn
    /// of the loop costs the same with 1 or 1,000 plugins loaded.
    touched: BTreeSet<usize>,
    /// A handle ended since the last pruning of the timer heap.
    prune_timers: bool,
    /// Timers in the heap after its last compaction ([`Supervisor::compact_timers`]).
    timers_kept: usize,
    /// Killed sandboxes the kernel still holds (see [`Stuck`]), looked at again at `stuck_at`.
    /// Dropped with the supervisor, which waits for them: the runtime ends only once they are
    /// gone, their cgroups and uid leases released.
    stuck: Vec<Stuck>,
    /// When to look at `stuck` next, and the pause after that (doubling up to [`STUCK_POLL`].1).
    stuck_at: Option<(Instant, Duration)>,
}

/// Reads per pipe per wake-up; a flooding plugin yields to the others after this many.
const READ_BUDGET: usize = 16;

/// A throttled stderr (past `max_stderr_bytes`): at most this many bytes per read, and at
/// least this long between two reads that took some. 160 KiB/s: a plugin that goes on writing
/// to its stderr at a few lines a second never fills its pipe and never notices; one that
/// floods it blocks on it, and costs the loop ten small reads a second.
pub const STDERR_THROTTLE: (usize, Duration) = (16 * 1024, Duration::from_millis(100));

/// The timer heap is compacted (the timers with nothing left to do dropped) once it holds this
/// many and twice as many as after its last compaction ([`Supervisor::compact_timers`]).
const TIMER_COMPACT_FLOOR: usize = 1024;

/// First and longest pause between two looks at the killed sandboxes that have not ended. A
/// process in uninterruptible sleep may stay there for minutes (a dead NFS server); one look a
/// second at most costs a `waitpid` per stuck sandbox, and no descriptor.
const STUCK_POLL: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

fn token(slot: usize, pipe: usize) -> Token {
    Token(PLUGIN_TOKEN_BASE + slot * 3 + pipe)
}

fn pipe_file(fd: Option<OwnedFd>) -> io::Result<Option<File>> {
    fd.map(|fd| {
        sys::set_nonblocking(fd.as_fd())?;
        Ok(File::from(fd))
    })
    .transpose()
}

impl Supervisor {
    /// An empty supervisor with its own poller.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            slots: BTreeMap::new(),
            next_slot: 0,
            timers: BinaryHeap::new(),
            to_agent: Vec::new(),
            buf: vec![0; 64 * 1024],
            hot: Vec::new(),
            touched: BTreeSet::new(),
            prune_timers: false,
            timers_kept: 0,
            stuck: Vec::new(),
            stuck_at: None,
        })
    }

    /// The registry, for the caller's own sources.
    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Wait for readiness (EINTR is not an error: the caller just loops).
    pub fn poll(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r,
        }
    }

    /// Take over a launched sandbox: its pipes join the loop and the handshake deadline starts.
    pub fn add(&mut self, cfg: PluginConfig, mut sb: Sandboxed, now: Instant) -> io::Result<usize> {
        let pipes = [sb.stdin.take(), sb.stdout.take(), sb.stderr.take()];
        self.add_child(cfg, Box::new(sb), pipes, now)
    }

    /// [`Supervisor::add`] of any [`Child`] with its stdin, stdout and stderr.
    fn add_child(
        &mut self,
        cfg: PluginConfig,
        child: Box<dyn Child>,
        [stdin, stdout, stderr]: [Option<OwnedFd>; 3],
        now: Instant,
    ) -> io::Result<usize> {
        let idx = self.next_slot;
        let stdin = pipe_file(stdin)?;
        let stdout = pipe_file(stdout)?;
        let stderr = pipe_file(stderr)?;
        let reg = self.poll.registry();
        if let Some(f) = &stdin {
            reg.register(
                &mut SourceFd(&f.as_raw_fd()),
                token(idx, 2),
                Interest::WRITABLE,
            )?;
        }
        if let Some(f) = &stdout {
            reg.register(
                &mut SourceFd(&f.as_raw_fd()),
                token(idx, 0),
                Interest::READABLE,
            )?;
        }
        if let Some(f) = &stderr {
            reg.register(
                &mut SourceFd(&f.as_raw_fd()),
                token(idx, 1),
                Interest::READABLE,
            )?;
        }
        let mut fx = Effects::default();
        let handle = PluginHandle::new(cfg, child, now, &mut fx);
        self.next_slot += 1;
        self.slots.insert(
            idx,
            Slot {
                handle,
                stdin,
                stdout,
                stderr,
                stderr_paused: false,
            },
        );
        self.apply(idx, fx);
        Ok(idx)
    }

    /// Calls in flight across all plugins.
    pub fn in_flight(&self) -> usize {
        self.live().map(|s| s.handle.in_flight()).sum()
    }

    fn live(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }

    fn slot(&mut self, idx: usize) -> Option<&mut Slot> {
        self.slots.get_mut(&idx)
    }

    /// The exit status of plugin `idx` once it has ended.
    pub fn exit_status(&self, idx: usize) -> Option<i32> {
        self.handle(idx).and_then(|h| h.exit_status())
    }

    /// Plugin `idx`'s handle (None once removed).
    pub fn handle(&self, idx: usize) -> Option<&PluginHandle> {
        self.slots.get(&idx).map(|s| &s.handle)
    }

    /// Whether a plugin is still before its handshake. `run` waits for it (bounded by the
    /// handshake deadline) before a graceful stop: a plugin told to shut down while still
    /// introducing itself would have its late handshake refused and be killed.
    pub fn any_starting(&self) -> bool {
        self.live()
            .any(|s| s.handle.state() == super::plugin::State::Starting)
    }

    /// Whether every plugin has ended.
    pub fn all_gone(&self) -> bool {
        self.live().all(|s| s.handle.state().is_gone())
    }

    /// Forget a gone plugin's slot (its descriptors are already closed, its process reaped):
    /// what is left of it (the handle, its timers) is dropped. Does nothing while it runs.
    pub fn remove(&mut self, idx: usize) {
        if self.handle(idx).is_some_and(|h| h.state().is_gone()) {
            self.slots.remove(&idx);
            self.timers.retain(|Reverse((_, i, _))| *i != idx);
            self.hot.retain(|t| (t.0 - PLUGIN_TOKEN_BASE) / 3 != idx);
        }
    }

    /// Send an agent's call to plugin `idx` (`serve`'s fan-out picks the plugins).
    pub fn invoke_on(&mut self, idx: usize, agent_id: Value, call: HookInvoke, now: Instant) {
        let mut fx = Effects::default();
        match self.slot(idx) {
            Some(s) => s.handle.invoke(agent_id, call, now, &mut fx),
            None => {
                self.to_agent.push(response_err(
                    &agent_id,
                    &RpcError::new(codes::UNAVAILABLE, "the plugin is not running"),
                ));
                return;
            }
        }
        self.apply(idx, fx);
    }

    /// Begin a graceful stop of plugin `idx`.
    pub fn shutdown(&mut self, idx: usize, now: Instant) {
        let mut fx = Effects::default();
        if let Some(s) = self.slot(idx) {
            s.handle.shutdown(now, &mut fx);
            self.apply(idx, fx);
        }
    }

    /// Route an agent's `hook_invoke`: to a plugin registered for the hook, else to one still
    /// starting (it may register it), else answer `not_registered`. (Fan-out to every registered
    /// plugin is `serve`'s, later.)
    pub fn invoke(&mut self, agent_id: Value, call: HookInvoke, now: Instant) {
        use super::plugin::State;
        let live = |want: &dyn Fn(&PluginHandle) -> bool| {
            self.slots
                .iter()
                .find(|(_, s)| want(&s.handle))
                .map(|(i, _)| *i)
        };
        let pick = live(&|h| h.state() == State::Ready && h.hooks().contains(&call.hook))
            .or_else(|| live(&|h| h.state() == State::Starting))
            .or_else(|| live(&|_| true));
        match pick {
            Some(i) => self.invoke_on(i, agent_id, call, now),
            None => self.to_agent.push(response_err(
                &agent_id,
                &RpcError::new(codes::NOT_REGISTERED, "no plugin is loaded"),
            )),
        }
    }

    /// Begin a graceful stop of every plugin.
    pub fn shutdown_all(&mut self, now: Instant) {
        let live: Vec<usize> = self.slots.keys().copied().collect();
        for i in live {
            self.shutdown(i, now);
        }
    }

    /// Whether `t` is one of ours.
    pub fn owns(&self, t: Token) -> bool {
        t.0 >= PLUGIN_TOKEN_BASE && self.handle((t.0 - PLUGIN_TOKEN_BASE) / 3).is_some()
    }

    /// Handle readiness of one of our tokens.
    pub fn ready(&mut self, t: Token, now: Instant) {
        let idx = (t.0 - PLUGIN_TOKEN_BASE) / 3;
        if self.handle(idx).is_none() {
            return;
        }
        let mut fx = Effects::default();
        let mut budget = READ_BUDGET;
        match (t.0 - PLUGIN_TOKEN_BASE) % 3 {
            0 => loop {
                if budget == 0 {
                    self.hot.push(t);
                    break;
                }
                budget -= 1;
                let Some(slot) = self.slots.get_mut(&idx) else {
                    break;
                };
                let Some(f) = slot.stdout.as_mut() else { break };
                match f.read(&mut self.buf) {
                    Ok(0) => {
                        self.drop_pipe(idx, 0);
                        self.slot(idx)
                            .expect("live")
                            .handle
                            .on_stdout_eof(now, &mut fx);
                        break;
                    }
                    Ok(n) => slot.handle.on_stdout(&self.buf[..n], now, &mut fx),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.drop_pipe(idx, 0);
                        self.slot(idx)
                            .expect("live")
                            .handle
                            .on_stdout_eof(now, &mut fx);
                        break;
                    }
                }
                if self.handle(idx).is_some_and(|h| h.state().is_gone()) {
                    break;
                }
            },
            1 => self.read_stderr(idx, t, now, &mut fx),
            _ => {}
        }
        self.apply(idx, fx);
    }

    /// Read plugin `idx`'s stderr: up to the read budget while it is under its cap, one
    /// throttled read once past it ([`STDERR_THROTTLE`]).
    fn read_stderr(&mut self, idx: usize, t: Token, now: Instant, fx: &mut Effects) {
        for budget in (0..READ_BUDGET).rev() {
            let Some(slot) = self.slots.get_mut(&idx) else {
                return;
            };
            let Some(f) = slot.stderr.as_mut() else {
                return;
            };
            if slot.handle.stderr_throttled() {
                // Its timer reads it (an event from before it was paused is stale).
                if !slot.stderr_paused {
                    self.read_stderr_throttled(idx, now, fx);
                }
                return;
            }
            match f.read(&mut self.buf) {
                Ok(0) => return self.stderr_ended(idx, now, fx),
                Ok(n) => slot.handle.on_stderr(&self.buf[..n], fx),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.stderr_ended(idx, now, fx),
            }
            // Past the cap with this read: out of the poller until its timer.
            if slot.handle.stderr_throttled() {
                return self.pause_stderr(idx, now);
            }
            if budget == 0 {
                self.hot.push(t);
            }
        }
    }

    /// One read of a throttled stderr, of at most [`STDERR_THROTTLE`]`.0` bytes: when it took
    /// some, the pipe leaves the poller until [`STDERR_THROTTLE`]`.1` from now; when it was
    /// empty, it is (back) in the poller, to be read once the plugin writes again.
    fn read_stderr_throttled(&mut self, idx: usize, now: Instant, fx: &mut Effects) {
        let Some(slot) = self.slots.get_mut(&idx) else {
            return;
        };
        let Some(f) = slot.stderr.as_mut() else {
            return;
        };
        let buf = &mut self.buf[..STDERR_THROTTLE.0];
        let r = loop {
            match f.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r,
            }
        };
        match r {
            Ok(0) => self.stderr_ended(idx, now, fx),
            Ok(n) => {
                slot.handle.on_stderr(&buf[..n], fx);
                self.pause_stderr(idx, now);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if slot.stderr_paused {
                    slot.stderr_paused = false;
                    // Registering a pipe that has data again (written since the read) reports
                    // it at once: nothing is missed.
                    let fd = f.as_raw_fd();
                    if self
                        .poll
                        .registry()
                        .register(&mut SourceFd(&fd), token(idx, 1), Interest::READABLE)
                        .is_err()
                    {
                        // Not in the poller: its timer keeps looking instead.
                        self.pause_stderr(idx, now);
                    }
                }
            }
            Err(_) => self.stderr_ended(idx, now, fx),
        }
    }

    /// Take a throttled stderr out of the poller until its next read.
    fn pause_stderr(&mut self, idx: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(&idx) else {
            return;
        };
        let Some(f) = slot.stderr.as_ref() else {
            return;
        };
        if !slot.stderr_paused {
            slot.stderr_paused = true;
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&f.as_raw_fd()));
        }
        self.timers
            .push(Reverse((now + STDERR_THROTTLE.1, idx, Timer::StderrRead)));
    }

    /// Plugin `idx`'s stderr reached its end (or failed): closed, and the handle told.
    fn stderr_ended(&mut self, idx: usize, now: Instant, fx: &mut Effects) {
        self.drop_pipe(idx, 1);
        if let Some(s) = self.slot(idx) {
            s.handle.on_stderr_eof(now, fx);
        }
    }

    fn drop_pipe(&mut self, idx: usize, pipe: usize) {
        let Some(slot) = self.slot(idx) else { return };
        let f = match pipe {
            0 => slot.stdout.take(),
            1 => slot.stderr.take(),
            _ => slot.stdin.take(),
        };
        if let Some(f) = f {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&f.as_raw_fd()));
        }
    }

    /// The slots acted on since the last call (see `touched`).
    pub fn take_touched(&mut self) -> BTreeSet<usize> {
        std::mem::take(&mut self.touched)
    }

    /// Kill a sandbox that is not (or no longer) in a slot and reap it (a launch undone, a warm
    /// spare given up): as a plugin's handle does, without waiting in the loop for one that
    /// does not end.
    pub fn kill_and_reap(&mut self, plugin: &str, sb: Box<dyn super::plugin::Child>) -> Value {
        let mut stuck = Vec::new();
        let report = super::plugin::kill_and_reap(sb, plugin, &mut stuck);
        self.keep_stuck(stuck);
        report
    }

    /// Killed sandboxes that have not ended, to be reaped by [`Supervisor::reap_stuck`].
    fn keep_stuck(&mut self, stuck: Vec<Stuck>) {
        if stuck.is_empty() {
            return;
        }
        self.stuck.extend(stuck);
        self.stuck_at = Some((Instant::now() + STUCK_POLL.0, STUCK_POLL.0));
    }

    /// How many killed sandboxes have not ended yet.
    pub fn stuck(&self) -> usize {
        self.stuck.len()
    }

    /// Reap the killed sandboxes that have ended since the last look (each one's teardown:
    /// cgroup removed, uid lease released), with a `log` line for the agent; look again later
    /// at those still held.
    fn reap_stuck(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.stuck.len() {
            let Some(report) = self.stuck[i].try_reap() else {
                i += 1;
                continue;
            };
            let s = self.stuck.swap_remove(i);
            let message = format!(
                "the sandbox killed {} ms ago has ended and is reaped (cleaned_up: {})",
                s.waited(now).as_millis(),
                report["cleaned_up"]
            );
            self.to_agent.push(notification(
                "log",
                json!({"plugin": s.plugin(), "level": "info", "source": "runtime", "message": message}),
            ));
        }
        self.stuck_at = match (self.stuck.is_empty(), self.stuck_at) {
            (true, _) => None,
            (false, Some((_, pause))) => {
                let pause = (pause * 2).min(STUCK_POLL.1);
                Some((now + pause, pause))
            }
            (false, None) => Some((now + STUCK_POLL.0, STUCK_POLL.0)),
        };
    }

    /// Arm timers, forward agent messages, flush the plugin's stdin, release a gone plugin's fds.
    fn apply(&mut self, idx: usize, fx: Effects) {
        self.touched.insert(idx);
        for (at, t) in fx.timers {
            self.timers.push(Reverse((at, idx, t)));
        }
        if self.timers.len() >= TIMER_COMPACT_FLOOR.max(2 * self.timers_kept) {
            self.compact_timers();
        }
        self.to_agent.extend(fx.to_agent);
        self.keep_stuck(fx.stuck);
        let Some(slot) = self.slots.get_mut(&idx) else {
            return;
        };
        if let Some(f) = slot.stdin.as_mut() {
            while !slot.handle.outbound.is_empty() {
                match f.write(&slot.handle.outbound) {
                    Ok(n) => {
                        slot.handle.outbound.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // EPIPE: the plugin closed its stdin; its stdout EOF will follow.
                    Err(_) => {
                        slot.handle.outbound.clear();
                        slot.handle.close_stdin = true;
                    }
                }
            }
        }
        if slot.handle.close_stdin && slot.handle.outbound.is_empty() && slot.stdin.is_some() {
            self.drop_pipe(idx, 2);
        }
        if self.handle(idx).is_some_and(|h| h.state().is_gone()) {
            self.prune_timers = true;
            self.drop_pipe(idx, 0);
            self.drop_pipe(idx, 1);
            self.drop_pipe(idx, 2);
        }
    }

    /// Serve the tokens left over by the read budget (call once per loop turn).
    pub fn serve_hot(&mut self, now: Instant) {
        for t in std::mem::take(&mut self.hot) {
            self.ready(t, now);
        }
    }

    /// How long until the next timer (None = none armed; zero when reads are left over).
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.hot.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let stuck = self.stuck_at.map(|(at, _)| at);
        next.into_iter()
            .chain(stuck)
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Fire every timer due at `now` (and look at the stuck sandboxes when it is time).
    pub fn fire_timers(&mut self, now: Instant) {
        if self.stuck_at.is_some_and(|(at, _)| at <= now) {
            self.reap_stuck(now);
        }
        while let Some(Reverse((at, idx, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            // The pong may be in the pipe already, unread only because this turn was busy with
            // other work (another plugin's calls): read what has arrived before deciding that
            // the plugin hangs, so a stall elsewhere never kills it for an answer it sent.
            if matches!(t, Timer::PingDeadline(_))
                && self.handle(idx).is_some_and(|h| !h.state().is_gone())
            {
                self.ready(token(idx, 0), now);
            }
            let mut fx = Effects::default();
            if t == Timer::StderrRead {
                if self.slot(idx).is_some_and(|s| s.stderr_paused) {
                    self.read_stderr_throttled(idx, now, &mut fx);
                    self.apply(idx, fx);
                }
                continue;
            }
            if let Some(s) = self.slot(idx) {
                s.handle.on_timer(t, now, &mut fx);
                self.apply(idx, fx);
            }
        }
        // Timers of gone plugins only need to fire once more to be discarded; drop them now so an
        // idle runtime does not wake up for nothing (only after a plugin ended: the heap holds
        // two timers per plugin, and scanning it every turn would make each turn O(plugins)).
        if std::mem::take(&mut self.prune_timers) {
            self.compact_timers();
        }
    }

    /// Drop the timers that have nothing left to do when they fire — those of gone plugins,
    /// and the deadlines of calls answered and pings answered
    /// ([`PluginHandle::timer_pending`]) — and the room they took. A call answered at once
    /// leaves its deadline queued until then: under a long deadline (an operator's, up to an
    /// hour) a busy daemon's heap held every call of the last hour. Called when the heap
    /// doubled since the last compaction ([`TIMER_COMPACT_FLOOR`] at least), so it costs
    /// O(1) per timer armed, and the heap stays within twice what is pending.
    fn compact_timers(&mut self) {
        let slots = &self.slots;
        self.timers.retain(|Reverse((_, idx, t))| {
            slots.get(idx).is_some_and(|s| {
                !s.handle.state().is_gone()
                    && (*t == Timer::StderrRead || s.handle.timer_pending(t))
            })
        });
        self.timers_kept = self.timers.len();
        self.timers.shrink_to(2 * self.timers_kept);
    }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
