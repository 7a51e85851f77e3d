//! How the gate stores regions in device memory: sealed with the runtime's
//! [`MemoryEncryption`] when the configuration says so, plain otherwise.
//!
//! Regions and their contexts: a kernel's control block (`"control"`), the payloads
//! waiting in its queue (`"queue"`), and its saved state (`"state"`). Each sealing of
//! a control block or state region carries the next sequence number of that region,
//! and opening demands exactly the latest one, so an older copy written back into the
//! buffer is refused as a replay.

use crate::security::memory::Plaintext;

use crate::backend::{BufferId, ComputeBackend};
use crate::control::{CONTROL_BLOCK_SIZE, ControlBlock};
use crate::error::Result;
use crate::k2k::{Endpoint, HlcTimestamp, KernelId, buffers};
use crate::security::encryption::{ContextId, InstanceId, MemoryEncryption, SequenceCheck};

/// The contexts of one launch of a kernel's regions: bound to the runtime instance, the
/// kernel and its launch incarnation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelContexts {
    pub(crate) control: ContextId,
    pub(crate) queue: ContextId,
    pub(crate) state: ContextId,
}

impl KernelContexts {
    pub(crate) fn new(instance: &InstanceId, id: &KernelId, incarnation: u32) -> Self {
        let bound = |region| ContextId::bound(instance, id.as_str(), incarnation, region);
        KernelContexts {
            control: bound("control"),
            queue: bound("queue"),
            state: bound("state"),
        }
    }
}

/// The sealing policy of a runtime.
///
/// Control blocks of device kernels (opened and re-sealed by GPU code) are sealed by
/// `device_control`: the runtime's own encryption when its algorithm is the one GPU
/// kernels implement (ChaCha20-Poly1305), otherwise a ChaCha20-Poly1305 companion with
/// its own keys and the same rotation policy (stated in the runtime's security notes).
#[derive(Clone, Debug, Default)]
pub(crate) struct Sealing {
    control: Option<MemoryEncryption>,
    device_control: Option<MemoryEncryption>,
    queue: Option<MemoryEncryption>,
    state: Option<MemoryEncryption>,
}

impl Sealing {
    pub(crate) fn new(
        enc: Option<&MemoryEncryption>,
        companion: Option<&MemoryEncryption>,
    ) -> Self {
        let pick =
            |on: fn(&MemoryEncryption) -> bool| enc.filter(|e| e.is_enabled() && on(e)).cloned();
        let control = pick(|e| e.config().seals_control_blocks());
        let device_control = control
            .as_ref()
            .map(|c| companion.cloned().unwrap_or_else(|| c.clone()));
        Sealing {
            control,
            device_control,
            queue: pick(|e| e.config().seals_message_queues()),
            state: pick(|e| e.config().seals_kernel_state()),
        }
    }

    /// The encryption kernel state is sealed with, when state sealing is on.
    pub(crate) fn state_encryption(&self) -> Option<&MemoryEncryption> {
        self.state.as_ref()
    }

    pub(crate) fn seals_control(&self) -> bool {
        self.control.is_some()
    }

    /// The encryption of control blocks of device (`true`) or host kernels.
    pub(crate) fn control_for(&self, device: bool) -> Option<&MemoryEncryption> {
        if device {
            self.device_control.as_ref()
        } else {
            self.control.as_ref()
        }
    }

    /// Bytes a control block occupies in its device buffer.
    pub(crate) fn control_len(&self, device: bool) -> usize {
        self.control_for(device)
            .map_or(CONTROL_BLOCK_SIZE, |e| e.sealed_len(CONTROL_BLOCK_SIZE))
    }

    /// Reads the control block sealed at `seq` (or plain).
    pub(crate) fn read_control(
        &self,
        backend: &dyn ComputeBackend,
        buf: BufferId,
        ctx: ContextId,
        seq: u64,
        device: bool,
    ) -> Result<ControlBlock> {
        let mut bytes = vec![0u8; self.control_len(device)];
        backend.read(buf, 0, &mut bytes)?;
        self.open_control(&bytes, ctx, seq, device)
    }

    /// Opens control-block bytes sealed at `seq` (or plain), e.g. read back by a
    /// device round.
    pub(crate) fn open_control(
        &self,
        bytes: &[u8],
        ctx: ContextId,
        seq: u64,
        device: bool,
    ) -> Result<ControlBlock> {
        if bytes.len() != self.control_len(device) {
            return Err(crate::Error::corrupt(
                "control block",
                format!(
                    "{} bytes where {} were expected",
                    bytes.len(),
                    self.control_len(device)
                ),
            ));
        }
        match self.control_for(device) {
            None => ControlBlock::from_bytes(bytes),
            Some(e) => {
                let plain = e.open_region(bytes, ctx, SequenceCheck::Exact(seq), b"")?;
                ControlBlock::from_bytes(&plain)
            }
        }
    }

    /// Writes the control block as sealing number `seq`.
    pub(crate) fn write_control(
        &self,
        backend: &dyn ComputeBackend,
        buf: BufferId,
        ctx: ContextId,
        seq: u64,
        cb: &ControlBlock,
        device: bool,
    ) -> Result<()> {
        match self.control_for(device) {
            None => backend.write(buf, 0, cb.as_bytes()),
            Some(e) => backend.write(buf, 0, &e.seal_region(ctx, seq, cb.as_bytes(), b"")?),
        }
    }

    /// Seals a payload for the destination's queue (or copies it, when queues are plain).
    pub(crate) fn seal_payload(
        &self,
        ctx: ContextId,
        route: &QueuedRoute<'_>,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        match &self.queue {
            None => Ok(buffers::copy(payload)),
            Some(e) => {
                let mut out = buffers::take(e.sealed_len(payload.len()));
                let aad = MessageAad::new(route);
                e.seal_region_into_parts(ctx, route.seq, payload, &aad.parts(), &mut out)?;
                Ok(out)
            }
        }
    }

    /// Opens a queued payload (identity when queues are plain): decrypted where it lies
    /// in `stored`, then moved to the front of the same vector, so the payload is
    /// neither copied to a fresh buffer nor allocated. The vector's tail (the header's
    /// and tag's old place, still holding plaintext bytes after the move) is zeroed;
    /// on a failed open nothing decrypted stays in it.
    pub(crate) fn open_payload(
        &self,
        ctx: ContextId,
        route: &QueuedRoute<'_>,
        mut stored: Vec<u8>,
    ) -> Result<Vec<u8>> {
        match &self.queue {
            None => Ok(stored),
            Some(e) => {
                let at = e.plaintext_offset();
                let aad = MessageAad::new(route);
                let check = SequenceCheck::Exact(route.seq);
                let len = e
                    .open_in_place_parts(&mut stored, ctx, check, &aad.parts())?
                    .len();
                stored.copy_within(at..at + len, 0);
                stored[len..].fill(0);
                stored.truncate(len);
                Ok(stored)
            }
        }
    }

    /// The bytes to store for kernel state `data` as sealing number `seq`.
    pub(crate) fn seal_state(&self, ctx: ContextId, seq: u64, data: &[u8]) -> Result<Vec<u8>> {
        match &self.state {
            None => Ok(data.to_vec()),
            Some(e) => e.seal_stream(ctx, seq, data, b""),
        }
    }

    /// Opens stored kernel state sealed as number `seq`.
    pub(crate) fn open_state(&self, ctx: ContextId, seq: u64, stored: &[u8]) -> Result<Plaintext> {
        match &self.state {
            None => Ok(Plaintext::new(stored.to_vec())),
            Some(e) => e.open_stream(stored, ctx, SequenceCheck::Exact(seq), b""),
        }
    }
}

/// What a queued payload is bound to: its route, its place in its sender's order and
/// its sender's clock reading.
pub(crate) struct QueuedRoute<'a> {
    pub(crate) source: &'a Endpoint,
    pub(crate) dest: &'a KernelId,
    pub(crate) topic: &'a str,
    pub(crate) seq: u64,
    pub(crate) timestamp: HlcTimestamp,
}

/// The associated data binding a queued payload to its route, its place in order and
/// its timestamp: each of source (as displayed: a kernel id or `<host>`), destination
/// and topic length-prefixed (u64 LE), then the sequence (u64 LE), then the timestamp
/// (physical u64 LE, logical u32 LE). Handed to the AEAD as parts, so it is never
/// assembled into a buffer of its own.
struct MessageAad<'a> {
    src: &'a str,
    dest: &'a str,
    topic: &'a str,
    lens: [[u8; 8]; 3],
    seq: [u8; 8],
    time: [u8; 12],
}

impl<'a> MessageAad<'a> {
    fn new(route: &QueuedRoute<'a>) -> Self {
        let src = match route.source {
            Endpoint::Host => "<host>",
            Endpoint::Kernel(id) => id.as_str(),
        };
        let dest = route.dest.as_str();
        let len = |s: &str| (s.len() as u64).to_le_bytes();
        let mut time = [0u8; 12];
        time[..8].copy_from_slice(&route.timestamp.physical.to_le_bytes());
        time[8..].copy_from_slice(&route.timestamp.logical.to_le_bytes());
        MessageAad {
            src,
            dest,
            topic: route.topic,
            lens: [len(src), len(dest), len(route.topic)],
            seq: route.seq.to_le_bytes(),
            time,
        }
    }

    fn parts(&self) -> [&[u8]; 8] {
        [
            &self.lens[0],
            self.src.as_bytes(),
            &self.lens[1],
            self.dest.as_bytes(),
            &self.lens[2],
            self.topic.as_bytes(),
            &self.seq,
            &self.time,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route<'a>(
        source: &'a Endpoint,
        dest: &'a KernelId,
        topic: &'a str,
        seq: u64,
    ) -> QueuedRoute<'a> {
        QueuedRoute {
            source,
            dest,
            topic,
            seq,
            timestamp: HlcTimestamp {
                physical: 0x1122_3344_5566_7788,
                logical: 0x99AA_BBCC,
            },
        }
    }

    #[test]
    fn message_aad_is_the_length_prefixed_route_then_the_sequence_then_the_timestamp() {
        let src = Endpoint::Kernel(KernelId::new("src").expect("id"));
        let dest = KernelId::new("sink").expect("id");
        let time: Vec<u8> = [
            &0x1122_3344_5566_7788u64.to_le_bytes()[..],
            &0x99AA_BBCCu32.to_le_bytes(),
        ]
        .concat();
        let aad = MessageAad::new(&route(&src, &dest, "t", 0x0102));
        let joined: Vec<u8> = aad.parts().concat();
        let mut expected = Vec::new();
        for part in [&b"src"[..], b"sink", b"t"] {
            expected.extend_from_slice(&(part.len() as u64).to_le_bytes());
            expected.extend_from_slice(part);
        }
        expected.extend_from_slice(&0x0102u64.to_le_bytes());
        expected.extend_from_slice(&time);
        assert_eq!(joined, expected);
        let host = MessageAad::new(&route(&Endpoint::Host, &dest, "", 7));
        let mut expected = Vec::new();
        for part in [&b"<host>"[..], b"sink", b""] {
            expected.extend_from_slice(&(part.len() as u64).to_le_bytes());
            expected.extend_from_slice(part);
        }
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&time);
        assert_eq!(host.parts().concat(), expected);
    }

    #[test]
    fn a_queued_payload_with_the_longest_route_opens_only_on_its_own_route() {
        // Ids and topic at their maximum lengths: the associated data (about 850
        // bytes with the header) no longer fits the stack buffer and moves to the heap.
        use crate::security::encryption::EncryptionConfig;
        let enc = MemoryEncryption::new(EncryptionConfig::new()).expect("encryption");
        let sealing = Sealing::new(Some(&enc), None);
        let long = |c: char| c.to_string().repeat(crate::k2k::MAX_KERNEL_ID_LEN);
        let src = Endpoint::Kernel(KernelId::new(&long('s')).expect("id"));
        let dest = KernelId::new(&long('d')).expect("id");
        let topic = "t".repeat(crate::k2k::MAX_TOPIC_LEN);
        let ctx = ContextId::new("sink", "queue");
        let payload = b"secret payload".to_vec();
        let stored = sealing
            .seal_payload(ctx, &route(&src, &dest, &topic, 9), &payload)
            .expect("seal");
        let opened = sealing
            .open_payload(ctx, &route(&src, &dest, &topic, 9), stored.clone())
            .expect("open");
        assert_eq!(opened, payload);
        let other_topic = format!("{}u", &topic[1..]);
        let refused = |r: &QueuedRoute<'_>| sealing.open_payload(ctx, r, stored.clone()).is_err();
        assert!(
            refused(&route(&src, &dest, &other_topic, 9)),
            "moved to another topic"
        );
        assert!(
            refused(&route(&Endpoint::Host, &dest, &topic, 9)),
            "re-attributed to the host"
        );
        assert!(
            refused(&route(&src, &dest, &topic, 10)),
            "replayed at another sequence"
        );
        let mut later = route(&src, &dest, &topic, 9);
        later.timestamp.physical += 1;
        assert!(refused(&later), "timestamp moved forward");
        let mut logical = route(&src, &dest, &topic, 9);
        logical.timestamp.logical ^= 1;
        assert!(refused(&logical), "timestamp's counter changed");
    }
}
