//! The GPU conformance suite (`ringkernel_core::backend::conformance`) on a real wgpu
//! adapter (Mesa lavapipe in CI): the WGSL ChaCha20-Poly1305 against RFC 8439,
//! Wycheproof and RustCrypto; STREAM sealing both ways; buffers; persistent kernels
//! with device-sealed control blocks, rotations and device route capabilities; and a
//! hostile device (the backend's `hostile-device-testing` hook, on in these tests)
//! corrupting a kernel's input ring, key slots, route bitmap and control block.
//!
//! Every GPU test runs twice, once per Poly1305 arithmetic of the WGSL kernels
//! (modules `int64` and `emulated16`): lavapipe has `SHADER_INT64`, so CI checks the
//! 64-bit path and the 32-bit fallback on one adapter. With
//! `RINGKERNEL_REQUIRE_WGPU=1` an adapter without `SHADER_INT64` fails the `int64`
//! tests.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use ringkernel_conformance::{self as suite, Shared};
use ringkernel_core::backend::{DeviceProgram, KernelProgram};
use ringkernel_core::runtime::{LaunchOptions, RuntimeBuilder};
use ringkernel_wgpu::{Poly1305Arithmetic, WgpuBackend};

/// The whole GPU suite on backends of one arithmetic.
macro_rules! gpu_suite {
    ($module:ident, $arithmetic:expr) => {
        mod $module {
            use super::*;

            const ARITHMETIC: Poly1305Arithmetic = $arithmetic;

            #[test]
            fn rfc8439_section_2_8_2_on_the_gpu() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::rfc8439_vector(&gpu);
            }

            #[test]
            fn every_wycheproof_chacha20_poly1305_vector_on_the_gpu() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::wycheproof_vectors(&gpu);
            }

            #[test]
            fn random_messages_match_rustcrypto_both_ways_and_tampering_fails() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::random_messages_against_rustcrypto(&gpu);
            }

            #[test]
            fn stream_sealed_on_the_gpu_opens_on_the_cpu_and_the_reverse() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::stream_both_ways(&gpu);
            }

            #[test]
            fn a_flipped_byte_makes_the_gpu_open_fail_and_writes_nothing() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::stream_tampering(&gpu);
            }

            #[test]
            fn accounting_uses_reserved_sizes_and_bad_arguments_are_typed_errors() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::buffer_accounting(&gpu, 256);
            }

            #[test]
            fn unaligned_writes_and_reads_touch_only_their_bytes() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::unaligned_access(&gpu);
            }

            #[test]
            fn a_freed_buffer_reads_back_as_zeros_after_reallocation() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::freed_buffers_read_zero(&gpu);
            }

            #[test]
            fn device_kernel_counts_exactly_across_three_rotations_with_a_sealed_control_block() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::kernel_counts_across_rotations(Shared::new(gpu));
            }

            #[test]
            fn a_control_block_replayed_from_an_earlier_launch_is_refused_on_host_and_device() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::kernel_replay_across_incarnations_refused(Shared::new(gpu));
            }

            #[test]
            fn status_of_a_device_kernel_is_cached_and_a_tight_poller_does_not_starve_it() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::kernel_status_is_cached(Shared::new(gpu));
            }

            #[test]
            fn a_device_kernel_stopped_mid_stream_counts_every_message() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::kernel_stopped_mid_stream_counts_every_message(Shared::new(gpu));
            }

            #[test]
            fn the_input_ring_in_device_memory_wraps_and_keeps_order() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::kernel_input_ring_keeps_order(Shared::new(gpu));
            }

            #[test]
            fn a_device_side_send_to_a_denied_peer_is_refused_and_reported() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::kernel_device_route_refused(Shared::new(gpu));
            }

            #[test]
            fn aes_gcm_runtimes_seal_gpu_control_blocks_with_chacha20_poly1305_and_say_so() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::kernel_aes_gcm_companion(Shared::new(gpu));
            }

            #[test]
            fn a_hostile_device_corrupting_the_input_ring_stops_only_that_kernel() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::hostile_input_ring(Shared::new(gpu));
            }

            #[test]
            fn a_hostile_device_garbling_the_key_slots_stops_only_that_kernel() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::hostile_key_slots(Shared::new(gpu));
            }

            #[test]
            fn a_hostile_device_flipping_a_route_bit_is_caught_before_anything_is_delivered() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::hostile_route_bitmap(Shared::new(gpu));
            }

            #[test]
            fn a_hostile_device_replacing_a_sealed_control_block_stops_only_that_kernel() {
                let Some(gpu) = common::backend_with(ARITHMETIC) else {
                    return;
                };
                suite::hostile_control_block(Shared::new(gpu));
            }
        }
    };
}

gpu_suite!(int64, Poly1305Arithmetic::Int64);
gpu_suite!(emulated16, Poly1305Arithmetic::Emulated16);

/// Left to itself, the backend takes the 64-bit path when the adapter has
/// `SHADER_INT64` (lavapipe does, so CI checks that it is chosen).
#[test]
fn the_backend_picks_int64_poly1305_when_the_adapter_has_shader_int64() {
    let Some(gpu) = common::backend() else { return };
    let has_int64 = WgpuBackend::with_poly1305(Poly1305Arithmetic::Int64).is_ok();
    let expected = if has_int64 {
        Poly1305Arithmetic::Int64
    } else {
        Poly1305Arithmetic::Emulated16
    };
    assert_eq!(gpu.poly1305(), expected);
    if ringkernel_wgpu::adapter_required() {
        assert!(
            has_int64,
            "RINGKERNEL_REQUIRE_WGPU=1: the adapter lacks SHADER_INT64"
        );
    }
}

#[test]
fn device_programs_are_refused_by_the_cpu_backend() {
    let rt = RuntimeBuilder::new().development().build().unwrap();
    let r = rt.launch(
        "gpu",
        LaunchOptions::new().program(KernelProgram::Device(DeviceProgram::checksum())),
    );
    assert!(
        matches!(r, Err(ringkernel_core::Error::Unsupported { .. })),
        "{r:?}"
    );
}
