//! The audit writer thread: drains the queue, signs a batch into the chain, hands it to every
//! sink. The chain only advances when at least one sink took the batch; otherwise the batch is
//! kept and retried (backpressure reaches callers once the queue is full), so nothing is dropped
//! while the process lives.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::AuditObserver;
use super::chain::{AuditKey, ChainHead, HASH_MARKER};
use super::event::AuditEvent;
use super::sink::{AuditRecord, AuditSink};

/// Reason written on the events of accesses that strict mode refused because no sink could
/// record them.
pub(crate) const STRICT_REFUSED: &str = "audit sink unavailable; access refused (strict mode)";

const MAX_BATCH: usize = 8192;
const SHUTDOWN_RETRIES: u32 = 5;

pub(crate) enum Msg {
    Event(AuditEvent, Option<Sender<bool>>),
    Flush(Sender<bool>),
    Shutdown,
}

pub(crate) struct Writer {
    pub(crate) rx: Receiver<Msg>,
    pub(crate) sinks: Vec<Box<dyn AuditSink>>,
    pub(crate) key: AuditKey,
    pub(crate) observer: Option<Box<dyn AuditObserver>>,
    pub(crate) capacity: usize,
    pub(crate) head: ChainHead,
    pub(crate) head_out: std::sync::Arc<std::sync::Mutex<ChainHead>>,
    pub(crate) healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

struct Pending {
    event: AuditEvent,
    waiter: Option<Sender<bool>>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        let mut pending: Vec<Pending> = Vec::new();
        let mut flushers: Vec<Sender<bool>> = Vec::new();
        let mut observed = 0usize;
        let mut shutdown = false;
        let mut failures = 0u32;
        let mut alerts = Vec::new();
        loop {
            if pending.is_empty() && flushers.is_empty() && !shutdown {
                match self.rx.recv() {
                    Ok(m) => take(m, &mut pending, &mut flushers, &mut shutdown),
                    Err(_) => shutdown = true,
                }
            }
            while !shutdown && pending.len() < self.capacity.max(MAX_BATCH) {
                match self.rx.try_recv() {
                    Ok(m) => take(m, &mut pending, &mut flushers, &mut shutdown),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        shutdown = true;
                        break;
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
                            Pending {
                                event: a,
                                waiter: None,
                            },
                        );
                        i += 1;
                    }
                }
                observed = pending.len();
            }
            if pending.is_empty() {
                for f in flushers.drain(..) {
                    let _ = f.send(true);
                }
                if shutdown {
                    return;
                }
                continue;
            }
            if self.write(&pending) {
                failures = 0;
                for p in pending.drain(..) {
                    if let Some(w) = p.waiter {
                        let _ = w.send(true);
                    }
                }
                observed = 0;
                for f in flushers.drain(..) {
                    let _ = f.send(true);
                }
                if shutdown {
                    return;
                }
            } else {
                failures += 1;
                for p in pending.iter_mut() {
                    if let Some(w) = p.waiter.take() {
                        p.event = p.event.clone().failed(STRICT_REFUSED);
                        let _ = w.send(false);
                    }
                }
                for f in flushers.drain(..) {
                    let _ = f.send(false);
                }
                if shutdown && failures >= SHUTDOWN_RETRIES {
                    tracing::error!(
                        target: "sealbox::audit",
                        events = pending.len(),
                        "audit shutdown: no sink can write; these events are lost"
                    );
                    return;
                }
                let backoff = Duration::from_millis(20 * u64::from(failures.min(50)));
                std::thread::sleep(backoff);
            }
        }
    }

    fn write(&mut self, pending: &[Pending]) -> bool {
        let mut head = self.head.clone();
        let mut lines = Vec::with_capacity(pending.len());
        let mut body = String::with_capacity(512);
        for p in pending {
            body.clear();
            p.event
                .write_body(&mut body, head.next_seq, &head.prev_hash);
            let hash = self.key.mac_hex(body.as_bytes());
            let mut line = String::with_capacity(body.len() + HASH_MARKER.len() + 66);
            line.push_str(&body);
            line.push_str(HASH_MARKER);
            line.push_str(&hash);
            line.push_str("\"}");
            lines.push((head.next_seq, hash.clone(), line));
            head.next_seq += 1;
            head.prev_hash = hash;
        }
        let records: Vec<AuditRecord<'_>> = pending
            .iter()
            .zip(&lines)
            .map(|(p, (seq, hash, line))| AuditRecord {
                event: &p.event,
                seq: *seq,
                hash,
                line,
            })
            .collect();
        let mut any_ok = self.sinks.is_empty();
        for sink in &mut self.sinks {
            let result = catch_unwind(AssertUnwindSafe(|| sink.write_batch(&records)));
            match result {
                Ok(Ok(())) => any_ok = true,
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
        self.healthy
            .store(any_ok, std::sync::atomic::Ordering::Release);
        if any_ok {
            self.head = head;
            if let Ok(mut out) = self.head_out.lock() {
                *out = self.head.clone();
            }
        }
        any_ok
    }
}

fn take(m: Msg, pending: &mut Vec<Pending>, flushers: &mut Vec<Sender<bool>>, shutdown: &mut bool) {
    match m {
        Msg::Event(event, waiter) => pending.push(Pending { event, waiter }),
        Msg::Flush(tx) => flushers.push(tx),
        Msg::Shutdown => *shutdown = true,
    }
}
