//! The manual: the project's guides, in the API documentation.
//!
//! Each module below is one page of `docs/` (the same files, included as they are, so
//! the repository and `cargo doc` never disagree). Start with [`architecture`] for how
//! the parts fit, [`threat_model`] for what is and is not protected, then the page of
//! the layer you configure; each lists its defaults. [`hsm`] and [`syslog`] are the
//! operator pages of the fleet bridges (a PKCS#11 token for the keystore's key, audit
//! heads shipped to syslog).

#[doc = include_str!("../manual/architecture.md")]
pub mod architecture {}

#[doc = include_str!("../manual/threat-model.md")]
pub mod threat_model {}

#[doc = include_str!("../manual/encryption.md")]
pub mod encryption {}

#[doc = include_str!("../manual/sandbox.md")]
pub mod sandbox {}

#[doc = include_str!("../manual/audit.md")]
pub mod audit {}

#[doc = include_str!("../manual/compliance.md")]
pub mod compliance {}

#[doc = include_str!("../manual/hsm.md")]
pub mod hsm {}

#[doc = include_str!("../manual/syslog.md")]
pub mod syslog {}

#[doc = include_str!("../manual/backends.md")]
pub mod backends {}

#[doc = include_str!("../manual/benchmarks.md")]
pub mod benchmarks {}
