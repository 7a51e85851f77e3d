//! Callgrind's start/stop-instrumentation client requests, without a crate.
//!
//! Valgrind recognises a client request by a "special instruction preamble": four
//! rotations of `rdi` by 3, 13, 61 and 51 bits (128 in all, so `rdi` is unchanged)
//! followed by `xchg rbx, rbx`. `rax` points at the request and its arguments and the
//! result comes back in `rdx`. On a real CPU the sequence does nothing and `rdx` keeps
//! the default value, so the program runs unchanged outside valgrind. The request codes
//! are those of `callgrind.h` (Valgrind 3.x): the tool base `('C' << 24) | ('T' << 16)`
//! plus the request's position in `Vg_CallgrindClientRequest`.
//!
//! Instrumentation, unlike callgrind's collection state, is global: between
//! [`start_instrumentation`] and [`stop_instrumentation`] every thread is counted (the
//! runtime's kernel threads and the audit writer as well as the caller).

/// `VG_USERREQ_TOOL_BASE('C', 'T')`.
const CALLGRIND_BASE: usize = (b'C' as usize) << 24 | (b'T' as usize) << 16;
/// `VG_USERREQ__START_INSTRUMENTATION`.
const START_INSTRUMENTATION: usize = CALLGRIND_BASE + 4;
/// `VG_USERREQ__STOP_INSTRUMENTATION`.
const STOP_INSTRUMENTATION: usize = CALLGRIND_BASE + 5;

/// Sends `request` (no arguments) to valgrind; a no-op on a real CPU.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn client_request(request: usize) {
    let args: [usize; 6] = [request, 0, 0, 0, 0, 0];
    let mut result: usize = 0;
    // SAFETY: the rotations leave `rdi` as it was (3 + 13 + 61 + 51 = 128 bits) and it
    // is declared clobbered anyway; `xchg rbx, rbx` changes nothing; the flags are
    // clobbered (the default for `asm!`). Valgrind only reads the six words behind
    // `rax`, which live until the asm ends, and writes `rdx`, declared as an output.
    // Without valgrind the sequence has no effect beyond the flags.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            inout("rdi") 0usize => _,
            options(nostack),
        );
    }
    std::hint::black_box(result);
}

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the callgrind client requests are written for x86_64 only");

/// Starts counting instructions (all threads), when run under
/// `valgrind --tool=callgrind --instr-atstart=no`.
pub fn start_instrumentation() {
    client_request(START_INSTRUMENTATION);
}

/// Stops counting instructions (all threads).
pub fn stop_instrumentation() {
    client_request(STOP_INSTRUMENTATION);
}
