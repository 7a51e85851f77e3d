//! The security layers. Each joins the runtime's gate when its module lands:
//! `encryption` (memory encryption), `sandbox` (kernel sandbox), `audit` and
//! `compliance`.
