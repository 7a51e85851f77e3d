//! A kernel's bounded input queue with the counters its control block reports.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

use super::{KernelId, MAX_QUEUE_CAPACITY, Message};
use crate::error::{Error, Result};

/// The longest a send waiting for room sleeps before it looks again (a safety net: it
/// is woken when the queue is down to half, or closes).
const RECHECK: Duration = Duration::from_millis(10);

/// The longest [`Mailbox::drain`] waits for sends that saw the queue open to finish
/// putting their message in (each is a few instructions from done, unless its thread
/// was preempted there).
const SENDS_FINISH: Duration = Duration::from_secs(1);

/// The counters every sender writes.
#[derive(Debug, Default)]
struct Producers {
    /// Messages put in.
    enqueued: AtomicU64,
    /// Sends between their look at `closed` and the end of their attempt to put their
    /// message in: [`Mailbox::drain`] waits for none to be left.
    in_send: AtomicU64,
}

/// What one attempt to put a message in ([`Mailbox::offer`]) did.
#[derive(Debug)]
pub enum Offer {
    /// It is in the queue.
    Accepted,
    /// The queue is closed; nothing was put in.
    Closed,
    /// No room; the message is handed back.
    Full(Message),
}

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
    producers: CachePadded<Producers>,
    /// Written by the kernel (and by `drain`).
    dequeued: CachePadded<AtomicU64>,
    /// Sends waiting for room: those holding a [`WaitTicket`] (they hold `room` while
    /// in [`Mailbox::wait_for_room`] and not asleep).
    waiting: AtomicUsize,
    room: Mutex<()>,
    room_freed: Condvar,
}

/// A send's place among the sends waiting for room in one queue, held from its first
/// wait until the send ends (accepted, refused, or out of time). While any is held,
/// sends without one are refused room ([`Mailbox::offer`]); while others are held, a
/// holder gets room only once it has slept for it at least once, so that a sender
/// retrying with very short waits pays a sleep per message rather than taking each
/// freed slot at once.
#[derive(Debug)]
pub(crate) struct WaitTicket<'a> {
    mailbox: &'a Mailbox,
    /// Whether the send has slept in [`Mailbox::wait_for_room`].
    slept: bool,
}

impl<'a> WaitTicket<'a> {
    fn new(mailbox: &'a Mailbox) -> Self {
        mailbox.waiting.fetch_add(1, Ordering::SeqCst);
        WaitTicket {
            mailbox,
            slept: false,
        }
    }

    /// How many of the waiting sends an offer with this ticket does not yield to: all
    /// of them once it has slept for room (it is one of them, in no strict order),
    /// only itself before (it queues behind the others).
    fn weight(&self) -> usize {
        if self.slept { usize::MAX } else { 1 }
    }
}

impl Drop for WaitTicket<'_> {
    fn drop(&mut self) {
        self.mailbox.waiting.fetch_sub(1, Ordering::SeqCst);
    }
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
            producers: CachePadded::new(Producers::default()),
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
        self.producers.enqueued.load(Ordering::Acquire)
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
    /// On error the message was not put in: no kernel will see it, so a caller may
    /// send it again without delivering it twice. A message put in is handled by the
    /// kernel or, if the kernel stops first, counted by [`Mailbox::drain`] as
    /// undelivered. (The runtime's sends make the same attempts and waits themselves,
    /// so as to hold no lock while waiting.) While sends wait for room, a push without a
    /// wait is refused with `QueueFull` and one with a wait queues behind them (see
    /// [`Mailbox::offer`]).
    pub fn push(&self, mut msg: Message, wait: Option<Duration>) -> Result<()> {
        let deadline = wait.map(|w| Instant::now().checked_add(w));
        let mut ticket = None;
        loop {
            match self.offer_as(msg, ticket.as_ref()) {
                Offer::Accepted => return Ok(()),
                Offer::Closed => return Err(self.terminated()),
                Offer::Full(m) => msg = m,
            }
            self.wait_after_full(deadline, &mut ticket)?;
        }
    }

    /// After an offer refused for lack of room: `QueueFull` when the send does not wait
    /// (`deadline` is `None`) or its deadline (`Some(Some(t))`) has passed; otherwise
    /// the send takes its place among the waiting ones (`ticket`, kept until the send
    /// ends), waits for room ([`Mailbox::wait_for_room`]; `Some(None)`: no deadline),
    /// and the caller offers again with the ticket.
    pub(crate) fn wait_after_full<'a>(
        &'a self,
        deadline: Option<Option<Instant>>,
        ticket: &mut Option<WaitTicket<'a>>,
    ) -> Result<()> {
        match deadline {
            Some(until) if until.is_none_or(|d| Instant::now() < d) => {
                let ticket = ticket.get_or_insert_with(|| WaitTicket::new(self));
                self.wait_for_room(until, ticket);
                Ok(())
            }
            _ => Err(self.full()),
        }
    }

    /// One attempt to put `msg` in, without waiting. While sends are waiting for room
    /// (in [`Mailbox::push`] or a runtime send with a wait), it is refused with
    /// [`Offer::Full`] even when a slot is free: room goes to the sends that waited, so
    /// that a sender retrying in a loop cannot take every slot the kernel frees from
    /// them.
    ///
    /// The attempt is counted in `in_send` from before its look at `closed` to after
    /// the message is in. Both that count and the look are sequentially consistent,
    /// as are `close`'s store and `drain`'s read of the count: so either this attempt
    /// sees the queue closed and puts nothing in, or `drain` sees it counted and waits
    /// until the message is in before it empties the queue.
    pub fn offer(&self, msg: Message) -> Offer {
        self.offer_as(msg, None)
    }

    /// [`Mailbox::offer`] by a send that holds `ticket`: refused for the other sends
    /// waiting until it has slept for room, not after (it is then one of them).
    pub(crate) fn offer_as(&self, msg: Message, ticket: Option<&WaitTicket<'_>>) -> Offer {
        let p = &self.producers;
        p.in_send.fetch_add(1, Ordering::SeqCst);
        let put = if self.closed.load(Ordering::SeqCst) {
            Offer::Closed
        } else if self.waiting.load(Ordering::SeqCst) > ticket.map_or(0, WaitTicket::weight) {
            Offer::Full(msg)
        } else {
            match self.tx.try_send(msg) {
                Ok(()) => {
                    p.enqueued.fetch_add(1, Ordering::AcqRel);
                    Offer::Accepted
                }
                Err(TrySendError::Disconnected(_)) => Offer::Closed,
                Err(TrySendError::Full(msg)) => Offer::Full(msg),
            }
        };
        p.in_send.fetch_sub(1, Ordering::SeqCst);
        put
    }

    /// Sleeps until the queue has room, closes, or `deadline` (`None`: no deadline)
    /// passes, whichever is first; then the caller offers again. A full queue wakes
    /// its waiters once the kernel has taken it down to half, not at every freed slot.
    /// A send that has not slept yet (`ticket`, counted among the waiting sends since
    /// it was taken) sleeps once even when there is room while other sends wait: it
    /// queues behind them. (Alone, it goes on at once: a kernel that emptied the queue
    /// before the ticket was taken has nobody to wake.)
    pub(crate) fn wait_for_room(&self, deadline: Option<Instant>, ticket: &mut WaitTicket<'_>) {
        let mut room = self.room.lock();
        // Pairs with the fence in `taken`: the kernel either sees this send waiting (its
        // ticket) or this send sees the room the kernel made.
        fence(Ordering::SeqCst);
        // A send that has not slept yet sleeps while others wait, even with room.
        while !self.is_closed()
            && (self.tx.is_full()
                || (!ticket.slept && self.waiting.load(Ordering::SeqCst) > ticket.weight()))
        {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            // A bounded sleep, so that a missed wake-up costs at most RECHECK.
            let until = deadline.map_or(now + RECHECK, |d| d.min(now + RECHECK));
            self.room_freed.wait_until(&mut room, until);
            ticket.slept = true;
        }
    }

    /// Called by the kernel after taking messages: wakes the sends waiting for room
    /// once the queue is down to half its capacity. (With the fence in `wait_for_room`
    /// this relies on the channel's own sequentially consistent head and tail updates:
    /// a waiting send's `try_send` that finds the queue full, then this look at
    /// `waiting`, cannot both miss each other.)
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
    /// silently). Sends that saw the queue open are waited for (at most a second)
    /// before the queue is emptied, so that no message put in stays behind uncounted.
    /// (A kernel cut off by the watchdog may still be running and take messages
    /// meanwhile: those are its batch, not counted here; the runtime counts the
    /// messages a kernel took and never accounted for when it finalizes the kernel.)
    pub fn drain(&self) -> u64 {
        self.close();
        self.wait_for_sends();
        let mut n = 0u64;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        self.dequeued.fetch_add(n, Ordering::AcqRel);
        self.taken();
        n
    }

    /// Waits until no send is between its look at `closed` and the end of its attempt
    /// (see [`Mailbox::offer`]); gives up after [`SENDS_FINISH`], with an error log.
    fn wait_for_sends(&self) {
        let start = Instant::now();
        let mut looks = 0u32;
        while self.producers.in_send.load(Ordering::SeqCst) != 0 {
            looks += 1;
            if looks < 100 {
                std::thread::yield_now();
            } else if start.elapsed() < SENDS_FINISH {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                tracing::error!(kernel = %self.owner, "a send to the stopped kernel did not finish within {SENDS_FINISH:?}; its message may stay queued uncounted");
                return;
            }
        }
    }

    /// The error of a send refused for lack of room.
    pub(crate) fn full(&self) -> Error {
        Error::QueueFull {
            id: self.owner.to_string(),
            capacity: self.capacity,
        }
    }

    /// The error of a send refused because the queue is closed.
    pub(crate) fn terminated(&self) -> Error {
        Error::KernelTerminated {
            id: self.owner.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::k2k::{Endpoint, HlcTimestamp};

    fn message(id: u64) -> Message {
        Message {
            source: Endpoint::Host,
            destination: KernelId::new("k").unwrap(),
            topic: "t".into(),
            payload: id.to_le_bytes().to_vec(),
            sequence: id,
            timestamp: HlcTimestamp::default(),
        }
    }

    fn id_of(m: &Message) -> u64 {
        u64::from_le_bytes(m.payload[..8].try_into().unwrap())
    }

    /// While a send holds a place among the waiting ones, room goes to it: a send
    /// that does not wait is refused even with a slot free; a send that arrives while
    /// another waits queues behind it (refused until it has slept for room, at most
    /// RECHECK when nobody wakes it), one alone does not; once they are done, sends
    /// that do not wait get room again.
    #[test]
    fn room_freed_while_a_send_waits_goes_to_the_waiting_send() {
        let mb = Mailbox::new(KernelId::new("k").unwrap(), 3);
        assert!(matches!(mb.offer(message(1)), Offer::Accepted));
        let first = WaitTicket::new(&mb);
        assert!(
            matches!(mb.offer(message(2)), Offer::Full(_)),
            "two slots are free"
        );
        assert!(matches!(
            mb.push(message(3), None),
            Err(Error::QueueFull { .. })
        ));
        // Alone among the waiting sends, a ticket holder gets room at once.
        assert!(matches!(
            mb.offer_as(message(4), Some(&first)),
            Offer::Accepted
        ));
        // A second one queues behind the first until it has slept for room.
        let mut second = WaitTicket::new(&mb);
        assert!(matches!(
            mb.offer_as(message(5), Some(&second)),
            Offer::Full(_)
        ));
        let t0 = Instant::now();
        mb.wait_for_room(Some(t0 + Duration::from_secs(5)), &mut second);
        assert!(second.slept, "it slept although a slot was free");
        assert!(matches!(
            mb.offer_as(message(5), Some(&second)),
            Offer::Accepted
        ));
        drop((first, second));
        assert_eq!(mb.pop_batch(8, Duration::ZERO).len(), 3);
        assert!(matches!(mb.offer(message(6)), Offer::Accepted));
        // A waiting push that gets in gives its place up.
        mb.push(message(7), Some(Duration::from_secs(1))).unwrap();
        mb.push(message(8), Some(Duration::from_secs(1))).unwrap();
        assert_eq!(mb.waiting.load(Ordering::SeqCst), 0);
        let full = mb.push(message(9), Some(Duration::from_millis(30)));
        assert!(matches!(full, Err(Error::QueueFull { .. })), "{full:?}");
        assert_eq!(mb.waiting.load(Ordering::SeqCst), 0, "a timed-out push too");
    }

    /// Double delivery on stop: senders racing a stop, against a consumer that takes
    /// batches as the kernel loop does (a stop flag checked before each batch, the
    /// batch then handled whole). A message its sender was refused is never handled,
    /// and every message accepted is handled or drained: a caller that retries a
    /// refused send never delivers twice, and none is lost.
    #[test]
    fn a_send_refused_at_a_stop_is_never_handled_and_none_accepted_is_lost() {
        for round in 0..300u64 {
            let mb = Arc::new(Mailbox::new(KernelId::new("k").unwrap(), 4));
            let stop = Arc::new(AtomicBool::new(false));
            let consumer = {
                let (mb, stop) = (mb.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut handled = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let batch = mb.pop_batch(64, Duration::from_micros(200));
                        handled.extend(batch.iter().map(id_of));
                    }
                    handled
                })
            };
            let senders: Vec<_> = (0..2u64)
                .map(|s| {
                    let mb = mb.clone();
                    std::thread::spawn(move || {
                        let (mut ok, mut refused) = (Vec::new(), Vec::new());
                        for i in 0.. {
                            let id = s << 32 | i;
                            let wait = (s == 1).then_some(Duration::from_secs(5));
                            match mb.push(message(id), wait) {
                                Ok(()) => ok.push(id),
                                Err(Error::QueueFull { .. }) => {}
                                Err(Error::KernelTerminated { .. }) => {
                                    refused.push(id);
                                    break;
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                        (ok, refused)
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_micros(100 + 37 * (round % 20)));
            // As request_stop: the flag, then the queue closed.
            stop.store(true, Ordering::SeqCst);
            mb.close();
            let handled: HashSet<u64> = consumer.join().unwrap().into_iter().collect();
            let (mut ok, mut refused) = (HashSet::new(), HashSet::new());
            for s in senders {
                let (o, r) = s.join().unwrap();
                ok.extend(o);
                refused.extend(r);
            }
            let mut drained = HashSet::new();
            let before = mb.dequeued();
            let n = {
                let mut ids = Vec::new();
                while let Ok(m) = mb.rx.try_recv() {
                    ids.push(id_of(&m));
                }
                mb.dequeued.fetch_add(ids.len() as u64, Ordering::SeqCst);
                drained.extend(ids.iter().copied());
                ids.len() as u64
            };
            assert_eq!(mb.dequeued(), before + n);
            for id in &refused {
                assert!(
                    !handled.contains(id),
                    "round {round}: send of {id} refused, yet handled"
                );
                assert!(
                    !drained.contains(id),
                    "round {round}: send of {id} refused, yet left queued"
                );
            }
            for id in &ok {
                assert!(
                    handled.contains(id) || drained.contains(id),
                    "round {round}: send of {id} accepted, then lost"
                );
            }
        }
    }
}
