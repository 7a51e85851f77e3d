//! The security layers, joined into the runtime's gate:
//!
//! - [`encryption`]: `MemoryEncryption` — AEAD over control blocks, queues and kernel
//!   state in device memory; key derivation; timed rotation.
//! - [`keystore`]: `Keystore` — production keys kept across restarts, sealed under a
//!   key-encryption key.
//! - [`memory`]: `SecureBuffer` — locked, zeroed host memory for secrets.
//! - [`audit`]: `AuditLog` — hash-chained, signed, tamper-evident audit records.
//! - [`compliance`]: `ComplianceReporter` — reports that read the live runtime.
//! - [`sandbox`]: `KernelSandbox` — resource limits and K2K access control.
//!
//! The names users know from the reference API are re-exported here.

pub mod audit;
pub mod compliance;
pub mod encryption;
pub mod keystore;
pub mod memory;
pub mod sandbox;

pub use audit::{
    AuditConfig, AuditEvent, AuditLog, AuditLogConfig, AuditPublicKey, AuditSigningKey,
};
pub use compliance::{
    ComplianceCheck, ComplianceReport, ComplianceReporter, ComplianceStandard, ComplianceStatus,
    ExportFormat,
};
pub use encryption::{
    Algorithm, EncryptionConfig, EncryptionStats, KeyDerivation, KeyId, MemoryEncryption,
    SealedData,
};
pub use memory::{
    MemoryProtectionInfo, Plaintext, ProtectionLevel, SecureBuffer, memory_protection_info,
    secure_bytes, set_memory_protection,
};
pub use sandbox::{
    KernelSandbox, MemoryAccess, ResourceLimits, SandboxPolicy, Violation, ViolationAction,
    ViolationKind, ViolationType,
};
