//! Ops: one file per kernel family. Each op checks shapes in Rust, records its kernel
//! into the pending encoder, and (when gradients are on) tapes its backward rule.
//! Each file also holds a plain-Rust reference (`cpu`) that the tests compare against.

pub mod batchnorm;
pub mod concat;
pub mod conv;
pub mod elementwise;
pub mod isomax;
pub mod loss;
pub mod matmul;
pub mod pool;
pub mod preprocess;
pub mod reduce;

/// A `KernelSpec` for entry `$entry` of `shaders/$family.wgsl`.
macro_rules! kernel {
    ($family:literal, $entry:literal, $reads:expr, $writes:expr) => {
        $crate::gpu::KernelSpec {
            family: $family,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $family,
                ".wgsl"
            )),
            entry: $entry,
            reads: $reads,
            writes: $writes,
        }
    };
}
pub(crate) use kernel;

pub(crate) use crate::gpu::kernel_groups_1d as groups_1d;

/// Which family of register tilings suits an adapter (the `for_gpu` defaults of
/// [`matmul::MatmulConfig`] and [`conv::ConvConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tuning {
    /// A CPU adapter (llvmpipe) with fixed-width subgroups that divide the 32-row tiles.
    CpuSubgroup,
    /// A CPU adapter without usable subgroups (GL, or subgroups turned off).
    Cpu,
    /// A real GPU.
    Gpu,
}

pub(crate) fn tuning(gpu: &crate::Gpu) -> Tuning {
    match (gpu.is_cpu(), gpu.subgroup_size()) {
        (true, Some(sg)) if 32 % sg == 0 => Tuning::CpuSubgroup,
        (true, _) => Tuning::Cpu,
        (false, _) => Tuning::Gpu,
    }
}

/// Helpers for the kernels whose entry points are generated in Rust (matmul, conv2d): their
/// register tiles are unrolled into scalars, since function-local arrays indexed in loops
/// end up in memory on llvmpipe.
pub(crate) mod codegen {
    /// Emit `line` once per `i` in `0..n` with `{i}` replaced (and once per `j` in `0..m`
    /// with `{j}` replaced, when `m > 0`), indented one level.
    pub(crate) fn each(out: &mut String, n: u32, m: u32, line: &str) {
        for i in 0..n {
            for j in 0..m.max(1) {
                out.push_str("    ");
                out.push_str(
                    &line
                        .replace("{i}", &i.to_string())
                        .replace("{j}", &j.to_string()),
                );
                out.push('\n');
            }
        }
    }

    /// Generated sources and entry names live as long as the process (the pipeline cache
    /// and `KernelSpec` hold `&'static str`); each variant is generated once.
    pub(crate) fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
}
