//! Every WGSL file in `ringkernel-shaders` parses and validates with naga, both as the
//! library with its products alone and as each module the backend builds (library + Poly1305 products +
//! kernel file), for both Poly1305 arithmetics: the emulated one with no optional
//! capabilities, the 64-bit one with `SHADER_INT64` only. Needs no adapter.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use naga::valid::{Capabilities, ValidationFlags, Validator};
use ringkernel_wgpu::Poly1305Arithmetic;

const ARITHMETICS: [Poly1305Arithmetic; 2] =
    [Poly1305Arithmetic::Int64, Poly1305Arithmetic::Emulated16];

fn parse(name: &str, source: &str) -> naga::Module {
    naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)))
}

fn validate_with(name: &str, source: &str, capabilities: Capabilities) -> naga::Module {
    let module = parse(name, source);
    Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    module
}

/// The capabilities a module of `arithmetic` may use: none for the emulated fallback
/// (it must run on every adapter), `SHADER_INT64` alone for the 64-bit path.
fn capabilities(arithmetic: Poly1305Arithmetic) -> Capabilities {
    match arithmetic {
        Poly1305Arithmetic::Int64 => Capabilities::SHADER_INT64,
        Poly1305Arithmetic::Emulated16 => Capabilities::empty(),
    }
}

#[test]
fn every_wgsl_module_validates_with_only_the_capabilities_its_arithmetic_needs() {
    for arithmetic in ARITHMETICS {
        // The library with its products alone, before any kernel uses it.
        validate_with(
            &format!("chacha20_poly1305.wgsl ({arithmetic:?})"),
            &format!(
                "{}\n{}",
                ringkernel_wgpu::shaders::CIPHER_WGSL,
                arithmetic.source()
            ),
            capabilities(arithmetic),
        );
        let modules = ringkernel_wgpu::shaders::modules(arithmetic);
        assert_eq!(modules.len(), 3);
        for (name, source) in &modules {
            let name = format!("{name} ({arithmetic:?})");
            let m = validate_with(&name, source, capabilities(arithmetic));
            assert!(!m.entry_points.is_empty(), "{name} has no entry point");
        }
    }
}

/// The 64-bit modules really use 64-bit integers (so the device must grant
/// `SHADER_INT64`), and the fallback uses none.
#[test]
fn only_the_int64_modules_need_shader_int64() {
    for (name, source) in ringkernel_wgpu::shaders::modules(Poly1305Arithmetic::Int64) {
        let module = parse(name, &source);
        assert!(
            Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&module)
                .is_err(),
            "{name} (Int64) validates without SHADER_INT64: it does not use u64"
        );
    }
    assert!(
        !ringkernel_shaders::wgsl::POLY1305_MUL_EMULATED.contains("u64"),
        "the emulated Poly1305 products name u64"
    );
}

#[test]
fn every_wgsl_file_is_part_of_a_module() {
    let modules: Vec<String> = ARITHMETICS
        .into_iter()
        .flat_map(ringkernel_wgpu::shaders::modules)
        .map(|(_, m)| m)
        .collect();
    for (file, text) in ringkernel_shaders::wgsl::FILES {
        assert!(
            modules.iter().any(|m| m.contains(text)),
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
    for (module, source) in ARITHMETICS
        .into_iter()
        .flat_map(ringkernel_wgpu::shaders::modules)
    {
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
