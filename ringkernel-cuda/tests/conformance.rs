//! The GPU conformance suite (`ringkernel_core::backend::conformance`) on a CUDA
//! device: the same checks the wgpu backend passes on lavapipe in CI. They need an
//! NVIDIA driver and device; without them each test prints why it skips
//! (`RINGKERNEL_REQUIRE_CUDA=1` makes that a failure, for GPU machines).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ringkernel_conformance::{self as suite, Shared};
use ringkernel_core::Error;
use ringkernel_cuda::{CudaBackend, device_required};

fn backend() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => {
            eprintln!("cuda device: {:?}", b.device());
            Some(b)
        }
        Err(e) if device_required() => {
            panic!("RINGKERNEL_REQUIRE_CUDA=1 but the CUDA backend is unavailable: {e}")
        }
        Err(e) => {
            assert!(
                matches!(e, Error::BackendUnavailable { .. }),
                "without a device the error must say so, got {e:?}"
            );
            eprintln!("SKIPPED: no CUDA device here ({e})");
            None
        }
    }
}

#[test]
fn without_a_driver_the_backend_is_unavailable_and_nothing_panics() {
    // On a GPU machine this opens the device; elsewhere it must be a typed error.
    match CudaBackend::new(0) {
        Ok(_) => {}
        Err(Error::BackendUnavailable { reason }) => assert!(!reason.is_empty()),
        Err(e) => panic!("unexpected error: {e:?}"),
    }
    assert!(matches!(
        CudaBackend::new(usize::MAX),
        Err(Error::BackendUnavailable { .. })
    ));
}

#[test]
fn rfc8439_section_2_8_2_on_the_gpu() {
    let Some(gpu) = backend() else { return };
    suite::rfc8439_vector(&gpu);
}

#[test]
fn every_wycheproof_chacha20_poly1305_vector_on_the_gpu() {
    let Some(gpu) = backend() else { return };
    suite::wycheproof_vectors(&gpu);
}

#[test]
fn random_messages_match_rustcrypto_both_ways_and_tampering_fails() {
    let Some(gpu) = backend() else { return };
    suite::random_messages_against_rustcrypto(&gpu);
}

#[test]
fn stream_sealed_on_the_gpu_opens_on_the_cpu_and_the_reverse() {
    let Some(gpu) = backend() else { return };
    suite::stream_both_ways(&gpu);
}

#[test]
fn a_flipped_byte_makes_the_gpu_open_fail_and_writes_nothing() {
    let Some(gpu) = backend() else { return };
    suite::stream_tampering(&gpu);
}

#[test]
fn accounting_uses_reserved_sizes_and_bad_arguments_are_typed_errors() {
    let Some(gpu) = backend() else { return };
    suite::buffer_accounting(&gpu, 256);
}

#[test]
fn unaligned_writes_and_reads_touch_only_their_bytes() {
    let Some(gpu) = backend() else { return };
    suite::unaligned_access(&gpu);
}

#[test]
fn a_freed_buffer_reads_back_as_zeros_after_reallocation() {
    let Some(gpu) = backend() else { return };
    suite::freed_buffers_read_zero(&gpu);
}

#[test]
fn device_kernel_counts_exactly_across_three_rotations_with_a_sealed_control_block() {
    let Some(gpu) = backend() else { return };
    suite::kernel_counts_across_rotations(Shared::new(gpu));
}

#[test]
fn a_control_block_replayed_from_an_earlier_launch_is_refused_on_host_and_device() {
    let Some(gpu) = backend() else { return };
    suite::kernel_replay_across_incarnations_refused(Shared::new(gpu));
}

#[test]
fn status_of_a_device_kernel_is_cached_and_a_tight_poller_does_not_starve_it() {
    let Some(gpu) = backend() else { return };
    suite::kernel_status_is_cached(Shared::new(gpu));
}

#[test]
fn a_device_kernel_stopped_mid_stream_counts_every_message() {
    let Some(gpu) = backend() else { return };
    suite::kernel_stopped_mid_stream_counts_every_message(Shared::new(gpu));
}

#[test]
fn the_input_ring_in_device_memory_wraps_and_keeps_order() {
    let Some(gpu) = backend() else { return };
    suite::kernel_input_ring_keeps_order(Shared::new(gpu));
}

#[test]
fn a_device_side_send_to_a_denied_peer_is_refused_and_reported() {
    let Some(gpu) = backend() else { return };
    suite::kernel_device_route_refused(Shared::new(gpu));
}

#[test]
fn aes_gcm_runtimes_seal_gpu_control_blocks_with_chacha20_poly1305_and_say_so() {
    let Some(gpu) = backend() else { return };
    suite::kernel_aes_gcm_companion(Shared::new(gpu));
}

#[test]
fn a_hostile_device_corrupting_the_input_ring_stops_only_that_kernel() {
    let Some(gpu) = backend() else { return };
    suite::hostile_input_ring(Shared::new(gpu));
}

#[test]
fn a_hostile_device_garbling_the_key_slots_stops_only_that_kernel() {
    let Some(gpu) = backend() else { return };
    suite::hostile_key_slots(Shared::new(gpu));
}

#[test]
fn a_hostile_device_flipping_a_route_bit_is_caught_before_anything_is_delivered() {
    let Some(gpu) = backend() else { return };
    suite::hostile_route_bitmap(Shared::new(gpu));
}

#[test]
fn a_hostile_device_replacing_a_sealed_control_block_stops_only_that_kernel() {
    let Some(gpu) = backend() else { return };
    suite::hostile_control_block(Shared::new(gpu));
}
