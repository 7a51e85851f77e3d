//! Every WGSL file in `ringkernel-shaders` parses and validates with naga, both as the
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
fn every_wgsl_file_is_part_of_a_module() {
    let modules = ringkernel_wgpu::shaders::modules();
    for (file, text) in ringkernel_shaders::wgsl::FILES {
        assert!(
            text == ringkernel_wgpu::shaders::CIPHER_WGSL
                || modules.iter().any(|(_, m)| m.ends_with(text)),
            "{file} is not compiled by the backend (and so not validated)"
        );
    }
}

/// The modules naga validated above take every layout constant, once, from the prelude
/// generated from the host's declaration; no source defines one by hand.
#[test]
fn the_kernels_use_the_host_s_layout_from_the_generated_prelude() {
    use ringkernel_core::backend::device::layout::{KERNEL_CONSTANTS, defined_constants};
    for (file, source) in ringkernel_shaders::wgsl::FILES {
        for (name, _) in defined_constants(source) {
            assert!(
                !KERNEL_CONSTANTS.iter().any(|(n, _)| *n == name),
                "{file} defines {name} by hand"
            );
        }
    }
    let prelude = ringkernel_wgpu::shaders::prelude();
    for (module, source) in ringkernel_wgpu::shaders::modules() {
        assert!(source.starts_with(&prelude), "{module} lacks the prelude");
        let defined = defined_constants(&source);
        for (name, value) in KERNEL_CONSTANTS {
            let found: Vec<u32> = defined
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(found, [*value], "{name} in module {module}");
        }
    }
}
