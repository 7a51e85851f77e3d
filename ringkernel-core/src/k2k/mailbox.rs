//! A kernel's bounded input queue with the counters its control block reports.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

use super::{KernelId, MAX_QUEUE_CAPACITY, Message};
use crate::error::{Error, Result};

/// The longest a send waiting for room sleeps before it looks again (a safety net: it
/// is woken when there is room).
const RECHECK: Duration = Duration::from_millis(10);

/// How many times [`Mailbox::drain`] looks again for messages still being counted.
const DRAIN_ROUNDS: usize = 10_000;

/// A bounded multi-producer queue of messages for one kernel.
///
/// `enqueued` and `dequeued` count every message that entered and left the queue, so
/// `enqueued - dequeued` is the number in flight; they become the control block's
/// `input_tail` and `input_head`.
///
/// A send that may wait for room sleeps until the kernel has taken the queue down to
/// half its capacity (or the queue closes, or its time is up), not until the first
/// slot frees: a producer faster than its kernel then wakes once per half a queue
/// rather than once per message, and the kernel does not pay a wake-up per message.
#[derive(Debug)]
pub struct Mailbox {
    owner: KernelId,
    tx: Sender<Message>,
    rx: Receiver<Message>,
    capacity: usize,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    closed: AtomicBool,
    /// Written by every sender.
    enqueued: CachePadded<AtomicU64>,
    /// Written by the kernel.
    dequeued: CachePadded<AtomicU64>,
    /// Sends sleeping until there is room (they hold `room` while not asleep).
    waiting: AtomicUsize,
    room: Mutex<()>,
    room_freed: Condvar,
}

impl Mailbox {
    /// A queue for `owner` holding at most `capacity` messages, clamped to between 1
    /// and [`MAX_QUEUE_CAPACITY`] (its slots are allocated here).
    pub fn new(owner: KernelId, capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_QUEUE_CAPACITY);
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        Mailbox {
            owner,
            tx,
            rx,
            wake_tx,
            wake_rx,
            capacity,
            closed: AtomicBool::new(false),
            enqueued: CachePadded::new(AtomicU64::new(0)),
            dequeued: CachePadded::new(AtomicU64::new(0)),
            waiting: AtomicUsize::new(0),
            room: Mutex::new(()),
            room_freed: Condvar::new(),
        }
    }

    /// Capacity in messages.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages put in so far.
    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::Acquire)
    }

    /// Messages taken out so far.
    pub fn dequeued(&self) -> u64 {
        self.dequeued.load(Ordering::Acquire)
    }

    /// Whether the queue refuses new messages.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Refuses every later `push`, and wakes the sends waiting for room (they fail
    /// with `KernelTerminated`). Messages already queued stay until drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _room = self.room.lock();
            self.room_freed.notify_all();
        }
    }

    /// Enqueues `msg`; with `wait`, waits up to that long for room in a full queue.
    ///
    /// On error the message was not accepted: the caller got the error and the message
    /// is dropped. A send that finds the queue closed once its message is in fails with
    /// `KernelTerminated` too: the kernel is stopping and will not process it (it is
    /// counted as undelivered if the final drain finds it, dropped with the queue
    /// otherwise), so no sender is told `Ok` for a message nobody will take.
    pub fn push(&self, msg: Message, wait: Option<Duration>) -> Result<()> {
        if self.is_closed() {
            return Err(self.terminated());
        }
        match self.tx.try_send(msg) {
            Ok(()) => self.accepted(),
            Err(TrySendError::Disconnected(_)) => Err(self.terminated()),
            Err(TrySendError::Full(msg)) => match wait {
                None => Err(self.full()),
                Some(wait) => self.wait_for_room(msg, wait),
            },
        }
    }

    /// Counts a message just put in; refuses it if the queue closed meanwhile. The
    /// count comes before the look at `closed` (both sequentially consistent), so that
    /// [`Mailbox::drain`], which closes first and reads the count after, either sees
    /// this message counted (and drains it) or this send sees the queue closed.
    fn accepted(&self) -> Result<()> {
        self.enqueued.fetch_add(1, Ordering::SeqCst);
        if self.is_closed() {
            Err(self.terminated())
        } else {
            Ok(())
        }
    }

    /// A full queue: sleeps until the kernel has taken it down to half its capacity
    /// (see [`Mailbox::taken`]), it closes, or `wait` is over; then one more try.
    fn wait_for_room(&self, mut msg: Message, wait: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(wait);
        let mut room = self.room.lock();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `taken`: the kernel either sees this send waiting or
        // this send sees the room the kernel made.
        fence(Ordering::SeqCst);
        let res = loop {
            if self.is_closed() {
                break Err(self.terminated());
            }
            match self.tx.try_send(msg) {
                Ok(()) => break self.accepted(),
                Err(TrySendError::Disconnected(_)) => break Err(self.terminated()),
                Err(TrySendError::Full(m)) => msg = m,
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Err(self.full());
            }
            // A bounded sleep, so that a missed wake-up costs at most RECHECK.
            let until = deadline.map_or(now + RECHECK, |d| d.min(now + RECHECK));
            self.room_freed.wait_until(&mut room, until);
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        res
    }

    /// Called by the kernel after taking messages: wakes the sends waiting for room
    /// once the queue is down to half its capacity.
    fn taken(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 && self.rx.len() <= self.capacity / 2 {
            let _room = self.room.lock();
            self.room_freed.notify_all();
        }
    }

    /// Interrupts a consumer waiting in [`Mailbox::pop_batch`] (used to deliver a stop
    /// request without waiting for the poll interval).
    pub fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }

    /// Takes up to `max` messages, waiting up to `wait` for the first one or a
    /// [`Mailbox::wake`].
    pub fn pop_batch(&self, max: usize, wait: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        crossbeam_channel::select! {
            recv(self.rx) -> m => match m {
                Ok(m) => out.push(m),
                Err(_) => return out,
            },
            recv(self.wake_rx) -> _ => return out,
            default(wait) => return out,
        }
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(m) => out.push(m),
                Err(_) => break,
            }
        }
        self.dequeued.fetch_add(out.len() as u64, Ordering::AcqRel);
        self.taken();
        out
    }

    /// Closes the queue, removes every queued message and returns how many there were
    /// (used when the kernel stops, so that undelivered messages are counted, not lost
    /// silently). Sends that had put their message in before they could see the queue
    /// closed are waited for (briefly: they are between two instructions), so that no
    /// message accepted with `Ok` stays behind uncounted.
    pub fn drain(&self) -> u64 {
        self.close();
        let mut n = 0u64;
        for _ in 0..DRAIN_ROUNDS {
            let mut taken = 0u64;
            while self.rx.try_recv().is_ok() {
                taken += 1;
            }
            n += taken;
            let dequeued = self.dequeued.fetch_add(taken, Ordering::SeqCst) + taken;
            if dequeued >= self.enqueued.load(Ordering::SeqCst) {
                break;
            }
            // A kernel cut off by the watchdog may still be between taking a batch and
            // counting it; a send between its `try_send` and its count is counted by
            // `accepted` an instruction later.
            std::thread::yield_now();
        }
        self.taken();
        n
    }

    fn full(&self) -> Error {
        Error::QueueFull {
            id: self.owner.to_string(),
            capacity: self.capacity,
        }
    }

    fn terminated(&self) -> Error {
        Error::KernelTerminated {
            id: self.owner.to_string(),
        }
    }
}
