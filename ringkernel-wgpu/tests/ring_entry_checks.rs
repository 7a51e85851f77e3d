//! The persistent kernel's input-ring checks on a real adapter (Mesa lavapipe in CI):
//! the host hands the device the position of every entry a round takes
//! (`layout::P_RING_ENTRIES`), and the kernel's invocations check one entry each, in
//! parallel, against the ring's length words. These tests dispatch the kernel's own
//! `persistent_round` (unsealed control block: no key slots are involved) with the
//! parameters `plan_round` packs, then forge the position table or the ring:
//!
//! - a table that disagrees with the ring (a position shifted by a word, two positions
//!   swapped, a position past the round's end, a wrap claimed where there is none) is
//!   refused as a corrupt ring, with nothing processed, cleared or moved;
//! - a position past the ring's capacity is a parameter that does not fit;
//! - the ring corruptions the single-invocation walk refused are refused with the same
//!   details;
//! - honest rounds of more entries than the workgroup has invocations, wrapping rounds
//!   and rounds that take nothing run as before.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::VecDeque;
use std::sync::OnceLock;

use ringkernel_conformance::ring_cases::{RING_CORRUPTIONS, TABLE_FORGERIES};
use ringkernel_core::backend::device::{DeviceRound, InputRing, layout, plan_round};
use ringkernel_core::backend::input_ring::{RING_HEADER_WORDS, RING_WRAP};
use ringkernel_core::backend::{BufferId, DeviceProgram};
use ringkernel_core::control::{CONTROL_BLOCK_SIZE, ControlBlock};
use ringkernel_core::k2k::{Endpoint, HlcTimestamp, KernelId, Message};

const H: usize = RING_HEADER_WORDS;

struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
}

/// The adapter the backend chose (same environment variables), with the persistent
/// kernel compiled once; `None` (skip) without an adapter, unless
/// `RINGKERNEL_REQUIRE_WGPU=1`.
fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    common::backend()?;
    Some(GPU.get_or_init(|| {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
            &instance, None,
        ))
        .expect("the backend opened an adapter, so the test can too");
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ring entry checks"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .expect("a device on the adapter");
        // Unsealed rounds do no Poly1305: the 32-bit products need no device feature.
        let source = format!(
            "{}\n{}\n{}\n{}",
            ringkernel_wgpu::shaders::prelude(),
            ringkernel_wgpu::shaders::CIPHER_WGSL,
            ringkernel_wgpu::Poly1305Arithmetic::Emulated16.source(),
            ringkernel_wgpu::shaders::PERSISTENT_WGSL,
        );
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("persistent kernel"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("persistent_round"),
            layout: None,
            module: &module,
            entry_point: Some("persistent_round"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            panic!("the persistent kernel did not compile: {e}");
        }
        Gpu {
            device,
            queue,
            pipeline,
        }
    }))
}

fn msg(payload: &[u8]) -> Message {
    Message {
        source: Endpoint::Host,
        destination: KernelId::new("gpu").unwrap(),
        topic: "t".into(),
        payload: payload.to_vec(),
        sequence: 0,
        timestamp: HlcTimestamp::default(),
    }
}

/// A round as the wgpu backend packs it (control block unsealed): the parameters and
/// the ring buffer's words once the host wrote the new entries.
struct Round {
    params: Vec<u32>,
    ring: Vec<u32>,
    messages: usize,
}

/// Places `msgs` into `ring` (whose device words are `image`) and packs a round that
/// takes at most `take` of the pending entries.
fn plan(ring: &mut InputRing, image: &mut Vec<u32>, msgs: &[Message], take: usize) -> Round {
    let round = DeviceRound {
        control: BufferId(0),
        sequence: 0,
        queued_total: 0,
        sealing: None,
        routes: None,
    };
    let mut staged: VecDeque<Message> = msgs.iter().cloned().collect();
    let plan = plan_round(
        &round,
        &DeviceProgram::checksum(),
        ring,
        &mut staged,
        take,
        CONTROL_BLOCK_SIZE,
    )
    .unwrap();
    assert!(staged.is_empty(), "every message fits the ring");
    if plan.ring_grown {
        *image = vec![0; ring.buffer_words()];
    }
    for w in &plan.ring_writes {
        image[w.at..w.at + w.words.len()].copy_from_slice(&w.words);
    }
    Round {
        params: plan.params.clone(),
        ring: image.clone(),
        messages: plan.messages,
    }
}

/// Three 8-byte messages on a fresh 64-word ring: entries of three words at 0, 3 and
/// 6; the round ends at 9.
fn three_entries() -> Round {
    let mut ring = InputRing::new(64);
    let mut image = vec![0; ring.buffer_words()];
    let msgs = [msg(&[1; 8]), msg(&[2; 8]), msg(&[3; 8])];
    plan(&mut ring, &mut image, &msgs, usize::MAX)
}

/// What a round left: status words, output words, the ring's words.
struct Ran {
    status: Vec<u32>,
    output: Vec<u32>,
    ring: Vec<u32>,
}

fn storage(gpu: &Gpu, words: &[u32]) -> wgpu::Buffer {
    let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (words.len().max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    if !words.is_empty() {
        gpu.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(words));
    }
    buffer
}

/// Dispatches one round of `persistent_round` with `params` over `ring`, an output of
/// two words per message the parameters ask for.
fn run(gpu: &Gpu, params: &[u32], ring: &[u32]) -> Ran {
    let mut cb = ControlBlock::new(1024);
    cb.is_active = 1;
    let control = storage(gpu, bytemuck::cast_slice(bytemuck::bytes_of(&cb)));
    let keys = storage(gpu, &[0; layout::KEY_SLOTS * layout::KEY_SLOT_WORDS]);
    let params_buf = storage(gpu, params);
    let ring_buf = storage(gpu, ring);
    let output_words = (2 * params[1] as usize).max(2);
    let output = storage(gpu, &vec![0xdead_beef; output_words]);
    let routes = storage(gpu, &[0]);
    let status = storage(gpu, &[0xa5a5_a5a5; layout::STATUS_WORDS]);
    let entries: Vec<wgpu::BindGroupEntry<'_>> = [
        &control,
        &keys,
        &params_buf,
        &ring_buf,
        &output,
        &routes,
        &status,
    ]
    .iter()
    .enumerate()
    .map(|(i, b)| wgpu::BindGroupEntry {
        binding: i as u32,
        resource: b.as_entire_binding(),
    })
    .collect();
    let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &gpu.pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let reads = [
        (&status, layout::STATUS_WORDS),
        (&output, output_words),
        (&ring_buf, ring.len()),
    ];
    let total: usize = reads.iter().map(|(_, n)| n).sum();
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read-back"),
        size: (total * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&gpu.pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    let mut at = 0;
    for (buffer, words) in reads {
        enc.copy_buffer_to_buffer(buffer, 0, &staging, at, (words * 4) as u64);
        at += (words * 4) as u64;
    }
    gpu.queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    rx.recv().unwrap().unwrap();
    let words: Vec<u32> = {
        let view = staging.get_mapped_range(..).unwrap();
        bytemuck::cast_slice(&view).to_vec()
    };
    staging.unmap();
    let (status, rest) = words.split_at(layout::STATUS_WORDS);
    let (output, ring) = rest.split_at(output_words);
    Ran {
        status: status.to_vec(),
        output: output.to_vec(),
        ring: ring.to_vec(),
    }
}

/// Runs `round` with its entry positions changed by `forge`, and checks that the round
/// is refused with `result` (and `detail` for a corrupt ring) before anything ran:
/// nothing processed, no output, the ring's words and read position untouched.
fn expect_refused(
    gpu: &Gpu,
    round: &Round,
    what: &str,
    forge: impl FnOnce(&mut [u32]),
    result: u32,
    detail: u32,
) {
    let mut params = round.params.clone();
    forge(&mut params[layout::P_RING_ENTRIES..]);
    assert_ne!(
        params, round.params,
        "{what}: the forgery changes the table"
    );
    let ran = run(gpu, &params, &round.ring);
    assert_eq!(ran.status[0], result, "{what}: {:?}", ran.status);
    if result == layout::RING_CORRUPT {
        assert_eq!(ran.status[layout::S_DETAIL], detail, "{what}: detail");
    }
    assert_eq!(
        &ran.status[1..6],
        &[0; 5],
        "{what}: nothing processed or re-sealed"
    );
    assert_eq!(ran.ring, round.ring, "{what}: the ring is untouched");
    assert!(
        ran.output.iter().all(|w| *w == 0xdead_beef),
        "{what}: no output"
    );
}

#[test]
fn forged_entry_offsets_are_refused() {
    let Some(gpu) = gpu() else { return };
    let round = three_entries();
    assert_eq!(&round.params[layout::P_RING_ENTRIES..][..4], &[0, 3, 6, 0]);
    let honest = run(gpu, &round.params, &round.ring);
    assert_eq!(honest.status[0], layout::OK, "the honest table runs");
    for (what, forge, detail) in TABLE_FORGERIES {
        expect_refused(gpu, &round, what, forge, layout::RING_CORRUPT, detail);
    }
    // A position past the ring's capacity is a parameter that does not fit the ring,
    // refused before anything reads the ring there.
    for p in [64, u32::MAX] {
        expect_refused(
            gpu,
            &round,
            "a position past the capacity",
            |t| t[1] = p,
            layout::ROUND_INVALID,
            0,
        );
    }
}

#[test]
fn forged_entry_offsets_in_a_wrapping_round_are_refused() {
    let Some(gpu) = gpu() else { return };
    // A 16-word ring: two 5-word entries at 0 and 5, consumed; then a 7-word entry does
    // not fit after word 10 and goes to 0 behind a wrap word.
    let mut ring = InputRing::new(16);
    let mut image = vec![0; ring.buffer_words()];
    let first = plan(&mut ring, &mut image, &[msg(&[1; 16]), msg(&[2; 16])], 2);
    let ran = run(gpu, &first.params, &first.ring);
    assert_eq!(ran.status[0], layout::OK);
    ring.consumed(2, ran.status[layout::S_RING_READ]).unwrap();
    image = ran.ring;
    let wrapped = plan(&mut ring, &mut image, &[msg(&[3; 24])], 1);
    assert_eq!(wrapped.ring[H + 10], RING_WRAP);
    assert_eq!(
        wrapped.params[layout::P_RING_ENTRIES],
        0,
        "behind the wrap word"
    );
    let ran = run(gpu, &wrapped.params, &wrapped.ring);
    assert_eq!(
        ran.status[0],
        layout::OK,
        "the device follows the host's wrap"
    );
    assert_eq!(ran.output[0], DeviceProgram::checksum_of(&[3; 24]));
    assert_eq!(ran.status[layout::S_RING_READ], 7);
    // The entry claimed at the wrap word itself, or a word past 0.
    expect_refused(
        gpu,
        &wrapped,
        "the wrap word taken as an entry",
        |t| t[0] = 10,
        layout::RING_CORRUPT,
        layout::D_RING_ENTRY,
    );
    expect_refused(
        gpu,
        &wrapped,
        "an entry past the wrap shifted",
        |t| t[0] = 1,
        layout::RING_CORRUPT,
        layout::D_RING_END,
    );
}

#[test]
fn ring_corruptions_are_refused_with_the_walk_s_details() {
    let Some(gpu) = gpu() else { return };
    let round = three_entries();
    for (what, corrupt, detail) in RING_CORRUPTIONS {
        let mut ring = round.ring.clone();
        corrupt(&mut ring);
        let ran = run(gpu, &round.params, &ring);
        assert_eq!(
            (ran.status[0], ran.status[layout::S_DETAIL]),
            (layout::RING_CORRUPT, detail),
            "{what}"
        );
        assert_eq!(ran.ring, ring, "{what}: the ring is untouched");
    }
}

#[test]
fn rounds_of_more_entries_than_invocations_run_and_wrap() {
    let Some(gpu) = gpu() else { return };
    // 200-entry rounds (more than the 64 invocations) of 1- to 9-word entries through a
    // 4096-word ring: the positions wrap; every checksum and the read position match.
    let mut ring = InputRing::new(4096);
    let mut image = vec![0; ring.buffer_words()];
    let mut seq = 0u32;
    for round_no in 0..6 {
        let payloads: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                seq += 1;
                (0..(seq * 7 + i) % 33).map(|j| (seq + j) as u8).collect()
            })
            .collect();
        let msgs: Vec<Message> = payloads.iter().map(|p| msg(p)).collect();
        let round = plan(&mut ring, &mut image, &msgs, 200);
        assert_eq!(round.messages, 200, "round {round_no}");
        let ran = run(gpu, &round.params, &round.ring);
        assert_eq!(
            ran.status[0],
            layout::OK,
            "round {round_no}: {:?}",
            ran.status
        );
        assert_eq!(ran.status[1], 200);
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(
                ran.output[2 * i],
                DeviceProgram::checksum_of(p),
                "round {round_no}, message {i}"
            );
        }
        assert_eq!(
            ran.status[layout::S_RING_READ] as usize,
            ring.end_after(200)
        );
        ring.consumed(200, ran.status[layout::S_RING_READ]).unwrap();
        image = ran.ring;
        assert!(
            image[H..].iter().all(|w| *w == 0),
            "round {round_no}: consumed words cleared"
        );
    }
}

#[test]
fn a_round_that_takes_nothing_stays_where_it_is() {
    let Some(gpu) = gpu() else { return };
    let mut ring = InputRing::new(64);
    let mut image = vec![0; ring.buffer_words()];
    let round = plan(&mut ring, &mut image, &[msg(b"pending")], 0);
    assert_eq!(round.messages, 0);
    let ran = run(gpu, &round.params, &round.ring);
    assert_eq!(&ran.status[..7], &[layout::OK, 0, 0, 0, 0, 1, 0]);
    assert_eq!(ran.ring, round.ring, "the pending entry stays");
    // An end the round cannot reach without taking an entry.
    let mut params = round.params.clone();
    params[layout::P_RING_END] = 3;
    let ran = run(gpu, &params, &round.ring);
    assert_eq!(
        (ran.status[0], ran.status[layout::S_DETAIL]),
        (layout::RING_CORRUPT, layout::D_RING_END)
    );
}
