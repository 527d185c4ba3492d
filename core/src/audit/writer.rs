//! The audit writer thread: takes what the queue holds, signs a batch into the chain, hands it
//! to every sink. The chain only advances when at least one sink took the batch; otherwise the
//! batch is kept and retried. While sinks fail, the writer holds up to [`PENDING_AT_MOST`]
//! events, then the per-thread rings fill: best-effort producers then drop and count their
//! events after `max_wait` (strict ones fail). Once a sink writes again, the first line of the
//! next batch is an `audit_events_lost` event with the count and the first and last time of
//! the loss, so the chain itself says what is missing. At shutdown the writer keeps trying for
//! at most [`SHUTDOWN_DEADLINE`], then counts what it could not write as lost.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::AuditObserver;
use super::chain::{AuditKey, ChainHead, HASH_MARKER};
use super::event::{Action, AuditEvent, BodyFormat, Resource};
use super::queue::{Control, Item, Losses, Queue};
use super::sink::{AuditRecord, AuditSink, SharedTail, TORN_TAIL_EVENT};
use crate::client::Principal;

/// Reason written on the events of accesses that strict mode refused because no sink could
/// record them.
pub(crate) const STRICT_REFUSED: &str = "audit sink unavailable; access refused (strict mode)";

/// Lines signed and written per sink call: small enough that the batch text, the sink's
/// buffer and the kernel's copy stay in cache (a 64k-event batch is ~20 MiB and ran at memory
/// speed).
const MAX_BATCH: usize = 1024;
const SHUTDOWN_RETRIES: u32 = 5;
/// How long the writer keeps retrying after the log is dropped, when no sink can write: past
/// it (or after [`SHUTDOWN_RETRIES`] failures) what is left is counted as lost and the thread
/// ends, so dropping a client never hangs on a dead disk for long. A single sink call can
/// still take longer (the file sink waits up to 10 s for another writer's lock).
pub(crate) const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2);
/// The `event` of the line that records dropped events.
pub const EVENTS_LOST_EVENT: &str = "audit_events_lost";
/// Events the writer holds at most; past it (sinks failing), producers block on their rings.
const PENDING_AT_MOST: usize = 65_536;

pub(crate) struct Writer {
    pub(crate) queue: Arc<Queue>,
    pub(crate) sinks: Vec<Box<dyn AuditSink>>,
    pub(crate) key: AuditKey,
    pub(crate) observer: Option<Box<dyn AuditObserver>>,
    pub(crate) head: ChainHead,
    pub(crate) head_out: Arc<std::sync::Mutex<ChainHead>>,
    pub(crate) healthy: Arc<std::sync::atomic::AtomicBool>,
    /// Dropped events not yet recorded in the chain: the next batch starts with them.
    pub(crate) lost: Option<Losses>,
}

/// A signed batch: every line in one buffer, `\n`-separated, and where each line and its hash
/// sit in it.
#[derive(Default)]
struct Signed {
    text: String,
    lines: Vec<(u64, Range<usize>, Range<usize>)>,
    format: BodyFormat,
    hash: String,
    /// Which sinks were locked and take this batch.
    ready: Vec<bool>,
}

/// Marks the queue closed when the writer ends, however it ends, so producers never wait
/// for a writer that is gone.
struct CloseOnExit(Arc<Queue>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Writer {
    pub(crate) fn run(mut self) {
        let _close = CloseOnExit(self.queue.clone());
        // `pending[..done]` is written; the rest waits. Written items are dropped in one go
        // once all are written, so a big backlog is never shifted.
        let mut pending: Vec<Item> = Vec::new();
        let mut done = 0usize;
        let mut control: Vec<Control> = Vec::new();
        let mut flushers: Vec<Sender<bool>> = Vec::new();
        let mut signed = Signed::default();
        let mut observed = 0usize;
        let mut shutdown: Option<Instant> = None;
        let mut failures = 0u32;
        let mut idle_polls = 0u32;
        let mut wrote_since_flush = false;
        let mut alerts = Vec::new();
        loop {
            if done == pending.len() {
                pending.clear();
                done = 0;
                observed = 0;
            }
            // While sinks fail, stop taking more than the queue's worth: producers then block.
            if pending.len() - done < PENDING_AT_MOST {
                self.queue.take(&mut pending, &mut control);
            }
            for c in control.drain(..) {
                match c {
                    Control::Flush(tx) => flushers.push(tx),
                    Control::Shutdown => {
                        shutdown.get_or_insert_with(|| Instant::now() + SHUTDOWN_DEADLINE);
                    }
                }
            }
            if let Some(observer) = self.observer.as_mut() {
                let mut i = observed;
                while i < pending.len() {
                    observer.observe(&pending[i].event, &mut alerts);
                    i += 1;
                    for a in alerts.drain(..) {
                        pending.insert(
                            i,
                            Item {
                                event: a,
                                waiter: None,
                            },
                        );
                        i += 1;
                    }
                }
                observed = pending.len();
            }
            if let Some(l) = self.queue.take_losses() {
                match self.lost.as_mut() {
                    Some(lost) => lost.merge(l),
                    None => self.lost = Some(l),
                }
            }
            if done == pending.len() && self.lost.is_none() {
                if wrote_since_flush {
                    wrote_since_flush = false;
                    if !self.flush_sinks() {
                        for f in flushers.drain(..) {
                            let _ = f.send(false);
                        }
                    }
                }
                for f in flushers.drain(..) {
                    let _ = f.send(true);
                }
                if shutdown.is_some() {
                    return;
                }
                self.queue.idle(idle_polls);
                idle_polls = idle_polls.saturating_add(1);
                continue;
            }
            idle_polls = 0;
            let batch = done..pending.len().min(done + MAX_BATCH);
            if self.write(&pending[batch.clone()], &mut signed) {
                failures = 0;
                wrote_since_flush = true;
                for p in &mut pending[batch.clone()] {
                    if let Some(w) = p.waiter.take() {
                        let _ = w.send(true);
                    }
                }
                done = batch.end;
                if done < pending.len() {
                    continue;
                }
            } else {
                failures += 1;
                for p in &mut pending[done..] {
                    if let Some(w) = p.waiter.take() {
                        p.event = p.event.clone().failed(STRICT_REFUSED);
                        let _ = w.send(false);
                    }
                }
                for f in flushers.drain(..) {
                    let _ = f.send(false);
                }
                let mut backoff = Duration::from_millis(20 * u64::from(failures.min(50)));
                if let Some(deadline) = shutdown {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if failures >= SHUTDOWN_RETRIES || left.is_zero() {
                        self.give_up(&mut pending, done);
                        return;
                    }
                    backoff = backoff.min(left);
                }
                std::thread::sleep(backoff);
            }
        }
    }

    /// Shutdown with no sink writing: counts what is still unwritten (held here or queued) as
    /// lost, in the metric and in a warning (a count, never an event's content).
    fn give_up(&mut self, pending: &mut Vec<Item>, done: usize) {
        let mut control = Vec::new();
        let before = pending.len();
        self.queue.take(pending, &mut control);
        let unwritten = (pending.len() - done) as u64;
        // Losses already counted in the metric and not yet in the chain stay lost too.
        let earlier = self.lost.take().map_or(0, |l| l.count)
            + self.queue.take_losses().map_or(0, |l| l.count);
        self.queue.lose(unwritten);
        // `lose` queued them to be reported; nothing will report them now.
        let _ = self.queue.take_losses();
        // The client (and its metrics) may be gone: the process's recorder still hears it.
        metrics::counter!("sealbox_audit_events_lost_total").increment(unwritten);
        tracing::warn!(
            target: "sealbox::audit",
            events = unwritten,
            queued_at_shutdown = pending.len() - before,
            earlier_losses = earlier,
            "audit shutdown: no sink could write within the deadline; these events are lost \
             (counted in audit_events_lost)"
        );
    }

    /// Lets every sink make durable what it deferred; `false` when one failed to.
    fn flush_sinks(&mut self) -> bool {
        let mut all_ok = true;
        for sink in &mut self.sinks {
            let result = catch_unwind(AssertUnwindSafe(|| sink.flush()));
            if !matches!(result, Ok(Ok(()))) {
                all_ok = false;
                tracing::error!(
                    target: "sealbox::audit",
                    sink = sink.name(),
                    "audit sink failed to flush"
                );
            }
        }
        all_ok
    }

    fn write(&mut self, pending: &[Item], signed: &mut Signed) -> bool {
        // A shared sink (the file, which sibling processes and other clients append to) is
        // locked for the whole batch, and the chain continues from where it stands now, not
        // from this writer's last batch. The cost is per batch: the lock, a stat, and a read of
        // the file's last line only when another writer appended since.
        let mut base: Option<SharedTail> = None;
        let mut ready = std::mem::take(&mut signed.ready);
        ready.clear();
        for sink in &mut self.sinks {
            let ok = match catch_unwind(AssertUnwindSafe(|| sink.lock_chain())) {
                Ok(Ok(None)) => true,
                Ok(Ok(Some(tail))) => match &base {
                    None => {
                        base = Some(tail);
                        true
                    }
                    Some(b) if b.head == tail.head => true,
                    Some(_) => {
                        tracing::error!(
                            target: "sealbox::audit",
                            sink = sink.name(),
                            "audit sink continues another chain than the first file; \
                             give each log its own client"
                        );
                        false
                    }
                },
                Ok(Err(e)) => {
                    tracing::error!(
                        target: "sealbox::audit",
                        sink = sink.name(),
                        error = %e,
                        "audit sink could not be locked for a batch"
                    );
                    false
                }
                Err(_) => false,
            };
            ready.push(ok);
        }
        let mut head = base
            .as_ref()
            .map_or_else(|| self.head.clone(), |b| b.head.clone());
        let marker = base.and_then(|b| b.cut_off).map(cut_off_event);
        let lost = self.lost.map(events_lost_event);
        signed.text.clear();
        signed.lines.clear();
        for event in marker
            .iter()
            .chain(lost.iter())
            .chain(pending.iter().map(|p| &p.event))
        {
            let start = signed.text.len();
            signed
                .format
                .write(event, &mut signed.text, head.next_seq, &head.prev_hash);
            let body_end = signed.text.len();
            signed.text.push_str(HASH_MARKER);
            let hash_start = signed.text.len();
            signed.hash.clear();
            self.key
                .push_mac_hex(&signed.text.as_bytes()[start..body_end], &mut signed.hash);
            signed.text.push_str(&signed.hash);
            let hash_end = signed.text.len();
            signed.text.push_str("\"}");
            signed.lines.push((
                head.next_seq,
                start..signed.text.len(),
                hash_start..hash_end,
            ));
            signed.text.push('\n');
            head.next_seq += 1;
            head.prev_hash.clear();
            head.prev_hash.push_str(&signed.hash);
        }
        let text = &signed.text;
        let records: Vec<AuditRecord<'_>> = marker
            .iter()
            .chain(lost.iter())
            .chain(pending.iter().map(|p| &p.event))
            .zip(&signed.lines)
            .map(|(event, (seq, line, hash))| AuditRecord {
                event,
                seq: *seq,
                hash: &text[hash.clone()],
                line: &text[line.clone()],
            })
            .collect();
        let mut any_ok = self.sinks.iter().all(|s| s.follows_others());
        // Sinks that keep the lines first; followers (checkpoints) only after one of them did.
        for pass in [false, true] {
            if pass && !any_ok {
                break;
            }
            self.write_pass(pass, &ready, &records, &mut any_ok);
        }
        for sink in &mut self.sinks {
            let _ = catch_unwind(AssertUnwindSafe(|| sink.unlock_chain()));
        }
        signed.ready = ready;
        self.healthy
            .store(any_ok, std::sync::atomic::Ordering::Release);
        self.queue.set_sinks_failing(!any_ok);
        if any_ok {
            self.lost = None;
            self.head = head;
            if let Ok(mut out) = self.head_out.lock() {
                *out = self.head.clone();
            }
        }
        any_ok
    }

    /// Hands `records` to the ready sinks that are followers (or not, per `followers`); a
    /// non-follower that wrote them sets `any_ok`.
    fn write_pass(
        &mut self,
        followers: bool,
        ready: &[bool],
        records: &[AuditRecord<'_>],
        any_ok: &mut bool,
    ) {
        for (sink, ready) in self.sinks.iter_mut().zip(ready) {
            if !*ready || sink.follows_others() != followers {
                continue;
            }
            let result = catch_unwind(AssertUnwindSafe(|| sink.write_batch(records)));
            match result {
                Ok(Ok(())) => *any_ok |= !followers,
                Ok(Err(e)) => tracing::error!(
                    target: "sealbox::audit",
                    sink = sink.name(),
                    error = %e,
                    "audit sink failed to write a batch"
                ),
                Err(_) => tracing::error!(
                    target: "sealbox::audit",
                    sink = sink.name(),
                    "audit sink panicked while writing a batch"
                ),
            }
        }
    }
}

/// The signed line that follows a fragment another writer left cut off mid-line.
fn cut_off_event(bytes: u64) -> AuditEvent {
    AuditEvent {
        event: Some(TORN_TAIL_EVENT),
        ..AuditEvent::access(
            Action::Alert,
            Principal::new("sealbox:audit"),
            Resource::named("audit"),
        )
    }
    .failed(format!(
        "torn tail recovered: the line before this one is a fragment of {bytes} bytes cut off \
         mid-line (a writer was killed or the machine crashed while writing it; its event is \
         lost); the chain continues from the line before it"
    ))
}

/// The signed line that records events dropped while no sink could write.
fn events_lost_event(lost: Losses) -> AuditEvent {
    let at = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    AuditEvent {
        event: Some(EVENTS_LOST_EVENT),
        timestamp: lost.last,
        ..AuditEvent::access(
            Action::Alert,
            Principal::new("sealbox:audit"),
            Resource::named("audit"),
        )
    }
    .failed(format!(
        "{} audit events were lost between {} and {}: the queue stayed full for longer than \
         max_wait while no sink could write (best-effort mode); see the audit_events_lost metric",
        lost.count,
        at(lost.first),
        at(lost.last)
    ))
}
