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
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::AuditObserver;
use super::chain::{AuditKey, ChainHead, HASH_MARKER};
use super::coalesce::Coalescer;
use super::event::{Action, AuditEvent, BodyFormat, Resource};
use super::queue::{ANSWERED, Control, GAVE_UP, Item, Losses, Queue, TAKEN, WAITING, Waiter};
use super::sink::{AuditRecord, AuditSink, Continues, ROTATED_EVENT, SharedTail, TORN_TAIL_EVENT};
use crate::principal::Principal;

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
    /// Holds cache hits back to write them as one event per window (`coalesce`).
    pub(crate) coalescer: Option<Coalescer>,
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
        // `pending[absorbed..]` has not been offered to the coalescer yet.
        let mut absorbed = 0usize;
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
                absorbed = 0;
            }
            // While sinks fail, stop taking more than the queue's worth: producers then block.
            if pending.len() - done < PENDING_AT_MOST {
                self.queue.take(&mut pending, &mut control);
            }
            let mut flush_asked = false;
            for c in control.drain(..) {
                match c {
                    Control::Flush(tx) => {
                        flush_asked = true;
                        flushers.push(tx);
                    }
                    Control::Shutdown => {
                        shutdown.get_or_insert_with(|| Instant::now() + SHUTDOWN_DEADLINE);
                    }
                }
            }
            if let Some(observer) = self.observer.as_mut() {
                let mut i = observed;
                while i < pending.len() {
                    // An intent is not an access yet: its outcome is the event the monitor
                    // counts.
                    if !pending[i].event.intent {
                        observer.observe(&pending[i].event, &mut alerts);
                    }
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
            if let Some(c) = self.coalescer.as_mut() {
                // After the observer: the monitor sees every hit.
                c.absorb(&mut pending, absorbed.max(done));
                // A flush answers for every hit before it; shutdown writes what is held.
                c.emit(
                    SystemTime::now(),
                    flush_asked || !flushers.is_empty() || shutdown.is_some(),
                    &mut pending,
                );
                observed = pending.len();
                absorbed = pending.len();
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
            let written = self.write(&mut pending[batch.clone()], &mut signed);
            if written.committed {
                failures = 0;
                wrote_since_flush = true;
                let mut refused = Vec::new();
                for p in &mut pending[batch.clone()] {
                    let Some(w) = p.waiter.take() else { continue };
                    let heard = answer(&w, written.durable);
                    // The line says the access went ahead; it did not after all (the caller
                    // gave up waiting for this batch, or a durable follower did not keep
                    // it): a second line with the same request id says so.
                    if let Some(r) = w.refusal
                        && (!heard || !written.durable)
                    {
                        let why = if heard { r.not_written } else { r.timed_out };
                        refused.push(Item {
                            event: p.event.refused(why),
                            waiter: None,
                        });
                    }
                }
                done = batch.end;
                if !refused.is_empty() {
                    observed += refused.len();
                    pending.splice(done..done, refused);
                }
                if done < pending.len() {
                    continue;
                }
            } else {
                failures += 1;
                // Not written: every waiting access is refused now, and its event, not yet
                // in the log, is written as refused once a sink takes it. The outcome of a
                // change that was made is written as it is.
                for p in &mut pending[done..] {
                    let Some(w) = p.waiter.take() else { continue };
                    let heard = answer(&w, false);
                    if let Some(r) = w.refusal {
                        let why = if heard { r.not_written } else { r.timed_out };
                        p.event = p.event.refused(why);
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

    fn write(&mut self, pending: &mut [Item], signed: &mut Signed) -> Written {
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
        // Only now, with the sinks locked (which can take a while: another writer's batch),
        // do strict callers start waiting for this batch rather than for their deadline.
        take_waiters(pending);
        let mut head = base
            .as_ref()
            .map_or_else(|| self.head.clone(), |b| b.head.clone());
        let (rotated, cut_off) = base.map_or((None, None), |b| (b.continues, b.cut_off));
        let mut markers: Vec<AuditEvent> = Vec::new();
        markers.extend(rotated.map(rotated_event));
        markers.extend(cut_off.map(cut_off_event));
        let lost = self.lost.map(events_lost_event);
        signed.text.clear();
        signed.lines.clear();
        for event in markers
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
        let records: Vec<AuditRecord<'_>> = markers
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
        // The chain advances only with the sinks that keep the lines durably (the file): a
        // batch one of them could not take is not committed, and is signed again from that
        // sink's own tail when retried, so no durable sink's chain has a gap and no line of
        // it claims what its sink did not keep. The other sinks (tracing, callbacks) get
        // only committed batches; followers (checkpoints) only after them. With no durable
        // sink (best effort with tracing or callbacks alone), any sink taking it commits.
        let keeps = |s: &dyn AuditSink| s.durable() && !s.follows_others();
        let has_keeper = self.sinks.iter().any(|s| keeps(s.as_ref()));
        let mut wrote = vec![false; self.sinks.len()];
        let committed = if has_keeper {
            self.write_pass(&keeps, &ready, &records, &mut wrote);
            let all = (self.sinks.iter().zip(&wrote)).all(|(s, w)| *w || !keeps(s.as_ref()));
            if !all {
                self.revoke(&wrote);
            }
            all
        } else {
            let lines = |s: &dyn AuditSink| !s.follows_others();
            self.write_pass(&lines, &ready, &records, &mut wrote);
            self.sinks.iter().all(|s| s.follows_others()) || wrote.iter().any(|w| *w)
        };
        if committed {
            if has_keeper {
                let others = |s: &dyn AuditSink| !s.follows_others() && !s.durable();
                self.write_pass(&others, &ready, &records, &mut wrote);
            }
            let followers = |s: &dyn AuditSink| s.follows_others();
            self.write_pass(&followers, &ready, &records, &mut wrote);
        }
        // Strict mode's answer: every durable sink, followers included (a checkpoint store),
        // wrote the batch.
        let durable = committed
            && self
                .sinks
                .iter()
                .zip(&wrote)
                .all(|(s, w)| *w || !s.durable());
        for sink in &mut self.sinks {
            let _ = catch_unwind(AssertUnwindSafe(|| sink.unlock_chain()));
        }
        signed.ready = ready;
        self.healthy
            .store(durable, std::sync::atomic::Ordering::Release);
        self.queue.set_sinks_failing(!committed);
        if committed {
            self.lost = None;
            self.head = head;
            if let Ok(mut out) = self.head_out.lock() {
                *out = self.head.clone();
            }
        }
        Written { committed, durable }
    }

    /// Takes the batch back from the sinks that wrote it when another durable sink could not:
    /// it is retried, and they would hold it twice.
    fn revoke(&mut self, wrote: &[bool]) {
        for (sink, _) in self.sinks.iter_mut().zip(wrote).filter(|(_, w)| **w) {
            if let Ok(Err(e)) | Err(e) = catch_unwind(AssertUnwindSafe(|| sink.revoke_batch()))
                .map_err(|_| std::io::Error::other("panicked"))
            {
                tracing::error!(
                    target: "sealbox::audit",
                    sink = sink.name(),
                    error = %e,
                    "audit sink wrote a batch another durable sink could not, and could not \
                     take it back: it will hold the retried batch twice"
                );
            }
        }
    }

    /// Hands `records` to the ready sinks `pick` chooses, noting in `wrote` which took them.
    fn write_pass(
        &mut self,
        pick: &dyn Fn(&dyn AuditSink) -> bool,
        ready: &[bool],
        records: &[AuditRecord<'_>],
        wrote: &mut [bool],
    ) {
        for ((sink, ready), wrote) in self.sinks.iter_mut().zip(ready).zip(wrote) {
            if !*ready || !pick(sink.as_ref()) {
                continue;
            }
            let result = catch_unwind(AssertUnwindSafe(|| sink.write_batch(records)));
            match result {
                Ok(Ok(())) => *wrote = true,
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

/// What became of a batch.
struct Written {
    /// The chain advanced: every sink that keeps lines durably wrote it (any sink, when
    /// none does).
    committed: bool,
    /// Every durable sink wrote it, followers included: strict mode lets its accesses go.
    durable: bool,
}

/// Takes the strict events of a batch about to be signed: their callers now wait for this
/// batch's answer. An event whose caller already gave up (its `strict_timeout` ran out while
/// it was queued) is written as what happened: its access was refused.
fn take_waiters(items: &mut [Item]) {
    for p in items {
        let Some(w) = &p.waiter else { continue };
        if w.state
            .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            == Err(GAVE_UP)
        {
            if let Some(r) = w.refusal {
                p.event = p.event.refused(r.timed_out);
            }
            p.waiter = None;
        }
    }
}

/// Gives a strict caller its answer; `false` when it had given up already (its access was
/// refused, whatever the answer).
fn answer(w: &Waiter, ok: bool) -> bool {
    let mut state = w.state.load(Ordering::Acquire);
    loop {
        if state == GAVE_UP {
            return false;
        }
        match w
            .state
            .compare_exchange(state, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let _ = w.answer.send(ok);
                return true;
            }
            Err(now) => state = now,
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

/// The first line of a file started by rotation: the chain continues from `from`'s last line.
fn rotated_event(from: Continues) -> AuditEvent {
    AuditEvent {
        event: Some(ROTATED_EVENT),
        reason: Some(
            format!(
                "this file continues the chain of {} (its last line: seq {}, hash {})",
                from.file, from.seq, from.hash
            )
            .into(),
        ),
        ..AuditEvent::access(
            Action::Alert,
            Principal::new("sealbox:audit"),
            Resource::named("audit"),
        )
    }
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
