//! The kernel sandbox: resource limits and K2K access control, enforced by the runtime
//! on every send, allocation, write and tick.
//!
//! ```
//! use std::time::Duration;
//! use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
//! use ringkernel_core::security::sandbox::{KernelSandbox, ResourceLimits, SandboxPolicy};
//!
//! let limits = ResourceLimits::new()
//!     .max_memory_bytes(1 << 20)
//!     .max_messages_per_second(10_000)
//!     .max_k2k_connections(4);
//! let sandbox = KernelSandbox::with_policy(
//!     limits,
//!     SandboxPolicy::restrictive().k2k_allow_list(&["aggregator"]),
//! );
//! let runtime = RuntimeBuilder::new()
//!     .development()
//!     .with_sandbox(sandbox.clone())
//!     .build()?;
//! let worker = runtime.launch("worker", LaunchOptions::new())?;
//! runtime.launch("aggregator", LaunchOptions::new())?;
//! runtime.launch("admin_kernel", LaunchOptions::new())?;
//! worker.send("aggregator", "sum", b"1")?;               // allowed
//! assert!(worker.send("admin_kernel", "x", b"").is_err()); // denied, recorded
//! assert_eq!(sandbox.check_violations(&worker)?.len(), 1);
//! # runtime.shutdown()?;
//! # Ok::<(), ringkernel_core::Error>(())
//! ```
//!
//! What is enforced where (all inside the runtime's gate, none optional):
//!
//! | limit / rule | enforced at | violation |
//! |---|---|---|
//! | K2K allow/deny lists | every send: one bit of the route table | `UnauthorizedK2K` |
//! | topic allow list | every send (cached per topic) | `UnauthorizedTopic` |
//! | distinct peers | every send | `ConnectionLimitExceeded` |
//! | messages per second | every send (token bucket) | `RateLimitExceeded` |
//! | memory | every allocation, with the backend's real sizes | `MemoryExceeded` |
//! | read-only memory | kernel-side writes, frees and state saves | `ReadOnlyWrite` |
//! | execution time | the runtime's watchdog tick | `ExecutionTimeout` |
//!
//! Sends from the host program (`Runtime::send`) are not subject to kernel policies:
//! the host owns the runtime.

mod limits;
mod patterns;
mod policy;
mod rate;
mod routes;
mod verdict;
mod violations;

pub use limits::ResourceLimits;
pub use patterns::{Pattern, PatternSet};
pub use policy::{CompiledPolicy, DefaultRoute, MemoryAccess, SandboxPolicy};
pub use routes::RouteTable;
pub(crate) use verdict::{Outcome, Verdict};
pub use violations::{Violation, ViolationAction, ViolationKind, ViolationType};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::error::{Error, Result};
use crate::k2k::KernelId;
use policy::Override;
use rate::TokenBucket;
use violations::ViolationRing;

/// Violations kept per kernel (older ones are dropped; totals keep counting).
pub const VIOLATION_RING_CAPACITY: usize = 256;
/// Topics whose decision a kernel caches.
const TOPIC_CACHE: usize = 256;
/// Default time between raising `should_terminate` and stopping a kernel by force.
pub const DEFAULT_WATCHDOG_GRACE: Duration = Duration::from_secs(1);

/// The sandbox of one live kernel.
pub(crate) struct KernelSlot {
    pub(crate) id: KernelId,
    pub(crate) index: usize,
    limits: ResourceLimits,
    policy: Arc<CompiledPolicy>,
    send: Mutex<SendGuard>,
    violations: Mutex<ViolationRing>,
    launched: Instant,
    watchdog_raised: Mutex<Option<Instant>>,
}

impl KernelSlot {
    /// What the kernel's id keeps after it stops (without the topic cache, which is
    /// rebuilt from the policy).
    fn retire(&self) -> Retired {
        let send = self.send.lock();
        Retired {
            send: SendGuard {
                bucket: send.bucket.clone(),
                peers: send.peers.clone(),
                topics: HashMap::new(),
                last_allowed: None,
            },
            violations: self.violations.lock().clone(),
        }
    }
}

impl fmt::Debug for KernelSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelSlot")
            .field("id", &self.id)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// A kernel's send budget: its rate bucket, the peers it has sent to (by id, so that
/// a peer's slot taken over by another kernel is not mistaken for it), and its cache of
/// topic decisions.
#[derive(Debug, Default)]
struct SendGuard {
    bucket: Option<TokenBucket>,
    peers: HashSet<KernelId>,
    topics: HashMap<String, bool>,
    /// The last send that passed route, topic and connection checks with a plain
    /// `Allow`, so that a kernel sending again on the same route and topic skips them.
    last_allowed: Option<AllowedSend>,
}

/// A send that passed every check but the rate: under route table `routes_version`,
/// to the kernel `dst` in slot `dst_index`, on `topic`.
///
/// While the route table keeps that version, the same (destination slot and id, topic)
/// gets the same answers again: the route bit is the table's; the topic decision is a
/// function of the sender's policy, which never changes for a slot; and a peer once
/// counted against the connection limit stays counted. Any launch or stop changes the
/// version, and with it every remembered send is checked in full again.
#[derive(Debug)]
struct AllowedSend {
    routes_version: u64,
    dst_index: usize,
    dst: KernelId,
    topic: String,
}

impl SendGuard {
    fn remembers(&self, routes_version: u64, dst: &KernelSlot, topic: &str) -> bool {
        self.last_allowed.as_ref().is_some_and(|a| {
            a.routes_version == routes_version
                && a.dst_index == dst.index
                && a.dst == dst.id
                && a.topic == topic
        })
    }

    fn remember(&mut self, routes_version: u64, dst: &KernelSlot, topic: &str) {
        match &mut self.last_allowed {
            Some(a) => {
                a.routes_version = routes_version;
                a.dst_index = dst.index;
                a.dst.clone_from(&dst.id);
                a.topic.clear();
                a.topic.push_str(topic);
            }
            None => {
                self.last_allowed = Some(AllowedSend {
                    routes_version,
                    dst_index: dst.index,
                    dst: dst.id.clone(),
                    topic: topic.to_owned(),
                })
            }
        }
    }
}

/// What a kernel id keeps after its kernel stops, and hands to the next kernel
/// launched under that id: its send budget (so a relaunch neither refills the rate
/// bucket nor forgets the peers counted against the connection limit) and its
/// violations (so a relaunch does not wipe the record).
#[derive(Debug)]
struct Retired {
    send: SendGuard,
    violations: ViolationRing,
}

/// What the watchdog asks the runtime to do with a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WatchdogStep {
    /// Raise should_terminate in its control block.
    Raise(KernelId),
    /// The grace period is over: stop it by force.
    Force(KernelId),
}

struct Inner {
    default_limits: ResourceLimits,
    default_policy: std::result::Result<Arc<CompiledPolicy>, String>,
    overrides: Vec<Override>,
    override_error: Option<String>,
    actions: [ViolationAction; 7],
    watchdog_grace: Duration,
    kernels: RwLock<HashMap<KernelId, Arc<KernelSlot>>>,
    free_slots: Mutex<Vec<usize>>,
    next_slot: Mutex<usize>,
    routes: RwLock<Arc<RouteTable>>,
    /// Bumped after every change of `routes` (see [`AllowedSend`]).
    routes_version: AtomicU64,
    totals: [AtomicU64; 7],
    /// Kernel ids whose kernel has stopped: their budget and violations, kept for
    /// `check_violations` and for the next launch under the same id.
    retired: Mutex<HashMap<KernelId, Retired>>,
}

/// The kernel sandbox. Cheap to clone (clones share state), so an application can
/// keep a handle after giving one to `RuntimeBuilder::with_sandbox`.
#[derive(Clone)]
pub struct KernelSandbox {
    inner: Arc<Inner>,
}

impl fmt::Debug for KernelSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelSandbox")
            .field("default_limits", &self.inner.default_limits)
            .field("overrides", &self.inner.overrides.len())
            .field("kernels", &self.inner.kernels.read().len())
            .finish()
    }
}

impl KernelSandbox {
    /// Limits only; the policy is [`SandboxPolicy::new`] (routes allowed unless denied).
    pub fn new(limits: ResourceLimits) -> Self {
        Self::with_policy(limits, SandboxPolicy::new())
    }

    /// Limits and a default policy for every kernel. An invalid pattern in `policy` is
    /// reported by [`KernelSandbox::validate`] and by `RuntimeBuilder::build`.
    pub fn with_policy(limits: ResourceLimits, policy: SandboxPolicy) -> Self {
        KernelSandbox {
            inner: Arc::new(Inner {
                default_limits: limits,
                default_policy: policy.compile().map(Arc::new).map_err(|e| e.to_string()),
                overrides: Vec::new(),
                override_error: None,
                actions: [ViolationAction::Deny; 7],
                watchdog_grace: DEFAULT_WATCHDOG_GRACE,
                kernels: RwLock::new(HashMap::new()),
                free_slots: Mutex::new(Vec::new()),
                next_slot: Mutex::new(0),
                routes: RwLock::new(Arc::new(RouteTable::default())),
                routes_version: AtomicU64::new(0),
                totals: Default::default(),
                retired: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Like [`KernelSandbox::with_policy`], failing at once on an invalid pattern.
    pub fn try_with_policy(limits: ResourceLimits, policy: SandboxPolicy) -> Result<Self> {
        let sb = Self::with_policy(limits, policy);
        sb.validate()?;
        Ok(sb)
    }

    fn configure(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                tracing::error!("sandbox configured after it was shared; change ignored");
            }
        }
        self
    }

    /// Kernels whose id matches `selector` get these limits and this policy instead of
    /// the defaults. The first matching override wins, in the order added.
    pub fn with_kernel_policy(
        self,
        selector: &str,
        limits: ResourceLimits,
        policy: SandboxPolicy,
    ) -> Self {
        let compiled = Pattern::new(selector).and_then(|s| Ok((s, policy.compile()?)));
        self.configure(|inner| match compiled {
            Ok((selector, policy)) => inner.overrides.push(Override {
                selector,
                limits,
                policy,
            }),
            Err(e) => inner.override_error = Some(e.to_string()),
        })
    }

    /// What to do on violations of `kind` (default: deny).
    pub fn on_violation(self, kind: ViolationKind, action: ViolationAction) -> Self {
        self.configure(|inner| inner.actions[kind.index()] = action)
    }

    /// Time between the watchdog raising `should_terminate` and stopping the kernel by
    /// force (default 1 s).
    pub fn watchdog_grace(self, grace: Duration) -> Self {
        self.configure(|inner| inner.watchdog_grace = grace)
    }

    /// Reports the first invalid pattern of the configuration.
    pub fn validate(&self) -> Result<()> {
        if let Err(e) = &self.inner.default_policy {
            return Err(Error::InvalidConfig(e.clone()));
        }
        if let Some(e) = &self.inner.override_error {
            return Err(Error::InvalidConfig(e.clone()));
        }
        Ok(())
    }

    /// Why this sandbox must not run in production, if it must not: its default limits
    /// are all unlimited and its default policy allows every K2K route it does not deny
    /// (`SandboxPolicy::permissive()`, or `new()` without an allow list), so a kernel
    /// no override selects is neither limited nor confined. `RuntimeBuilder::build`
    /// refuses such a sandbox in production unless the caller opts out with
    /// `RuntimeBuilder::allow_insecure_sandbox`.
    pub fn insecurity(&self) -> Option<String> {
        let policy = self.default_policy()?;
        (self.inner.default_limits.is_unlimited() && !policy.denies_by_default()).then(|| {
            "the sandbox's default limits are all unlimited and its default policy allows \
             every K2K route it does not deny; set limits (ResourceLimits::conservative()) \
             or use SandboxPolicy::restrictive() with an allow list"
                .to_owned()
        })
    }

    /// The default limits.
    pub fn default_limits(&self) -> ResourceLimits {
        self.inner.default_limits
    }

    /// The default policy (compiled), if valid.
    pub fn default_policy(&self) -> Option<&CompiledPolicy> {
        self.inner.default_policy.as_ref().ok().map(|p| &**p)
    }

    /// The action configured for `kind`.
    pub fn action_for(&self, kind: ViolationKind) -> ViolationAction {
        self.inner.actions[kind.index()]
    }

    /// The most recent violations of `kernel` (a `KernelHandle`, `KernelId` or id
    /// string), oldest first; also for kernels that have stopped, and across relaunches
    /// under the same id.
    pub fn check_violations<K: AsRef<str> + ?Sized>(&self, kernel: &K) -> Result<Vec<Violation>> {
        Ok(self.with_violations(kernel.as_ref(), ViolationRing::recent))
    }

    /// How many violations `kernel` has committed in all (the ring keeps only the most
    /// recent [`VIOLATION_RING_CAPACITY`]), also across relaunches under the same id;
    /// 0 for unknown ids.
    pub fn violation_count<K: AsRef<str> + ?Sized>(&self, kernel: &K) -> u64 {
        self.with_violations(kernel.as_ref(), ViolationRing::total)
    }

    fn with_violations<T: Default>(&self, id: &str, f: impl FnOnce(&ViolationRing) -> T) -> T {
        if let Some(slot) = self.inner.kernels.read().get(id) {
            return f(&slot.violations.lock());
        }
        self.inner
            .retired
            .lock()
            .get(id)
            .map(|r| f(&r.violations))
            .unwrap_or_default()
    }

    /// Violations recorded so far, by kind (all kernels, never reset).
    pub fn violation_totals(&self) -> Vec<(ViolationKind, u64)> {
        ViolationKind::ALL
            .iter()
            .map(|k| (*k, self.inner.totals[k.index()].load(Ordering::Relaxed)))
            .collect()
    }

    /// Total violations of all kinds.
    pub fn total_violations(&self) -> u64 {
        self.inner
            .totals
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .sum()
    }

    /// The current route table (a snapshot).
    pub fn route_table(&self) -> Arc<RouteTable> {
        self.inner.routes.read().clone()
    }

    /// The limits and policy that apply to a kernel named `id`.
    pub fn policy_for(&self, id: &str) -> Result<(ResourceLimits, Arc<CompiledPolicy>)> {
        self.validate()?;
        for o in &self.inner.overrides {
            if o.selector.matches(id) {
                return Ok((o.limits, Arc::new(o.policy.clone())));
            }
        }
        let policy = self
            .inner
            .default_policy
            .as_ref()
            .map_err(|e| Error::InvalidConfig(e.clone()))?;
        Ok((self.inner.default_limits, policy.clone()))
    }

    // ----- called by the runtime's gate ------------------------------------------------

    /// Registers a launching kernel: picks its limits and policy, gives it a slot and
    /// fills its row and column of the route table. A kernel launched under the id of
    /// one that stopped continues its send budget and violations.
    pub(crate) fn register(&self, id: &KernelId) -> Result<Arc<KernelSlot>> {
        let (limits, policy) = self.policy_for(id.as_str())?;
        let index = match self.inner.free_slots.lock().pop() {
            Some(i) => i,
            None => {
                let mut next = self.inner.next_slot.lock();
                *next += 1;
                *next - 1
            }
        };
        let now = Instant::now();
        let mut kernels = self.inner.kernels.write();
        // The kernel this id had: retired, or (when its finalization has not reached
        // the sandbox yet) still registered, in which case its state is copied now.
        let kept = match kernels.get(id) {
            Some(old) => Some(old.retire()),
            None => self.inner.retired.lock().remove(id),
        };
        let (mut send, violations) = match kept {
            Some(r) => (r.send, r.violations),
            None => (
                SendGuard::default(),
                ViolationRing::new(VIOLATION_RING_CAPACITY),
            ),
        };
        if send.bucket.is_none() {
            send.bucket = limits
                .messages_per_second()
                .map(|r| TokenBucket::new(r, now));
        }
        let slot = Arc::new(KernelSlot {
            id: id.clone(),
            index,
            limits,
            policy,
            send: Mutex::new(send),
            violations: Mutex::new(violations),
            launched: now,
            watchdog_raised: Mutex::new(None),
        });
        kernels.insert(id.clone(), slot.clone());
        let mut table = (**self.inner.routes.read()).clone();
        table.insert(index, id.clone(), |src, dst| {
            kernels
                .get(src)
                .is_some_and(|s| s.policy.allows_route(dst.as_str()))
        });
        *self.inner.routes.write() = Arc::new(table);
        self.inner.routes_version.fetch_add(1, Ordering::Release);
        Ok(slot)
    }

    /// Removes a stopped kernel: its slot and route-table row are freed; its send
    /// budget and violations stay with its id (readable, and continued by the next
    /// kernel launched under it).
    pub(crate) fn unregister(&self, slot: &KernelSlot) {
        let mut kernels = self.inner.kernels.write();
        if kernels
            .get(&slot.id)
            .is_some_and(|s| std::ptr::eq(&**s, slot))
        {
            kernels.remove(&slot.id);
            self.inner
                .retired
                .lock()
                .insert(slot.id.clone(), slot.retire());
        }
        // Otherwise a kernel relaunched under this id has already copied the state;
        // the slot index is still this kernel's own and is freed all the same.
        let mut table = (**self.inner.routes.read()).clone();
        table.remove(slot.index);
        *self.inner.routes.write() = Arc::new(table);
        self.inner.routes_version.fetch_add(1, Ordering::Release);
        self.inner.free_slots.lock().push(slot.index);
    }

    /// Records a violation by `slot` and adds it to `verdict`; true when its action
    /// refuses (the decision ends there).
    fn record_into(
        &self,
        verdict: &mut Verdict,
        slot: &KernelSlot,
        violation_type: ViolationType,
        context: String,
    ) -> bool {
        let kind = violation_type.kind();
        let action = self.inner.actions[kind.index()];
        let error = Error::Denied {
            kernel: slot.id.to_string(),
            violation: kind,
            reason: violation_type.to_string(),
        };
        tracing::warn!(kernel = %slot.id, violation = %violation_type, ?action, context = %context, "sandbox violation");
        self.inner.totals[kind.index()].fetch_add(1, Ordering::Relaxed);
        slot.violations.lock().push(Violation {
            violation_type,
            kernel: slot.id.to_string(),
            timestamp: SystemTime::now(),
            context,
            action,
        });
        verdict.add(error, action)
    }

    /// The verdict of one violation by `slot`, recorded.
    fn record(&self, slot: &KernelSlot, violation_type: ViolationType, context: String) -> Verdict {
        let mut verdict = Verdict::allow();
        self.record_into(&mut verdict, slot, violation_type, context);
        verdict
    }

    /// Records a send to `peer` that the device refused (its route bit is clear).
    pub(crate) fn record_device_refusal(&self, src: &KernelSlot, peer: &KernelId) -> Verdict {
        self.record(
            src,
            ViolationType::UnauthorizedK2K {
                target: peer.to_string(),
            },
            format!("device-side send to {peer} refused by the device route table"),
        )
    }

    /// Decides a send from `src` to `dst` on `topic` made at `now`: route, topic,
    /// connections, rate (in that order; a refused send consumes no rate token).
    pub(crate) fn check_send(
        &self,
        src: &KernelSlot,
        dst: &KernelSlot,
        topic: &str,
        now: Instant,
    ) -> Verdict {
        // Read before the table, so that a remembered send never outlives a change.
        let routes_version = self.inner.routes_version.load(Ordering::Acquire);
        let mut guard = src.send.lock();
        let mut verdict = Verdict::allow();
        if !guard.remembers(routes_version, dst, topic) {
            drop(guard);
            guard = match self.check_route_topic_peer(&mut verdict, src, dst, topic) {
                Some(guard) => guard,
                None => return verdict,
            };
            // Only a send that recorded nothing is remembered: a logged violation is
            // recorded again on every send.
            if verdict.is_allow() {
                guard.remember(routes_version, dst, topic);
            }
        }
        if let Some(bucket) = guard.bucket.as_mut()
            && !bucket.try_take(now)
        {
            drop(guard);
            let rate = src.limits.messages_per_second().unwrap_or(0);
            self.record_into(
                &mut verdict,
                src,
                ViolationType::RateLimitExceeded { rate },
                format!("send to {} on {topic:?}", dst.id),
            );
        }
        verdict
    }

    /// The route, topic and connection checks of [`KernelSandbox::check_send`], adding
    /// what they record to `verdict`: the sender's send guard (locked) to go on with,
    /// or `None` when a check refused.
    fn check_route_topic_peer<'a>(
        &self,
        verdict: &mut Verdict,
        src: &'a KernelSlot,
        dst: &KernelSlot,
        topic: &str,
    ) -> Option<MutexGuard<'a, SendGuard>> {
        // A violation whose action is LogOnly is recorded and the decision goes on:
        // the send still faces every later check (a logged route or topic violation
        // must not skip the connection and rate limits).
        if !self.route_permitted(src, dst)
            && self.record_into(
                verdict,
                src,
                ViolationType::UnauthorizedK2K {
                    target: dst.id.to_string(),
                },
                format!("send to {} on {topic:?}", dst.id),
            )
        {
            return None;
        }
        let mut guard = src.send.lock();
        if src.policy.restricts_topics() {
            let allowed = match guard.topics.get(topic) {
                Some(a) => *a,
                None => {
                    let a = src.policy.allows_topic(topic);
                    if guard.topics.len() >= TOPIC_CACHE {
                        guard.topics.clear();
                    }
                    guard.topics.insert(topic.to_owned(), a);
                    a
                }
            };
            if !allowed {
                drop(guard);
                if self.record_into(
                    verdict,
                    src,
                    ViolationType::UnauthorizedTopic {
                        topic: topic.to_owned(),
                    },
                    format!("send to {} on {topic:?}", dst.id),
                ) {
                    return None;
                }
                guard = src.send.lock();
            }
        }
        if let Some(limit) = src.limits.k2k_connections()
            && !guard.peers.contains(dst.id.as_str())
        {
            if guard.peers.len() >= limit as usize {
                drop(guard);
                if self.record_into(
                    verdict,
                    src,
                    ViolationType::ConnectionLimitExceeded {
                        target: dst.id.to_string(),
                        limit,
                    },
                    format!("send to {} on {topic:?}", dst.id),
                ) {
                    return None;
                }
                guard = src.send.lock();
            }
            guard.peers.insert(dst.id.clone());
        }
        Some(guard)
    }

    /// Whether `src` may send to `dst`: the route table's bit while both slots still
    /// hold them. A slot that changed hands since the caller looked the kernel up (it
    /// stopped and another took the slot) is judged by the sender's policy, as the bit
    /// was, rather than by the bit of the slot's new owner.
    fn route_permitted(&self, src: &KernelSlot, dst: &KernelSlot) -> bool {
        let table = self.inner.routes.read();
        if table.kernel(src.index) == Some(&src.id) && table.kernel(dst.index) == Some(&dst.id) {
            table.permits(src.index, dst.index)
        } else {
            // As `RouteTable::insert` sets the bit: never to itself.
            src.id != dst.id && src.policy.allows_route(dst.id.as_str())
        }
    }

    /// Decides an allocation that would bring `slot`'s memory from `used` to
    /// `used + reserved` bytes.
    pub(crate) fn check_allocation(&self, slot: &KernelSlot, used: u64, reserved: u64) -> Verdict {
        match slot.limits.memory_bytes() {
            Some(limit) if used.saturating_add(reserved) > limit => self.record(
                slot,
                ViolationType::MemoryExceeded {
                    used: used.saturating_add(reserved),
                    limit,
                },
                format!("allocation of {reserved} reserved bytes with {used} in use"),
            ),
            _ => Verdict::allow(),
        }
    }

    /// Decides a kernel-side write to `buffer` (0: saved state).
    pub(crate) fn check_write(&self, slot: &KernelSlot, buffer: u64) -> Verdict {
        self.check_mutation(slot, buffer, || {
            if buffer == 0 {
                "save_state".into()
            } else {
                format!("write to buffer {buffer}")
            }
        })
    }

    /// Decides a kernel-side free of `buffer`. Freeing zeroes the buffer and discards
    /// its contents, so read-only memory access refuses it as it refuses a write.
    pub(crate) fn check_free(&self, slot: &KernelSlot, buffer: u64) -> Verdict {
        self.check_mutation(slot, buffer, || format!("free of buffer {buffer}"))
    }

    fn check_mutation(
        &self,
        slot: &KernelSlot,
        buffer: u64,
        operation: impl FnOnce() -> String,
    ) -> Verdict {
        if slot.policy.memory_access() == MemoryAccess::ReadOnly {
            self.record(slot, ViolationType::ReadOnlyWrite { buffer }, operation())
        } else {
            Verdict::allow()
        }
    }

    /// The watchdog: kernels past their execution time get should_terminate raised
    /// (once, with a violation); past the grace period they are stopped by force.
    pub(crate) fn watchdog(&self, now: Instant) -> Vec<WatchdogStep> {
        let slots: Vec<Arc<KernelSlot>> = self.inner.kernels.read().values().cloned().collect();
        let mut steps = Vec::new();
        for slot in slots {
            let Some(limit) = slot.limits.execution_time() else {
                continue;
            };
            let elapsed = now.saturating_duration_since(slot.launched);
            if elapsed < limit {
                continue;
            }
            let mut raised = slot.watchdog_raised.lock();
            match *raised {
                None => {
                    *raised = Some(now);
                    drop(raised);
                    let verdict = self.record(
                        &slot,
                        ViolationType::ExecutionTimeout { elapsed },
                        format!("running for {elapsed:?}, limit {limit:?}"),
                    );
                    // Deny and Terminate both stop the kernel; LogOnly only records.
                    if verdict.refuses() {
                        steps.push(WatchdogStep::Raise(slot.id.clone()));
                    }
                }
                Some(at)
                    if now.saturating_duration_since(at) >= self.inner.watchdog_grace
                        && self.action_for(ViolationKind::ExecutionTimeout)
                            != ViolationAction::LogOnly =>
                {
                    steps.push(WatchdogStep::Force(slot.id.clone()));
                }
                Some(_) => {}
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> KernelId {
        KernelId::new(s).expect("id")
    }

    /// A sender holding the slot of a kernel that stopped (the runtime looked the
    /// destination up, then it stopped and another kernel took its slot before the
    /// sandbox decided) must be judged by its own destination, not by the route bit
    /// the slot's new owner has.
    #[test]
    fn a_send_to_a_stopped_kernel_whose_slot_was_reused_is_not_judged_by_the_new_owner() {
        let sb = KernelSandbox::with_policy(
            ResourceLimits::new(),
            SandboxPolicy::restrictive().k2k_allow_list(&["public"]),
        );
        let src = sb.register(&id("src")).expect("src");
        let secret = sb.register(&id("secret")).expect("secret");
        assert!(sb.check_send(&src, &secret, "t", Instant::now()).refuses());
        sb.unregister(&secret);
        let public = sb.register(&id("public")).expect("public");
        assert_eq!(public.index, secret.index, "the freed slot is reused");
        assert!(sb.check_send(&src, &public, "t", Instant::now()).is_allow());
        // The stale handle of `secret`: still a denied route.
        let stale = sb.check_send(&src, &secret, "t", Instant::now());
        assert!(stale.refuses(), "judged by the slot's new owner: {stale:?}");
        // And the other way round: a stale allowed destination stays allowed.
        sb.unregister(&public);
        let other = sb.register(&id("secret")).expect("secret again");
        assert_eq!(other.index, public.index);
        assert!(sb.check_send(&src, &public, "t", Instant::now()).is_allow());
        // A stale kernel sending to itself: never a route, as in the table.
        assert!(
            sb.check_send(&public, &public, "t", Instant::now())
                .refuses()
        );
    }
}
