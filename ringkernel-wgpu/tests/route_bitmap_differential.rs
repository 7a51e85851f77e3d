//! Differential test of the device route check: for a random policy over 200 kernels,
//! the real WGSL `rk_route_permitted` (the persistent kernel's own source, compiled by
//! the adapter's driver) reading the route bitmap the host uploads must agree with the
//! sandbox's host-side decision for every ordered pair.
//!
//! The 200 kernels are launched on a CPU runtime with the sandbox, so the route table is
//! the one the runtime's launch path builds; its bitmap is converted to device words by
//! `RoundPlan::routes_to_upload`, the conversion the wgpu backend uses, and the
//! parameters the function reads (stride, enforce flag, bitmap words) are set at the
//! indices `plan_round` writes them. A test-only entry point appended to the shader
//! source calls `rk_route_permitted(src, dst)` for every pair of a grid slightly larger
//! than the bitmap's stride (out-of-range slots must be refused too) in one dispatch.
//!
//! The policy is seeded: `RINGKERNEL_ROUTE_SEED=<n>` replays a run (the seed is printed).

mod common;

use std::sync::Arc;

use ringkernel_core::backend::device::{RoundPlan, layout};
use ringkernel_core::runtime::{KernelHandle, LaunchOptions, RuntimeBuilder};
use ringkernel_core::security::sandbox::RouteTable;
use ringkernel_core::security::{KernelSandbox, ResourceLimits, SandboxPolicy};

const KERNELS: usize = 200;
/// Slots past the stride the grid also asks about (must all be refused).
const EXTRA: u32 = 8;

/// splitmix64: a small seeded generator, enough to draw a policy.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const FAMILIES: [&str; 6] = ["ingest", "proc", "agg", "audit", "sink", "gpu"];

fn kernel_name(i: usize) -> String {
    format!("{}_{i}", FAMILIES[i % FAMILIES.len()])
}

/// A random route pattern: a whole family, a numeric prefix within one, one exact
/// kernel, or everything.
fn pattern(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=3 => format!("{}_*", FAMILIES[rng.below(FAMILIES.len())]),
        4..=5 => format!("{}_{}*", FAMILIES[rng.below(FAMILIES.len())], rng.below(20)),
        6..=8 => kernel_name(rng.below(KERNELS)),
        _ => "*".to_string(),
    }
}

fn patterns(rng: &mut Rng, max: usize) -> Vec<String> {
    (0..rng.below(max + 1)).map(|_| pattern(rng)).collect()
}

fn random_policy(rng: &mut Rng) -> SandboxPolicy {
    let base = if rng.chance(60) {
        SandboxPolicy::restrictive()
    } else {
        SandboxPolicy::new()
    };
    let allow = patterns(rng, 4);
    let deny = patterns(rng, 3);
    let mut p = base;
    if !allow.is_empty() {
        p = p.k2k_allow_list(&allow);
    }
    if !deny.is_empty() {
        p = p.deny_k2k_to(&deny);
    }
    p
}

/// A sandbox with a random default policy and random per-kernel overrides (selectors
/// with wildcards and exact names; the first matching selector wins).
fn random_sandbox(rng: &mut Rng) -> KernelSandbox {
    let limits = ResourceLimits::conservative();
    let mut sandbox = KernelSandbox::with_policy(limits, random_policy(rng));
    for _ in 0..24 {
        let selector = pattern(rng);
        sandbox = sandbox.with_kernel_policy(&selector, limits, random_policy(rng));
    }
    sandbox
}

/// The route bitmap words exactly as the wgpu backend uploads them.
fn device_words(table: &Arc<RouteTable>) -> Vec<u32> {
    let plan = RoundPlan {
        params: Vec::new(),
        key_slots: zeroize::Zeroizing::new(Vec::new()),
        ring_writes: Vec::new(),
        ring_grown: false,
        routes: Some(table.clone()),
        peer: None,
        route_permitted: None,
        messages: 0,
    };
    plan.routes_to_upload(&mut None)
        .expect("a route table to upload")
}

/// Calls the persistent kernel's `rk_route_permitted` for every (src, dst) in a
/// `side` × `side` grid; one output word per pair.
const PROBE_WGSL: &str = r"
@group(0) @binding(7) var<storage, read> rk_probe_side: array<u32>;

@compute @workgroup_size(64)
fn rk_probe_routes(@builtin(global_invocation_id) gid: vec3<u32>) {
    let side = rk_probe_side[0];
    let i = gid.y * 65535u * 64u + gid.x;
    if (i >= side * side) {
        return;
    }
    output[i] = select(0u, 1u, rk_route_permitted(i / side, i % side));
}
";

struct Device {
    device: wgpu::Device,
    queue: wgpu::Queue,
}

/// A device on the adapter the backend chose (the same environment variables).
fn open_device() -> Device {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
        &instance, None,
    ))
    .expect("the backend opened an adapter, so the test can too");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("route bitmap differential"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("a device on the adapter");
    Device { device, queue }
}

fn storage(dev: &Device, label: &str, words: &[u32], writable: bool) -> wgpu::Buffer {
    let buffer = dev.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (words.len().max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | if writable {
                wgpu::BufferUsages::COPY_SRC
            } else {
                wgpu::BufferUsages::empty()
            },
        mapped_at_creation: false,
    });
    if !words.is_empty() {
        dev.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(words));
    }
    buffer
}

/// Runs the probe over the uploaded bitmap and returns one word per grid pair.
fn device_decisions(dev: &Device, params: &[u32], routes: &[u32], side: u32) -> Vec<u32> {
    // The route check does no Poly1305: the 32-bit products need no device feature.
    let source = format!(
        "{}\n{}\n{}\n{}\n{}",
        ringkernel_wgpu::shaders::prelude(),
        ringkernel_wgpu::shaders::CIPHER_WGSL,
        ringkernel_wgpu::Poly1305Arithmetic::Emulated16.source(),
        ringkernel_wgpu::shaders::PERSISTENT_WGSL,
        PROBE_WGSL
    );
    let scope = dev.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = dev
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("persistent kernel + route probe"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
    let pipeline = dev
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("rk_probe_routes"),
            layout: None,
            module: &module,
            entry_point: Some("rk_probe_routes"),
            compilation_options: Default::default(),
            cache: None,
        });
    if let Some(e) = pollster::block_on(scope.pop()) {
        panic!("the probe did not compile: {e}");
    }
    let pairs = (side * side) as usize;
    let params_buf = storage(dev, "params", params, false);
    let routes_buf = storage(dev, "routes", routes, false);
    let side_buf = storage(dev, "side", &[side], false);
    let output = storage(dev, "output", &vec![0xdead_beef; pairs], true);
    let bind = dev.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("route probe"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 2,
                resource: params_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 4,
                resource: output.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 5,
                resource: routes_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 7,
                resource: side_buf.as_entire_binding(),
            },
        ],
    });
    let staging = dev.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read-back"),
        size: (pairs * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let groups = pairs.div_ceil(64) as u32;
    assert!(groups <= 65535, "grid too large for one dispatch row");
    let mut enc = dev.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
    enc.copy_buffer_to_buffer(&output, 0, &staging, 0, (pairs * 4) as u64);
    dev.queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    dev.device
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("device work finished");
    rx.recv()
        .expect("map callback")
        .expect("read-back buffer mapped");
    let words: Vec<u32> = {
        let view = staging.get_mapped_range(..).expect("mapped range");
        bytemuck::cast_slice(&view).to_vec()
    };
    staging.unmap();
    words
}

#[test]
fn device_route_bitmap_agrees_with_host_sandbox_for_every_pair() {
    let Some(_backend) = common::backend() else {
        return;
    };
    let seed = std::env::var("RINGKERNEL_ROUTE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("route policy seed {seed} (RINGKERNEL_ROUTE_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    // A policy that permits no route, or every one, tests little: draw again (from the
    // same generator, so the seed still replays the run).
    let sandbox = loop {
        let sandbox = random_sandbox(&mut rng);
        let names: Vec<String> = (0..KERNELS).map(kernel_name).collect();
        let permitted = names
            .iter()
            .map(|src| {
                let policy = sandbox.policy_for(src).expect("policy").1;
                names
                    .iter()
                    .filter(|dst| *dst != src && policy.allows_route(dst))
                    .count()
            })
            .sum::<usize>();
        if permitted > 0 && permitted < KERNELS * (KERNELS - 1) {
            break sandbox;
        }
        eprintln!("degenerate policy ({permitted} permitted routes): drawing another");
    };

    // Launch the 200 kernels: the runtime registers each with the sandbox, which fills
    // its row and column of the route table from the policies' decisions.
    let runtime = RuntimeBuilder::new()
        .development()
        .with_sandbox(sandbox)
        .build()
        .expect("runtime");
    let handles: Vec<KernelHandle> = (0..KERNELS)
        .map(|i| {
            runtime
                .launch(&kernel_name(i), LaunchOptions::new().handler(|_, _| Ok(())))
                .expect("launch")
        })
        .collect();
    let sandbox = runtime.sandbox().expect("the runtime's sandbox");
    let table = sandbox.route_table();
    let (_, stride) = table.bitmap();
    assert!(stride >= KERNELS, "stride {stride} below {KERNELS} kernels");

    // The host's decision for every slot pair: a route between two different live
    // kernels that the sender's policy allows; nothing else.
    let policies: Vec<Option<_>> = (0..stride)
        .map(|s| {
            table
                .kernel(s)
                .map(|id| sandbox.policy_for(id.as_str()).expect("policy").1)
        })
        .collect();
    let side = stride as u32 + EXTRA;
    let host = |src: usize, dst: usize| -> bool {
        match (
            policies.get(src).and_then(Option::as_ref),
            table.kernel(dst),
        ) {
            (Some(p), Some(d)) => src != dst && p.allows_route(d.as_str()),
            _ => false,
        }
    };

    // Parameters as plan_round writes them for a round with a peer.
    let words = device_words(&table);
    let mut params = vec![0u32; layout::PARAM_WORDS];
    params[7] = stride as u32;
    params[8] = 1;
    params[layout::P_ROUTE_WORDS] = words.len() as u32;

    let dev = open_device();
    let device = device_decisions(&dev, &params, &words, side);

    let mut disagreements = Vec::new();
    let mut permitted = 0usize;
    let mut live_pairs = 0usize;
    for src in 0..side as usize {
        for dst in 0..side as usize {
            let want = host(src, dst);
            let got = device[src * side as usize + dst];
            assert!(got <= 1, "probe left {got:#x} at ({src}, {dst})");
            if src < stride && dst < stride {
                // The host's own bitmap check must agree with its policy decision too.
                assert_eq!(
                    table.permits(src, dst),
                    want,
                    "host table at ({src}, {dst})"
                );
            }
            if table.kernel(src).is_some() && table.kernel(dst).is_some() {
                live_pairs += 1;
            }
            permitted += usize::from(want);
            if (got == 1) != want {
                disagreements.push((src, dst, want, got));
            }
        }
    }
    eprintln!(
        "{KERNELS} kernels, stride {stride}, {} pairs probed on the device ({live_pairs} between \
         live kernels), {permitted} permitted, {} disagreement(s)",
        side * side,
        disagreements.len()
    );
    assert_eq!(live_pairs, KERNELS * KERNELS);
    assert!(
        permitted > 0 && permitted < KERNELS * (KERNELS - 1),
        "seed {seed}: a degenerate policy ({permitted} permitted routes) tests little"
    );
    assert!(
        disagreements.is_empty(),
        "seed {seed}: device and host disagree on {} pair(s), first: {:?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(10)]
    );

    // The probe reads the uploaded bitmap itself: clear one permitted pair's bit and
    // exactly that pair changes on the device.
    let (src, dst) = (0..stride * stride)
        .map(|b| (b / stride, b % stride))
        .find(|&(s, d)| host(s, d))
        .expect("a permitted pair");
    let bit = src * stride + dst;
    let mut flipped = words.clone();
    flipped[bit / 32] &= !(1 << (bit % 32));
    let changed: Vec<usize> = device_decisions(&dev, &params, &flipped, side)
        .iter()
        .zip(&device)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(changed, [src * side as usize + dst]);

    // With enforcement off the function permits everything (the flag is honoured).
    let mut off = params.clone();
    off[8] = 0;
    let all = device_decisions(&dev, &off, &words, 4);
    assert!(all.iter().all(|&w| w == 1));

    drop(handles);
    runtime.shutdown().expect("shutdown");
}
