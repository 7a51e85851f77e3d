//! The main example: a small ingest -> processor -> aggregator pipeline of persistent
//! kernels on the CPU backend (or `--backend wgpu|cuda`), passing real messages, with a
//! readable summary at the end. On a GPU backend a device kernel also checksums every
//! reading on the GPU, opening and re-sealing its own control block there.
//!
//! Its keys and audit log live in a state directory (`reports/secure_runtime-state`, or
//! `RINGKERNEL_STATE_DIR`): the master key and the audit signing key in a keystore
//! sealed under a passphrase (`RINGKERNEL_KEYSTORE_PASSPHRASE`; a demo passphrase
//! otherwise), so a second run reopens the same keys and continues the same signed
//! audit chain.
//!
//! Run: `cargo run -p ringkernel-examples --bin secure_runtime [-- --backend wgpu]`

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringkernel_core::Result;
use ringkernel_core::backend::{DeviceKind, DeviceProgram, KernelProgram};
use ringkernel_core::runtime::{KernelHandle, LaunchOptions, Runtime, RuntimeBuilder};
use ringkernel_core::security::audit::{AuditConfig, AuditLogConfig, LogStatus, verify};
use ringkernel_core::security::compliance::{ComplianceReporter, ComplianceStandard, ExportFormat};
use ringkernel_core::security::keystore::{KeyEncryptionKey, Keystore};
use ringkernel_core::security::{
    KernelSandbox, ResourceLimits, SandboxPolicy, memory_protection_info,
};

/// Where this example keeps its keystore and audit log unless `RINGKERNEL_STATE_DIR`
/// names another directory.
const DEFAULT_STATE_DIR: &str = "reports/secure_runtime-state";

fn state_dir() -> std::path::PathBuf {
    std::env::var_os("RINGKERNEL_STATE_DIR").map_or_else(|| DEFAULT_STATE_DIR.into(), Into::into)
}

const READINGS: u64 = 10_000;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secure_runtime failed: {e}");
            if matches!(e, ringkernel_core::Error::BackendUnavailable { .. }) {
                eprintln!(
                    "hint: the CPU backend needs nothing (run without --backend); \
                     --backend wgpu runs on any Vulkan driver, including Mesa's lavapipe \
                     (apt-get install mesa-vulkan-drivers libvulkan1)"
                );
            }
            ExitCode::FAILURE
        }
    }
}

fn build_runtime(keystore: Keystore) -> Result<Runtime> {
    let backend = std::env::args()
        .skip_while(|a| a != "--backend")
        .nth(1)
        .unwrap_or_else(|| "cpu".into());
    // Layer 1: memory encryption (AES-256-GCM, 24 h rotation) under the keystore's
    // master key, which survives restarts.
    // Layer 2: a restrictive sandbox. Every kernel gets conservative limits and no K2K
    // route unless allowed; the pipeline's own routes and topics are allowed one by one.
    let limits = ResourceLimits::conservative().max_messages_per_second(1_000_000);
    let sandbox = KernelSandbox::with_policy(limits, SandboxPolicy::restrictive())
        .with_kernel_policy(
            "ingest",
            limits,
            SandboxPolicy::restrictive()
                .k2k_allow_list(&["processor_*"])
                .allow_topics(&["reading"]),
        )
        .with_kernel_policy(
            "processor_*",
            limits,
            SandboxPolicy::restrictive()
                .k2k_allow_list(&["aggregator"])
                .deny_k2k_to(&["audit_*"])
                .allow_topics(&["scaled"]),
        )
        // GPU backends: the device kernel may reach its sink and nothing else.
        .with_kernel_policy(
            "gpu_digest",
            limits,
            SandboxPolicy::restrictive()
                .k2k_allow_list(&["digest_sink"])
                .allow_topics(&["checksum"]),
        );
    // Layer 3: the tamper-evident audit log, signed with the keystore's audit key, so
    // every run continues one chain.
    let audit = AuditLogConfig {
        events: AuditConfig {
            log_k2k_messages: false,
            log_memory_access: true,
            log_violations: true,
            retention_days: 400,
        },
        ..AuditLogConfig::in_directory(keystore.directory().join("audit"))
    };
    let builder = RuntimeBuilder::new()
        .production()
        .with_keystore(keystore)
        .with_sandbox(sandbox)
        .with_audit_logging(audit);
    match backend.as_str() {
        "cpu" => builder.build(),
        "wgpu" => builder
            .with_backend(ringkernel_wgpu::WgpuBackend::new()?)
            .build(),
        "cuda" => builder
            .with_backend(ringkernel_cuda::CudaBackend::new(0)?)
            .build(),
        other => Err(ringkernel_core::Error::InvalidConfig(format!(
            "unknown backend {other:?}; use cpu, wgpu or cuda"
        ))),
    }
}

fn run() -> Result<()> {
    let state = state_dir();
    let kek = match std::env::var("RINGKERNEL_KEYSTORE_PASSPHRASE") {
        Ok(p) => KeyEncryptionKey::password(&p),
        Err(_) => {
            println!(
                "note: RINGKERNEL_KEYSTORE_PASSPHRASE is not set; using the demo passphrase \
                 (never do this with real data)"
            );
            KeyEncryptionKey::password("ringkernel example passphrase")
        }
    };
    let keystore = Keystore::open(&state, kek)?;
    let continued = !keystore.is_new();
    let audit_dir = keystore.directory().join("audit");
    let runtime = build_runtime(keystore)?;
    let info = runtime.backend_info();
    println!("RingKernel secure runtime");
    println!("  instance: {}", runtime.instance_id());
    println!(
        "  state   : {} ({})",
        state.display(),
        if continued {
            "keystore reopened: same keys, same audit chain"
        } else {
            "new keystore"
        }
    );
    println!("  backend : {} ({})", info.name, info.device);
    println!("  mode    : {:?}", runtime.mode());
    if let Some(enc) = runtime.encryption() {
        let mem = memory_protection_info();
        println!(
            "  sealing : {} (control blocks, queues, kernel state), key {}",
            enc.algorithm(),
            enc.current_key_id().map_or("-".into(), |k| k.to_string())
        );
        println!(
            "  secrets : host memory protection {} on {}",
            mem.protection_level, mem.platform
        );
    }
    for note in runtime.security_notes() {
        println!("  note    : {note}");
    }

    // aggregator: sums the scaled readings it receives.
    let total = Arc::new(AtomicU64::new(0));
    let sum = total.clone();
    let aggregator = runtime.launch(
        "aggregator",
        LaunchOptions::new().handler(move |_, msg| {
            let v = u64::from_le_bytes(msg.payload.as_slice().try_into()?);
            sum.fetch_add(v, Ordering::Relaxed);
            Ok(())
        }),
    )?;
    // processor: validates and scales each reading, forwards it.
    let processor = runtime.launch(
        "processor_1",
        LaunchOptions::new().handler(|ctx, msg| {
            let v = u64::from_le_bytes(msg.payload.as_slice().try_into()?);
            ctx.send_timeout(
                "aggregator",
                "scaled",
                &(v * 2).to_le_bytes(),
                Duration::from_secs(5),
            )?;
            Ok(())
        }),
    )?;
    // ingest: parses text readings from the host and forwards them as integers.
    let ingest = runtime.launch(
        "ingest",
        LaunchOptions::new().handler(|ctx, msg| {
            let text = std::str::from_utf8(&msg.payload)?;
            let v: u64 = text.trim().parse()?;
            ctx.send_timeout(
                "processor_1",
                "reading",
                &v.to_le_bytes(),
                Duration::from_secs(5),
            )?;
            Ok(())
        }),
    )?;

    // On a GPU: a device kernel checksums every reading (FNV-1a on the GPU) and sends
    // each checksum to a host kernel, which folds them.
    let on_gpu = info.kind != DeviceKind::Cpu;
    let digest = Arc::new(AtomicU64::new(0));
    let gpu_kernel = if on_gpu {
        let fold = digest.clone();
        runtime.launch(
            "digest_sink",
            LaunchOptions::new().handler(move |_, msg| {
                let c = u32::from_le_bytes(msg.payload.as_slice().try_into()?);
                fold.fetch_add(u64::from(c), Ordering::Relaxed);
                Ok(())
            }),
        )?;
        Some(runtime.launch(
            "gpu_digest",
            LaunchOptions::new().program(KernelProgram::Device(
                DeviceProgram::checksum().forward_to("digest_sink")?,
            )),
        )?)
    } else {
        None
    };

    let started = Instant::now();
    let mut rotation = None;
    for i in 1..=READINGS {
        let reading = i.to_string();
        runtime.send_timeout("ingest", "raw", reading.as_bytes(), Duration::from_secs(5))?;
        if gpu_kernel.is_some() {
            runtime.send_timeout(
                "gpu_digest",
                "raw",
                reading.as_bytes(),
                Duration::from_secs(5),
            )?;
        }
        if i == READINGS / 2 {
            // Rotate while the pipeline runs: every live control block is re-sealed.
            rotation = Some(runtime.rotate_keys()?);
        }
    }
    wait_for(&aggregator, READINGS)?;
    if let Some(k) = &gpu_kernel {
        wait_for(k, READINGS)?;
    }
    let elapsed = started.elapsed();

    let expected = READINGS * (READINGS + 1); // 2 * sum(1..=N)
    let got = total.load(Ordering::Relaxed);
    println!("\nPipeline ingest -> processor_1 -> aggregator");
    for k in [&ingest, &processor, &aggregator] {
        let st = k.status()?;
        println!(
            "  {:<12} state {:<10} processed {:>6}  sent {:>6}  errors {}  memory {} B",
            st.id.as_str(),
            format!("{:?}", st.state),
            st.messages_processed,
            st.messages_sent,
            st.error_count,
            st.memory_bytes
        );
    }
    println!(
        "  {} readings in {:.1} ms ({:.0} msg/s through 3 kernels); aggregate {} (expected {})",
        READINGS,
        elapsed.as_secs_f64() * 1e3,
        (READINGS * 3) as f64 / elapsed.as_secs_f64(),
        got,
        expected
    );
    if let (Some((key, resealed)), Some(enc)) = (rotation, runtime.encryption()) {
        let stats = enc.stats();
        println!("\nEncryption");
        println!("  rotated mid-run to {key}, re-sealing {resealed} live region(s)");
        println!(
            "  {} seals, {} opens, {} failures, {} rotation(s); live keys {:?}",
            stats.seals,
            stats.opens,
            stats.failures,
            stats.rotations,
            enc.live_key_ids()
        );
    }
    if got != expected {
        return Err(ringkernel_core::Error::corrupt(
            "aggregate",
            format!("expected {expected}, got {got}"),
        ));
    }
    if let Some(k) = &gpu_kernel {
        let st = k.status()?;
        let want: u64 = (1..=READINGS)
            .map(|i| u64::from(DeviceProgram::checksum_of(i.to_string().as_bytes())))
            .sum();
        let t0 = Instant::now();
        while digest.load(Ordering::Relaxed) != want && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let have = digest.load(Ordering::Relaxed);
        println!("\nGPU kernel gpu_digest ({})", info.device);
        println!(
            "  processed {} readings on the device, control block opened and re-sealed there \
             (ChaCha20-Poly1305 in WGSL); {} checksums forwarded",
            st.messages_processed, st.messages_sent
        );
        println!(
            "  checksum fold {have} (CPU recomputation {want}): {}",
            if have == want { "match" } else { "MISMATCH" }
        );
        if have != want {
            return Err(ringkernel_core::Error::corrupt(
                "GPU checksums",
                format!("expected {want}, got {have}"),
            ));
        }
    }

    // The sandbox at work: ingest may reach processors only.
    println!("\nSandbox");
    match ingest.send("aggregator", "reading", b"bypass") {
        Err(e) => println!("  ingest -> aggregator refused: {e}"),
        Ok(()) => {
            return Err(ringkernel_core::Error::InvalidConfig(
                "the sandbox let a forbidden route through".into(),
            ));
        }
    }
    if let Some(sb) = runtime.sandbox() {
        for v in sb.check_violations(&ingest)? {
            println!(
                "  recorded: {} ({:?}, action {:?})",
                v.violation_type, v.kernel, v.action
            );
        }
        let table = sb.route_table();
        println!(
            "  route table: {} permitted route(s) among {} kernel slot(s)",
            table.permitted_routes(),
            table.slots()
        );
    }

    // Layer 4: compliance, read from the live runtime.
    let reporter = ComplianceReporter::new(&runtime).organization("RingKernel example");
    let soc2 = reporter.generate(ComplianceStandard::Soc2)?;
    reporter.export(&soc2, ExportFormat::Pdf, "reports/secure_runtime_soc2.pdf")?;
    reporter.export(
        &soc2,
        ExportFormat::Html,
        "reports/secure_runtime_soc2.html",
    )?;
    println!("\nSOC 2 (reports/secure_runtime_soc2.pdf, .html)");
    for check in &soc2.checks {
        println!(
            "  {:<7} {:<48} {}",
            check.id,
            check.name,
            check.status.title()
        );
    }

    let public_key = runtime.audit_log().map(|l| l.public_key());
    let report = runtime.shutdown()?;
    println!(
        "\nShutdown: {} kernels stopped, {} undelivered messages, {} bytes of device memory left",
        report.kernels, report.undelivered, report.memory_in_use
    );

    // The runtime's own audit log, verified with the public key alone.
    if let Some(pk) = public_key {
        let v = verify(&audit_dir, &pk)?;
        println!("\nAudit log {}", audit_dir.display());
        let closed = if v.status == LogStatus::Closed {
            "closed cleanly"
        } else {
            "open"
        };
        println!(
            "  VERIFIED: {} records in {} signed segment(s), {closed}; public key {pk}",
            v.records, v.sealed_segments
        );
        if continued {
            println!("  continued the audit log of an earlier run: one chain across restarts");
        }
        println!(
            "  auditors: ringkernel audit verify {} --key {pk}",
            audit_dir.display()
        );
    }
    Ok(())
}

fn wait_for(k: &KernelHandle, n: u64) -> Result<()> {
    let t0 = Instant::now();
    while k.status()?.messages_processed < n {
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(ringkernel_core::Error::Timeout(Duration::from_secs(60)));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
