//! # ringkernel-core
//!
//! A runtime for persistent compute kernels (long-running kernels that keep state in
//! device memory and message each other kernel-to-kernel, "K2K"), with the security
//! layers their users must show auditors: memory encryption, kernel sandboxing, a
//! tamper-evident audit log and compliance reports.
//!
//! Every launch, allocation, buffer access, send and termination passes one security
//! gate inside the runtime (see [`runtime`]); backends are owned by the runtime and
//! never reached around it.
//!
//! ```
//! use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
//! use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig};
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path();
//! let runtime = RuntimeBuilder::new()
//!     .production()
//!     .with_audit_logging(AuditLogConfig::in_directory(dir))
//!     .build()?;
//! let k = runtime.launch("processor_1", LaunchOptions::new())?;
//! k.terminate()?;
//! k.wait(std::time::Duration::from_secs(5))?;
//! runtime.shutdown()?;
//! // The log of what happened verifies with the public key alone.
//! let log = runtime.audit_log().unwrap();
//! ringkernel_core::security::audit::verify(dir, &log.public_key())?;
//! # Ok::<(), ringkernel_core::Error>(())
//! ```
//!
//! Modules: [`runtime`] (builder, runtime, handles), [`backend`] (the device seam and
//! the CPU backend), [`control`] (the control block), [`k2k`] (messages and queues),
//! [`security`] (the layers), [`error`]. The [`manual`] holds the guides: architecture,
//! threat model, and each layer with its defaults.

mod atomic_file;
pub mod backend;
pub mod control;
pub mod error;
pub mod k2k;
mod kinds;
pub mod manual;
pub mod runtime;
pub mod security;

pub use control::ControlBlock;
pub use error::{BoxError, Error, ErrorCode, Result, TokenFailure};
pub use runtime::{KernelHandle, LaunchOptions, Runtime, RuntimeBuilder};
