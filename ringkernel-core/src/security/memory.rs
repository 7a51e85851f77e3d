//! Secure host memory for secrets: [`SecureBuffer`] and [`secure_bytes`].
//!
//! Keys, derived keys, passwords and plaintext staging live in `SecureBuffer`s:
//!
//! - **locked** with `mlock` (`VirtualLock` on Windows) so they never reach swap, and
//!   excluded from core dumps (`MADV_DONTDUMP`);
//! - **zeroed** on drop, on every path (including unwinding from a panic);
//! - placed in **whole pages of their own**, so that unlocking one buffer never unlocks a
//!   neighbour's page (`mlock` does not nest).
//!
//! When the OS refuses to lock (for example `RLIMIT_MEMLOCK` is 0 for an unprivileged
//! user), buffers fall back to zeroing only and a single warning is logged;
//! [`memory_protection_info`] then reports [`ProtectionLevel::ZeroingOnly`] and the
//! compliance report says so.
//!
//! ```
//! use ringkernel_core::security::memory::{SecureBuffer, secure_bytes};
//!
//! let mut key = SecureBuffer::new(32);
//! key.as_mut_slice().copy_from_slice(&[7u8; 32]);
//! assert_eq!(format!("{key:?}"), "SecureBuffer([REDACTED; 32 bytes])");
//!
//! // A scope whose staging bytes are zeroed when it ends, however it ends.
//! let sum = secure_bytes(16, |b| { b.fill(1); b.iter().map(|&x| x as u32).sum::<u32>() });
//! assert_eq!(sum, 16);
//! ```

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use zeroize::Zeroize;

/// How well host secrets are protected.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ProtectionLevel {
    /// Protection switched off with [`set_memory_protection`]`(false)`: secrets are
    /// still zeroed on drop, but not locked.
    None,
    /// Locking refused by the OS: secrets are zeroed on drop but may reach swap.
    ZeroingOnly,
    /// Locked in RAM, excluded from core dumps, zeroed on drop.
    Full,
}

impl ProtectionLevel {
    /// `"none"`, `"zeroing_only"` or `"full"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionLevel::None => "none",
            ProtectionLevel::ZeroingOnly => "zeroing_only",
            ProtectionLevel::Full => "full",
        }
    }
}

impl fmt::Display for ProtectionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`memory_protection_info`] reports (and the compliance report shows).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryProtectionInfo {
    /// Whether protection is switched on ([`set_memory_protection`]).
    pub enabled: bool,
    /// `target_os`/`target_arch` of this build.
    pub platform: String,
    /// The protection secrets get now.
    pub protection_level: ProtectionLevel,
    /// Whether the OS lets this process lock memory.
    pub has_memory_locking: bool,
    /// Whether secrets are zeroed with writes the compiler may not remove (always true).
    pub has_secure_zeroing: bool,
    /// Whether both hold now: secrets are locked out of swap and zeroed
    /// (`protection_level` is `full`). The reference API's name for the summary.
    pub supports_full_protection: bool,
}

static ENABLED: AtomicBool = AtomicBool::new(true);
/// 0: not probed yet, 1: locking works, 2: locking refused.
static LOCK_STATE: AtomicU8 = AtomicU8::new(0);
static WARN_ONCE: Once = Once::new();

/// Switches memory locking for new [`SecureBuffer`]s on or off (process-wide). Zeroing
/// on drop is never switched off.
pub fn set_memory_protection(enabled: bool) {
    ENABLED.store(enabled, Ordering::Release);
}

/// The process's current memory protection.
pub fn memory_protection_info() -> MemoryProtectionInfo {
    let enabled = ENABLED.load(Ordering::Acquire);
    let has_memory_locking = locking_works();
    let protection_level = match (enabled, has_memory_locking) {
        (false, _) => ProtectionLevel::None,
        (true, true) => ProtectionLevel::Full,
        (true, false) => ProtectionLevel::ZeroingOnly,
    };
    MemoryProtectionInfo {
        enabled,
        platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        protection_level,
        has_memory_locking,
        has_secure_zeroing: true,
        supports_full_protection: protection_level == ProtectionLevel::Full,
    }
}

/// The machine's page size (4 KiB on most x86-64 Linux, 16 KiB on Apple silicon and
/// some arm64 kernels): locked regions are whole pages of it.
fn page_size() -> usize {
    page_size::get()
}

/// Probes once whether this process may lock memory, by locking a page of its own.
fn locking_works() -> bool {
    match LOCK_STATE.load(Ordering::Acquire) {
        1 => true,
        2 => false,
        _ => {
            let probe = Pages::new(1);
            let ok = probe.as_ref().is_some_and(|p| p.lock());
            if let Some(p) = probe.as_ref().filter(|_| ok) {
                p.unlock();
            }
            record_lock_result(ok);
            ok
        }
    }
}

fn record_lock_result(ok: bool) {
    LOCK_STATE.store(if ok { 1 } else { 2 }, Ordering::Release);
    if !ok {
        WARN_ONCE.call_once(|| {
            // Loudly: stderr as well as the log, since a missing subscriber must not
            // hide that secrets may reach swap.
            eprintln!(
                "ringkernel: WARNING: mlock refused (RLIMIT_MEMLOCK); secrets are zeroed on drop but may be swapped (protection level zeroing_only)"
            );
            tracing::warn!(
                "memory locking (mlock) refused by the OS (check RLIMIT_MEMLOCK / `ulimit -l`): \
                 secrets are zeroed on drop but may be written to swap; protection level is zeroing_only"
            );
        });
    }
}

/// Whole pages from the global allocator, zeroed.
struct Pages {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Pages {
    fn new(pages: usize) -> Option<Self> {
        let size = pages.max(1).checked_mul(page_size())?;
        let layout = Layout::from_size_align(size, page_size()).ok()?;
        // SAFETY: `layout` has a non-zero size (at least one page).
        let raw = unsafe { alloc_zeroed(layout) };
        NonNull::new(raw).map(|ptr| Pages { ptr, layout })
    }

    fn lock(&self) -> bool {
        // SAFETY: `ptr` points to `layout.size()` bytes we own, page-aligned.
        unsafe { memsec::mlock(self.ptr.as_ptr(), self.layout.size()) }
    }

    fn unlock(&self) {
        // SAFETY: as in `lock`; munlock also zeroes the range.
        unsafe {
            memsec::munlock(self.ptr.as_ptr(), self.layout.size());
        }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed` with this `layout`, and is
        // deallocated exactly once, here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A fixed-size byte buffer for secrets: locked in RAM when the OS allows, zeroed on
/// drop, never printed. See the module docs.
pub struct SecureBuffer {
    pages: Pages,
    len: usize,
    locked: bool,
}

// SAFETY: SecureBuffer owns its pages exclusively (like a Box<[u8]>); shared access
// only hands out `&[u8]`.
unsafe impl Send for SecureBuffer {}
// SAFETY: see above; no interior mutability.
unsafe impl Sync for SecureBuffer {}

impl SecureBuffer {
    /// A zeroed buffer of `len` bytes (at least one page is reserved).
    ///
    /// # Panics
    /// Only if the allocator cannot provide memory, as `Vec::with_capacity` would.
    pub fn new(len: usize) -> Self {
        let pages = len.div_ceil(page_size()).max(1);
        let pages = Pages::new(pages).unwrap_or_else(|| {
            std::alloc::handle_alloc_error(
                Layout::from_size_align(pages * page_size(), page_size())
                    .unwrap_or(Layout::new::<u8>()),
            )
        });
        let locked = if ENABLED.load(Ordering::Acquire) {
            let ok = pages.lock();
            if LOCK_STATE.load(Ordering::Acquire) == 0 || !ok {
                record_lock_result(ok);
            }
            ok
        } else {
            false
        };
        SecureBuffer { pages, len, locked }
    }

    /// A buffer holding a copy of `data`. The caller should zero its own copy.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut b = Self::new(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this buffer's pages are locked in RAM.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the pages hold at least `len` initialised (zeroed) bytes we own.
        unsafe { std::slice::from_raw_parts(self.pages.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.pages.ptr.as_ptr(), self.len) }
    }
}

impl Clone for SecureBuffer {
    fn clone(&self) -> Self {
        Self::from_slice(self.as_slice())
    }
}

impl Drop for SecureBuffer {
    fn drop(&mut self) {
        // Zero the whole reservation, not just `len`.
        // SAFETY: the pages are ours for `layout.size()` bytes.
        let all = unsafe {
            std::slice::from_raw_parts_mut(self.pages.ptr.as_ptr(), self.pages.layout.size())
        };
        all.zeroize();
        if self.locked {
            self.pages.unlock();
        }
    }
}

impl fmt::Debug for SecureBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecureBuffer([REDACTED; {} bytes])", self.len)
    }
}

impl PartialEq for SecureBuffer {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .as_slice()
                .iter()
                .zip(other.as_slice())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for SecureBuffer {}

/// Opened plaintext: a byte vector that zeroes its whole allocation when dropped and
/// never prints its bytes.
///
/// Unlike [`SecureBuffer`] it is not locked (opening happens on every message and
/// control-block access, where an `mlock` per call would cost more than the AEAD); it
/// is zeroed with a single non-elidable memset, several times faster than the
/// byte-by-byte volatile writes of `zeroize` on large buffers.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(bytes)
    }

    /// A copy as an ordinary vector (which the caller must protect).
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.clone()
    }

    /// The vector itself, to be filled in place (it is still wiped on drop).
    pub(crate) fn as_vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl std::ops::Deref for Plaintext {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Plaintext {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        let cap = self.0.capacity();
        // SAFETY: the pointer and capacity describe the vector's whole allocation,
        // which we own; bytes past `len` are allocated (possibly uninitialised) memory
        // that may be written.
        unsafe { memsec::memzero(self.0.as_mut_ptr(), cap) };
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext([REDACTED; {} bytes])", self.0.len())
    }
}

impl PartialEq<[u8]> for Plaintext {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

/// Runs `f` on a scratch secure buffer of `len` bytes that is zeroed (and unlocked)
/// when the scope ends, also when `f` panics.
pub fn secure_bytes<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buf = SecureBuffer::new(len);
    f(buf.as_mut_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_redacted_and_page_isolated() {
        let mut a = SecureBuffer::new(32);
        assert_eq!(a.as_slice(), &[0u8; 32]);
        a.as_mut_slice().fill(0x42);
        assert_eq!(format!("{a:?}"), "SecureBuffer([REDACTED; 32 bytes])");
        let b = SecureBuffer::from_slice(&[1, 2, 3]);
        assert_ne!(
            a.as_slice().as_ptr() as usize / page_size(),
            b.as_slice().as_ptr() as usize / page_size(),
            "each buffer has pages of its own"
        );
        assert_eq!(b.clone(), b);
        assert_ne!(SecureBuffer::from_slice(&[1, 2, 4]), b);
        assert!(SecureBuffer::new(0).is_empty());
        assert_eq!(SecureBuffer::new(10_000).len(), 10_000);
    }

    #[test]
    fn scope_zeroes_even_on_panic() {
        let r = std::panic::catch_unwind(|| {
            secure_bytes(64, |b| {
                b.fill(9);
                panic!("inside secure scope");
            })
        });
        assert!(r.is_err());
    }

    #[test]
    fn info_reports_a_consistent_level() {
        let info = memory_protection_info();
        assert!(info.has_secure_zeroing);
        assert!(info.platform.contains('/'));
        assert_eq!(
            info.supports_full_protection,
            info.protection_level == ProtectionLevel::Full
        );
        match info.protection_level {
            ProtectionLevel::Full => assert!(info.enabled && info.has_memory_locking),
            ProtectionLevel::ZeroingOnly => assert!(info.enabled && !info.has_memory_locking),
            ProtectionLevel::None => assert!(!info.enabled),
        }
    }
}
