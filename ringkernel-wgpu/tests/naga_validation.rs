//! Every WGSL file in `shaders/wgsl/` parses and validates with naga, both as the
//! library alone and as each module the backend builds (library + kernel file). Needs
//! no adapter.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(name: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    // No optional capabilities: in particular no SHADER_INT64, which many adapters lack.
    Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    module
}

#[test]
fn every_wgsl_module_validates_without_optional_capabilities() {
    validate(
        "chacha20_poly1305.wgsl",
        ringkernel_wgpu::shaders::CIPHER_WGSL,
    );
    let modules = ringkernel_wgpu::shaders::modules();
    assert_eq!(modules.len(), 3);
    for (name, source) in &modules {
        let m = validate(name, source);
        assert!(!m.entry_points.is_empty(), "{name} has no entry point");
    }
}

#[test]
fn every_wgsl_file_on_disk_is_part_of_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders/wgsl");
    let modules = ringkernel_wgpu::shaders::modules();
    for f in std::fs::read_dir(dir).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text == ringkernel_wgpu::shaders::CIPHER_WGSL
                    || modules.iter().any(|(_, m)| m.ends_with(&text)),
                "{} is not compiled by the backend (and so not validated)",
                path.display()
            );
        }
    }
}

#[test]
fn the_persistent_kernel_uses_the_host_s_round_layout() {
    use ringkernel_core::backend::device::layout::{KERNEL_CONSTANTS, defined_constants};
    let defined = defined_constants(ringkernel_wgpu::shaders::PERSISTENT_WGSL);
    for (name, value) in KERNEL_CONSTANTS {
        let found: Vec<u32> = defined
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(found, [*value], "{name} in persistent_kernel.wgsl");
    }
    // The key check values' nonce starts with the byte the host uses.
    let nonce0 = defined.iter().find(|(n, _)| n == "RK_KEY_CHECK_NONCE0");
    let host = ringkernel_core::security::encryption::device::KEY_CHECK_NONCE;
    assert_eq!(
        nonce0.map(|(_, v)| *v),
        Some(u32::from_le_bytes([host[0], host[1], host[2], host[3]]))
    );
}
