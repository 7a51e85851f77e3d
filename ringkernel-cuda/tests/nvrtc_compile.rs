//! Every CUDA source in `ringkernel-shaders` (`shaders/cuda/`), behind the generated
//! layout prelude and with its cipher header inlined as the backend does, compiles with
//! NVRTC, without a single warning,
//! to PTX for compute_90 and to a CUBIN for sm_90 (through `nvrtcGetCUBIN`).
//! NVRTC needs no GPU: `scripts/test.sh` installs the `nvidia-cuda-nvrtc-cu12` wheel,
//! puts its library on LD_LIBRARY_PATH and sets RINGKERNEL_REQUIRE_NVRTC=1, under which
//! a missing libnvrtc fails this test; elsewhere the test says why it skips.

use std::ffi::CString;

use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts, result, sys};

/// Compiles `src` for `sm_90` and returns (CUBIN bytes, compiler log).
fn compile_cubin(src: &str, name: &str) -> Result<(Vec<u8>, String), String> {
    let src = CString::new(src).map_err(|e| e.to_string())?;
    let name = CString::new(name).map_err(|e| e.to_string())?;
    let prog = result::create_program(&src, Some(&name)).map_err(|e| format!("{e:?}"))?;
    let options = ["--gpu-architecture=sm_90".to_owned()];
    // SAFETY: `prog` was created above from `src`/`name`, which outlive it, and is
    // destroyed exactly once below; the buffers passed to NVRTC are sized by the
    // sizes NVRTC reported.
    unsafe {
        let compiled = result::compile_program(prog, &options);
        let log = result::get_program_log(prog)
            .map(|l| l.iter().map(|&c| c as u8 as char).collect::<String>())
            .unwrap_or_default();
        let out = match compiled {
            Err(e) => Err(format!("{e:?}\n{log}")),
            Ok(()) => {
                let mut size = 0usize;
                let r = sys::nvrtcGetCUBINSize(prog, &mut size);
                if r != sys::nvrtcResult::NVRTC_SUCCESS {
                    Err(format!("nvrtcGetCUBINSize: {r:?}"))
                } else {
                    let mut cubin = vec![0u8; size];
                    let r = sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast());
                    if r == sys::nvrtcResult::NVRTC_SUCCESS {
                        Ok((cubin, log))
                    } else {
                        Err(format!("nvrtcGetCUBIN: {r:?}"))
                    }
                }
            }
        };
        let _ = result::destroy_program(prog);
        out
    }
}

#[test]
fn every_cuda_source_compiles_to_ptx_and_cubin_without_warnings() {
    // SAFETY: only tries to dlopen the candidate libnvrtc names; no NVRTC call is made.
    let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    if !present {
        assert!(
            std::env::var_os("RINGKERNEL_REQUIRE_NVRTC").is_none(),
            "RINGKERNEL_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)"
        );
        eprintln!(
            "skipping NVRTC compile test: libnvrtc not found; install the nvidia-cuda-nvrtc-cu12 \
             wheel and put its lib directory on LD_LIBRARY_PATH (scripts/test.sh does both)"
        );
        return;
    }
    let mut compiled = 0;
    for (file, text) in ringkernel_shaders::cuda::FILES {
        if !file.ends_with(".cu") {
            continue;
        }
        // As the backend compiles it: the layout prelude generated from the host's
        // declaration in front (the sources define none of its constants), the cipher
        // header inlined.
        let src = format!(
            "{}\n{}",
            ringkernel_cuda::sources::prelude(),
            text.replace(
                "#include \"chacha20_poly1305.cuh\"",
                ringkernel_cuda::sources::CIPHER_CUH
            )
        );
        let opts = CompileOptions {
            arch: Some("compute_90"),
            name: Some(file.to_owned()),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(&src, opts)
            .unwrap_or_else(|e| panic!("{file} does not compile with NVRTC: {e:?}"));
        let text = ptx.to_src();
        assert!(
            text.contains(".target sm_90"),
            "{file}: not compiled for compute_90"
        );
        for kernel in [
            "rk_stream_seal",
            "rk_stream_open",
            "rk_aead_batch",
            "rk_persistent_round",
        ] {
            if src.contains(&format!("void {kernel}(")) {
                assert!(
                    text.contains(&format!(".entry {kernel}")),
                    "{kernel} missing from the PTX"
                );
            }
        }
        let (cubin, log) = compile_cubin(&src, file)
            .unwrap_or_else(|e| panic!("{file} does not compile to a CUBIN: {e}"));
        assert!(
            cubin.starts_with(b"\x7fELF"),
            "{file}: CUBIN is not an ELF image"
        );
        // Warnings are errors: the log of a clean compile is empty.
        assert!(
            !log.to_lowercase().contains("warning"),
            "{file} compiles with warnings:\n{log}"
        );
        compiled += 1;
    }
    assert!(compiled >= 1, "no .cu files in ringkernel-shaders");
}

/// The one program the backend hands NVRTC at run time (every kernel, header inlined)
/// compiles for the oldest and newest architectures we name, with every entry point.
#[test]
fn the_backend_program_compiles_for_several_architectures() {
    // SAFETY: only tries to dlopen the candidate libnvrtc names; no NVRTC call is made.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        assert!(
            std::env::var_os("RINGKERNEL_REQUIRE_NVRTC").is_none(),
            "RINGKERNEL_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
        );
        eprintln!("skipping: libnvrtc not found (see scripts/test.sh)");
        return;
    }
    let program = ringkernel_cuda::sources::program();
    for arch in ["compute_70", "compute_90"] {
        let opts = CompileOptions {
            options: vec![format!("--gpu-architecture={arch}")],
            name: Some("ringkernel.cu".into()),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(&program, opts)
            .unwrap_or_else(|e| panic!("{arch}: {e:?}"))
            .to_src();
        for (_, entries) in ringkernel_cuda::sources::KERNELS {
            for e in entries {
                assert!(ptx.contains(&format!(".entry {e}")), "{arch}: {e} missing");
            }
        }
    }
}
