//! Every WGSL module the engine can build: the fixed shader files of `shaders/`, and the
//! variants expanded from the template families (matmul, conv2d) for every configuration
//! the engine can select on some adapter (each `for_gpu` default, each subgroup width a
//! CPU adapter may report, each channel count a subgroup tile is cut down to), with the
//! pipeline constants the engine sets. `isomax shaders --dump DIR` writes them and
//! `tests/shaders.rs` validates and translates them with naga.

use super::conv::{self, ConvConfig, Kind, Tile};
use super::matmul::{self, MatmulConfig};
use crate::error::{Error, Result};
use crate::gpu::Params;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Subgroup widths for which the subgroup variants are enumerated: those that divide the
/// 32-row subgroup tiles, as the engine requires to pick them (llvmpipe reports 4, 8 or 16
/// lanes depending on the host's SIMD width).
pub const SUBGROUP_WIDTHS: [u32; 4] = [4, 8, 16, 32];

/// One WGSL module as the engine builds it.
#[derive(Debug, Clone)]
pub struct ShaderVariant {
    /// The kernel family (the file in `shaders/`).
    pub family: &'static str,
    /// A unique, file-name-safe name: `family` for a fixed module, else
    /// `family.entry[.constants]`.
    pub name: String,
    /// The WGSL source.
    pub source: String,
    /// The pipeline-overridable constants the engine sets for it (others keep their
    /// defaults).
    pub constants: Vec<(&'static str, f64)>,
    /// Whether it uses subgroup operations (needs a device, or a target language, that
    /// has them).
    pub subgroups: bool,
}

/// The layout of one kernel parameter struct in Rust, for comparison with its WGSL
/// declaration.
#[derive(Debug, Clone)]
pub struct ParamsLayout {
    /// The Rust type.
    pub rust: &'static str,
    /// The WGSL struct it mirrors.
    pub wgsl: &'static str,
    /// The module that declares the WGSL struct ([`ShaderVariant::name`]).
    pub module: &'static str,
    /// `size_of` the Rust struct.
    pub size: usize,
    /// `(field, byte offset, Rust type)` in declaration order.
    pub fields: Vec<(&'static str, usize, &'static str)>,
}

fn layout<P: Params>(module: &'static str) -> ParamsLayout {
    ParamsLayout {
        rust: std::any::type_name::<P>(),
        wgsl: P::WGSL,
        module,
        size: size_of::<P>(),
        fields: P::FIELDS.to_vec(),
    }
}

/// Every kernel parameter struct with the module whose WGSL struct it mirrors.
pub fn params_layouts() -> Vec<ParamsLayout> {
    vec![
        layout::<super::batchnorm::BnParams>("batchnorm"),
        layout::<super::concat::ConcatParams>("concat"),
        layout::<conv::ConvParams>("conv2d"),
        layout::<conv::PackParams>("conv2d"),
        layout::<conv::WidenParams>("conv2d"),
        layout::<super::elementwise::ElementwiseParams>("elementwise"),
        layout::<super::isomax::IsomaxParams>("isomax.wg16"),
        layout::<super::loss::LossParams>("loss"),
        layout::<matmul::MatmulParams>("matmul"),
        layout::<super::pool::PoolParams>("pool"),
        layout::<super::preprocess::PreprocessParams>("preprocess"),
        layout::<super::reduce::ReduceParams>("reduce"),
        layout::<crate::optim::SgdParams>("sgd"),
    ]
}

macro_rules! fixed {
    ($family:literal) => {
        (
            $family,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $family,
                ".wgsl"
            )),
        )
    };
}

/// Every module and variant, sorted by name.
pub fn variants() -> Result<Vec<ShaderVariant>> {
    let mut all = BTreeMap::new();
    let mut add = |family: &'static str,
                   name: String,
                   source: String,
                   constants: Vec<(&'static str, f64)>| {
        let subgroups = source.contains("subgroup");
        all.entry(name.clone()).or_insert(ShaderVariant {
            family,
            name,
            source,
            constants,
            subgroups,
        });
    };
    for (family, source) in [
        fixed!("batchnorm"),
        fixed!("concat"),
        fixed!("elementwise"),
        fixed!("loss"),
        fixed!("pool"),
        fixed!("preprocess"),
        fixed!("reduce"),
        fixed!("sgd"),
    ] {
        add(family, family.into(), source.into(), vec![]);
    }
    let (family, isomax) = fixed!("isomax");
    for wg in super::isomax::WORKGROUPS {
        let name = format!("{family}.wg{wg}");
        add(family, name, isomax.into(), vec![("WG", wg.into())]);
    }
    add("matmul", "matmul".into(), matmul::base_source()?, vec![]);
    add("conv2d", "conv2d".into(), conv::base_source()?, vec![]);

    let widths = || std::iter::once(None).chain(SUBGROUP_WIDTHS.map(Some));
    for (_, cfg) in MatmulConfig::PRESETS {
        for sg in widths() {
            let Ok((tm, tn, wx)) = cfg.shape_with(sg) else {
                continue;
            };
            let (source, entry) = matmul::variant_source(cfg, tm, tn, wx)?;
            let name = format!("matmul.{entry}.wx{wx}");
            add("matmul", name, source, vec![("WX", wx.into())]);
        }
    }
    for (_, cfg) in ConvConfig::PRESETS {
        let mut kinds = vec![
            (Kind::Forward, cfg.forward),
            (Kind::BackwardData, cfg.backward_data),
            (Kind::BackwardWeight, cfg.backward_weight),
            (Kind::BackwardWeightVec4, cfg.backward_weight),
        ];
        if let Some(d) = cfg.direct {
            // Batch norm inside the loads only at stride 1 (as `conv.rs` plans them).
            for (stride, affine) in [(1, false), (1, true), (2, false)] {
                for (k, pad, t, wt) in [
                    (3, 1, d.forward, d.weight),
                    (1, 0, d.pointwise, d.pointwise_weight),
                ] {
                    // At stride 2 only on rows that need no widening (`Direct::worth_it`).
                    for crop in [false, stride == 1] {
                        kinds.push((
                            Kind::Direct {
                                k,
                                pad,
                                stride,
                                crop,
                                affine,
                            },
                            t,
                        ));
                    }
                    kinds.push((
                        Kind::DirectWeight {
                            k,
                            pad,
                            stride,
                            affine,
                        },
                        wt,
                    ));
                }
            }
            for k in [1, 3] {
                for crop in [false, true] {
                    kinds.push((Kind::DirectData { k, crop }, d.strided_data));
                }
            }
        }
        for sg in widths() {
            for &(kind, tile) in &kinds {
                let Ok(t) = tile.resolve_with(sg) else {
                    continue;
                };
                if t.tiled && kind == Kind::BackwardWeightVec4 {
                    continue; // the tiled kernel has no vec4 form
                }
                for rows in conv_rows(t) {
                    let t = t.fit_rows(rows as usize);
                    let (source, entry) = conv::variant_source(kind, t)?;
                    let name = format!("conv2d.{entry}.wx{}", t.workgroup);
                    add("conv2d", name, source, vec![("WX", t.workgroup.into())]);
                }
            }
        }
    }
    Ok(all.into_values().collect())
}

/// The row counts a resolved tile can be cut down to ([`Tile::fit_rows`]).
fn conv_rows(t: Tile) -> Vec<u32> {
    if t.subgroup {
        (1..=t.rows / t.workgroup)
            .map(|g| g * t.workgroup)
            .collect()
    } else {
        vec![t.rows]
    }
}

/// Write every variant's WGSL to `dir/NAME.wgsl` (created if missing), each headed by a
/// comment with the pipeline constants the engine sets; returns the files written.
pub fn dump(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |path: &Path, source: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut written = Vec::new();
    for v in variants()? {
        let path = dir.join(format!("{}.wgsl", v.name));
        let constants: Vec<String> = v
            .constants
            .iter()
            .map(|(k, x)| format!("{k} = {x}"))
            .collect();
        let head = match constants.is_empty() {
            true => String::new(),
            false => format!("// pipeline constants: {}\n", constants.join(", ")),
        };
        std::fs::write(&path, head + &v.source).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
