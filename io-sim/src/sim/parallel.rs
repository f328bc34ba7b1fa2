//! The windows on several threads: one shard per thread, a spinning barrier between
//! windows, and mailboxes (two sets, used in turn by odd and even windows) for what the
//! shards send each other.
//!
//! Per window every thread: takes what the others sent it during the previous window
//! (events into its queue, mail applied in `(time, source, seq)` order), runs its hosts'
//! events up to the window's end, posts what it sent, publishes the earliest instant it
//! could act at next (its queue's head, or an event it sent), and waits at the barrier;
//! the next window starts at the least of those instants. That is the serial schedule of
//! [`super::Simulation::run_until`] exactly, so the results do not depend on the threads.
//!
//! Invariant: a thread reads a mailbox or a published instant of window `k` only after
//! the barrier that ends window `k`, and nobody writes them again before the barrier that
//! ends window `k + 1`, which that reader must reach first. A thread that panics poisons
//! the barrier, and the others panic instead of waiting forever.

use super::shard::{Ctx, EventKind, Mail, SimNode};
use super::Simulation;
use crate::progress::Progress;
use minuteman_core::Time;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What one shard sent another during one window.
#[derive(Default)]
struct Parcel {
    events: Vec<(Time, u32, u64, EventKind)>,
    mail: Vec<Mail>,
}

/// What the threads share.
struct Exchange {
    shards: usize,
    /// `boxes[k % 2][from * shards + to]`: what shard `from` sent shard `to` in window `k`.
    boxes: [Vec<Mutex<Parcel>>; 2],
    /// `next[k % 2][s]`: the earliest instant shard `s` may act at after window `k`, in
    /// nanoseconds (`u64::MAX`: nothing pending).
    next: [Vec<AtomicU64>; 2],
    /// Events each shard has handled in this run.
    events: Vec<AtomicU64>,
    barrier: SpinBarrier,
    poisoned: AtomicBool,
}

impl Exchange {
    fn new(shards: usize) -> Exchange {
        let boxes = || (0..shards * shards).map(|_| Mutex::default()).collect();
        let next = || (0..shards).map(|_| AtomicU64::new(u64::MAX)).collect();
        Exchange {
            shards,
            boxes: [boxes(), boxes()],
            next: [next(), next()],
            events: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            barrier: SpinBarrier::new(shards),
            poisoned: AtomicBool::new(false),
        }
    }
}

/// Runs every event up to `until` on one thread per shard (shard 0 on this one).
pub(super) fn run(sim: &mut Simulation, until: Time, lookahead: Duration) {
    let Some(first) = sim.shards.iter().filter_map(|l| l.queue.next_at()).min() else {
        return;
    };
    if first > until {
        return;
    }
    let shards = sim.shards.len();
    let exchange = Exchange::new(shards);
    let common = &sim.common;
    let network = &sim.network;
    let mut slices: Vec<&mut [SimNode]> = Vec::with_capacity(shards);
    let mut rest: &mut [SimNode] = &mut sim.nodes;
    for s in 0..shards {
        let (mine, others) = rest.split_at_mut(common.bounds[s + 1] - common.bounds[s]);
        slices.push(mine);
        rest = others;
    }
    let mut progress = Progress0 {
        progress: sim.progress.as_mut(),
        before: sim.events_handled,
        told: &mut sim.events_handled_told,
    };
    std::thread::scope(|scope| {
        let mut work = slices.into_iter().zip(sim.shards.iter_mut()).enumerate();
        let (_, (nodes0, local0)) = work.next().expect("at least one shard");
        for (s, (nodes, local)) in work {
            let exchange = &exchange;
            std::thread::Builder::new()
                .name(format!("sim-shard-{s}"))
                .spawn_scoped(scope, move || {
                    let base = common.bounds[s];
                    let ctx = Ctx::new((common, network), (s, base), nodes, local, first);
                    worker(ctx, exchange, first, until, lookahead, None);
                })
                .unwrap_or_else(|e| {
                    // The threads already started would wait at the barrier forever.
                    exchange.poisoned.store(true, Ordering::SeqCst);
                    panic!("no thread for shard {s}: {e}");
                });
        }
        let ctx = Ctx::new((common, network), (0, 0), nodes0, local0, first);
        worker(ctx, &exchange, first, until, lookahead, Some(&mut progress));
    });
    // What the last window sent waits in the mailboxes: back to the shards, whose
    // settling delivers it.
    for boxes in exchange.boxes {
        for (k, parcel) in boxes.into_iter().enumerate() {
            let parcel = parcel.into_inner().expect("no thread panicked");
            let (from, to) = (k / shards, k % shards);
            let local = &mut sim.shards[from];
            local.outbox[to].extend(parcel.events);
            local.mail[to].extend(parcel.mail);
        }
    }
}

/// Shard 0's thread tells the progress.
struct Progress0<'a> {
    progress: Option<&'a mut Progress>,
    before: u64,
    told: &'a mut u64,
}

/// Sets the exchange's poison flag if the thread unwinds.
struct PoisonOnPanic<'a>(&'a AtomicBool);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

fn worker(
    mut ctx: Ctx,
    ex: &Exchange,
    first: Time,
    until: Time,
    lookahead: Duration,
    mut progress: Option<&mut Progress0>,
) {
    let _poison = PoisonOnPanic(&ex.poisoned);
    let s = ctx.shard;
    let shards = ex.shards;
    let mut start = first;
    let mut k = 0usize;
    let mut mail: Vec<Mail> = Vec::new();
    loop {
        if k > 0 {
            let parity = (k - 1) % 2;
            for from in 0..shards {
                let mut parcel = ex.boxes[parity][from * shards + s]
                    .lock()
                    .expect("no thread panicked");
                for (at, source, seq, kind) in parcel.events.drain(..) {
                    ctx.local.queue.push(at, source, seq, kind);
                }
                mail.append(&mut parcel.mail);
            }
            ctx.apply_mail_in_order(&mut mail);
        }
        let end = (start + lookahead - Duration::from_nanos(1)).min(until);
        ctx.run_window(end);
        let parity = k % 2;
        for to in 0..shards {
            let mut parcel = ex.boxes[parity][s * shards + to]
                .lock()
                .expect("no thread panicked");
            parcel.events.append(&mut ctx.local.outbox[to]);
            parcel.mail.append(&mut ctx.local.mail[to]);
        }
        let next = match (ctx.local.queue.next_at(), ctx.local.sent_min.take()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ex.next[parity][s].store(next.map_or(u64::MAX, Time::as_nanos), Ordering::Relaxed);
        ex.events[s].store(ctx.local.events, Ordering::Relaxed);
        ex.barrier.wait(&ex.poisoned);
        let next = ex.next[parity]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        if let Some(p) = progress.as_mut() {
            let events: u64 = ex.events.iter().map(|e| e.load(Ordering::Relaxed)).sum();
            if let Some(progress) = p.progress.as_deref_mut() {
                super::tell_progress(progress, p.told, end, p.before + events);
            }
        }
        k += 1;
        if next == u64::MAX || Time::from_nanos(next) > until {
            break;
        }
        start = Time::from_nanos(next);
    }
}

/// A barrier for a few threads that each have a core: they spin instead of sleeping,
/// since windows are microseconds apart, and yield after a few microseconds (another
/// thread may need the core: more threads than cores, or a busy machine).
struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(threads: usize) -> SpinBarrier {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Returns once every thread has called it (for this round); panics if another thread
    /// panicked meanwhile.
    fn wait(&self, poisoned: &AtomicBool) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation
                .store(generation.wrapping_add(1), Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if poisoned.load(Ordering::Relaxed) {
                panic!("another shard's thread panicked");
            }
            spins = spins.saturating_add(1);
            if spins < 1 << 11 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}
