//! A kernel's bounded input queue with the counters its control block reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use super::{KernelId, MAX_QUEUE_CAPACITY, Message};
use crate::error::{Error, Result};

/// A bounded multi-producer queue of messages for one kernel.
///
/// `enqueued` and `dequeued` count every message that entered and left the queue, so
/// `enqueued - dequeued` is the number in flight; they become the control block's
/// `input_tail` and `input_head`.
#[derive(Debug)]
pub struct Mailbox {
    owner: KernelId,
    tx: Sender<Message>,
    rx: Receiver<Message>,
    capacity: usize,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    closed: AtomicBool,
    enqueued: AtomicU64,
    dequeued: AtomicU64,
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
            enqueued: AtomicU64::new(0),
            dequeued: AtomicU64::new(0),
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
        self.closed.load(Ordering::Acquire)
    }

    /// Refuses every later `push`. Messages already queued stay until drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Enqueues without waiting. On error nothing was enqueued and the message is dropped
    /// by the caller, who got the error.
    pub fn push(&self, msg: Message, wait: Option<Duration>) -> Result<()> {
        if self.is_closed() {
            return Err(self.terminated());
        }
        let res = match wait {
            None => self.tx.try_send(msg).map_err(|e| match e {
                TrySendError::Full(_) => self.full(),
                TrySendError::Disconnected(_) => self.terminated(),
            }),
            Some(d) => self.tx.send_timeout(msg, d).map_err(|e| match e {
                SendTimeoutError::Timeout(_) => self.full(),
                SendTimeoutError::Disconnected(_) => self.terminated(),
            }),
        };
        if res.is_ok() {
            self.enqueued.fetch_add(1, Ordering::AcqRel);
        }
        res
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
        out
    }

    /// Removes every queued message and returns how many there were (used when the
    /// kernel stops, so that undelivered messages are counted, not lost silently).
    pub fn drain(&self) -> u64 {
        let mut n = 0u64;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        self.dequeued.fetch_add(n, Ordering::AcqRel);
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
