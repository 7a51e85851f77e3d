//! Sealing and opening on a GPU: what a device backend needs from [`MemoryEncryption`]
//! to run the envelope's ChaCha20-Poly1305 in its own kernels.
//!
//! The host stays in charge of everything but the cipher itself: it reserves the
//! nonce (a counter value of the current key, with the [`Direction::Device`] bit, so
//! device and host nonces never meet under one key), writes the header the device
//! authenticates, checks algorithm, context and sequence before handing out a key, and
//! counts the work. The device receives the raw key in a small key-slot buffer, which
//! its backend wipes when the kernel stops (see docs/threat-model.md for what that does
//! and does not protect).
//!
//! Only [`Algorithm::ChaCha20Poly1305`] runs on GPUs; every method here refuses other
//! algorithms with [`Error::Unsupported`], never falling back silently.

use std::fmt;

use super::algorithm::{Algorithm, TAG_LEN};
use super::envelope::{self, ContextId, Direction, EnvelopeKind, Header};
use super::provider::AeadProvider;
use super::{MemoryEncryption, SequenceCheck};
use crate::error::{Error, Result};
use crate::security::memory::SecureBuffer;

/// One epoch's raw data key, for a device key slot. Locked and zeroed like every
/// host-side secret; `Debug` prints the epoch only.
pub struct DeviceKey {
    epoch: u32,
    bytes: SecureBuffer,
}

impl DeviceKey {
    pub(crate) fn new(epoch: u32, raw: &[u8]) -> Self {
        let mut bytes = SecureBuffer::new(raw.len());
        bytes.as_mut_slice().copy_from_slice(raw);
        DeviceKey { epoch, bytes }
    }

    /// The key epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The 32 key bytes, for upload into a key-slot buffer and nowhere else.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The key's check value: the ChaCha20-Poly1305 tag of an empty message with no
    /// associated data under [`KEY_CHECK_NONCE`]. The host hands it to the device with
    /// the round's parameters, and the device recomputes it from its key slot before it
    /// uses the key, so a key slot changed in device memory is reported as such (and not
    /// as a control block that fails to open). It reveals nothing usable about the key:
    /// it is one output of a keyed function under a nonce that seals nothing.
    pub fn check_value(&self) -> Result<[u8; TAG_LEN]> {
        let key = super::RustCrypto.new_key(DEVICE_ALGORITHM, self.bytes())?;
        key.seal_in_place(&KEY_CHECK_NONCE, b"", &mut [])
    }
}

/// The nonce of [`DeviceKey::check_value`]. Byte 0 is `0x7f`, which no envelope nonce
/// has (its byte 0 is the direction, `0` or `1`, with bit 7 set for STREAM prefixes), so
/// it never meets a nonce that seals data under the same key.
pub const KEY_CHECK_NONCE: [u8; 12] = [0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey(epoch-{}, [redacted])", self.epoch)
    }
}

/// Everything a device needs to seal one region: the encoded header (all of it is
/// associated data; it carries the reserved device-direction nonce or nonce prefix)
/// and the key to seal under.
#[derive(Debug)]
pub struct DeviceSeal {
    /// The envelope header the device writes and authenticates.
    pub header: Vec<u8>,
    /// The parsed header (nonce or stream prefix, chunk size, epoch).
    pub parsed: Header,
    /// The current key.
    pub key: DeviceKey,
}

/// Everything a device needs to open one sealed STREAM: the checked header and the key
/// of its epoch.
#[derive(Debug)]
pub struct DeviceOpen {
    /// The parsed header.
    pub parsed: Header,
    /// Length of the encoded header at the start of the envelope.
    pub header_len: usize,
    /// The key of the header's epoch.
    pub key: DeviceKey,
}

/// The algorithm every GPU kernel of this crate implements.
pub const DEVICE_ALGORITHM: Algorithm = Algorithm::ChaCha20Poly1305;

impl MemoryEncryption {
    fn require_device_algorithm(&self) -> Result<()> {
        if self.algorithm() == DEVICE_ALGORITHM {
            Ok(())
        } else {
            Err(Error::Unsupported {
                backend: "gpu",
                what: format!(
                    "{} on the device: GPU kernels implement ChaCha20-Poly1305 only",
                    self.algorithm()
                ),
            })
        }
    }

    /// Reserves a device-direction nonce under the current key and returns the header
    /// and key with which a device seals `len` bytes of region `context` as sealing
    /// number `sequence`: a single-shot envelope ([`EnvelopeKind::Single`]) or a STREAM
    /// ([`EnvelopeKind::Stream`], with this configuration's chunk size).
    pub fn device_seal(
        &self,
        kind: EnvelopeKind,
        context: ContextId,
        sequence: u64,
        len: u64,
    ) -> Result<DeviceSeal> {
        self.require_device_algorithm()?;
        let len_usize = usize::try_from(len)
            .map_err(|_| Error::InvalidConfig("region too large for this platform".into()))?;
        if kind == EnvelopeKind::Single && u32::try_from(len).is_err() {
            return Err(Error::InvalidConfig(
                "single-shot records are at most 4 GiB".into(),
            ));
        }
        let res = self.reserve(len_usize)?;
        let (nonce, chunk_size) = match kind {
            EnvelopeKind::Single => (
                envelope::single_nonce_96(Direction::Device, res.counter).to_vec(),
                0,
            ),
            EnvelopeKind::Stream => (
                envelope::stream_prefix_96(Direction::Device, res.counter).to_vec(),
                self.config().chunk_size,
            ),
        };
        let parsed = Header {
            algorithm: DEVICE_ALGORITHM,
            kind,
            epoch: res.key.epoch,
            context,
            sequence,
            length: len,
            chunk_size,
            nonce,
        };
        let mut header = Vec::with_capacity(parsed.encoded_len());
        parsed.encode_into(&mut header);
        let key = DeviceKey::new(res.key.epoch, res.key.raw());
        self.count_seal(len_usize);
        Ok(DeviceSeal {
            header,
            parsed,
            key,
        })
    }

    /// Checks a sealed envelope's header exactly as the host's open would (algorithm,
    /// kind, context, sequence, length) and returns the key of its epoch, for a device
    /// to open the body. The tag is checked by the device.
    pub fn device_open(
        &self,
        sealed: &[u8],
        kind: EnvelopeKind,
        context: ContextId,
        check: SequenceCheck,
    ) -> Result<DeviceOpen> {
        // The configured algorithm is the device one, so the shared check of the
        // header's algorithm id holds it to ChaCha20-Poly1305.
        self.require_device_algorithm()?;
        let (parsed, key) = self.checked_header(sealed, context, check, Some(kind))?;
        Ok(DeviceOpen {
            header_len: parsed.encoded_len(),
            key: DeviceKey::new(key.epoch, key.raw()),
            parsed,
        })
    }

    /// The keys a device kernel's key slots hold: the current epoch first, then the
    /// newest older epoch still live (during a rotation's grace period), if any.
    pub fn device_key_slots(&self) -> Result<Vec<DeviceKey>> {
        self.require_device_algorithm()?;
        let ring = self.ring()?;
        let mut epochs = ring.live_epochs();
        epochs.reverse();
        let mut keys = Vec::with_capacity(2);
        for epoch in epochs.into_iter().take(2) {
            if let Ok(k) = ring.key(epoch) {
                keys.push(DeviceKey::new(k.epoch, k.raw()));
            }
        }
        Ok(keys)
    }
}

/// Bytes of a single-shot envelope of `len` plaintext bytes under the device algorithm.
pub fn device_sealed_len(len: usize) -> usize {
    envelope::SINGLE_FIXED + DEVICE_ALGORITHM.nonce_len() + len + TAG_LEN
}
