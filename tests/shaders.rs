//! Every WGSL module and generated kernel variant the engine can build (no adapter needed):
//! the parameter structs' Rust layouts against naga's reflection of the WGSL, and every
//! variant validated by naga and translated by its SPIR-V, MSL, HLSL and GLSL back ends.

use isomax::ops::shaders::{ShaderVariant, params_layouts, variants};
use naga::back;
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};

fn parse(v: &ShaderVariant) -> naga::Module {
    naga::front::wgsl::parse_str(&v.source).unwrap_or_else(|e| {
        panic!(
            "{} ({}): WGSL parse: {}",
            v.family,
            v.name,
            e.emit_to_string(&v.source)
        )
    })
}

fn validate(v: &ShaderVariant, module: &naga::Module, caps: Capabilities) -> ModuleInfo {
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .unwrap_or_else(|e| {
            panic!(
                "{} ({}): naga validation: {}",
                v.family,
                v.name,
                e.emit_to_string(&v.source)
            )
        })
}

#[test]
fn params_structs_match_the_wgsl() {
    let all = variants().expect("variants");
    for l in params_layouts() {
        let v = all
            .iter()
            .find(|v| v.name == l.module)
            .unwrap_or_else(|| panic!("{}: no module {}", l.rust, l.module));
        let module = parse(v);
        let info = validate(v, &module, Capabilities::all());
        let _ = info;
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(l.wgsl))
            .unwrap_or_else(|| panic!("{}: no struct {} in {}", l.rust, l.wgsl, l.module));
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("{}: {} is not a struct", l.rust, l.wgsl);
        };
        let _ = handle;
        let what = format!("{} vs {}::{}", l.rust, l.module, l.wgsl);
        assert_eq!(*span as usize, l.size, "{what}: size");
        assert_eq!(members.len(), l.fields.len(), "{what}: field count");
        for (m, (name, offset, rust_ty)) in members.iter().zip(&l.fields) {
            assert_eq!(m.name.as_deref(), Some(*name), "{what}: field order/names");
            assert_eq!(m.offset as usize, *offset, "{what}: offset of {name}");
            let wgsl_ty = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind, width: 4 }) => match kind {
                    naga::ScalarKind::Uint => "u32",
                    naga::ScalarKind::Sint => "i32",
                    naga::ScalarKind::Float => "f32",
                    k => panic!("{what}: {name}: unexpected scalar {k:?}"),
                },
                ref t => panic!("{what}: {name}: unexpected type {t:?}"),
            };
            assert_eq!(wgsl_ty, *rust_ty, "{what}: type of {name}");
        }
    }
}

/// The module with the engine's pipeline constants applied for one entry point, as wgpu
/// does before handing it to a back end.
fn resolve<'a>(
    v: &ShaderVariant,
    module: &'a naga::Module,
    info: &'a ModuleInfo,
    entry: &str,
) -> (
    std::borrow::Cow<'a, naga::Module>,
    std::borrow::Cow<'a, ModuleInfo>,
) {
    let constants: back::PipelineConstants = v
        .constants
        .iter()
        .map(|(k, x)| (k.to_string(), *x))
        .collect();
    back::pipeline_constants::process_overrides(
        module,
        info,
        Some((naga::ShaderStage::Compute, entry)),
        &constants,
    )
    .unwrap_or_else(|e| {
        panic!(
            "{} ({}) entry {entry}: pipeline constants: {e:?}",
            v.family, v.name
        )
    })
}

#[test]
fn every_variant_validates_and_translates() {
    let all = variants().expect("variants");
    assert!(all.len() > 20, "{} variants", all.len());
    assert!(all.iter().any(|v| v.subgroups) && all.iter().any(|v| !v.subgroups));
    let mut translations = 0;
    for v in &all {
        let module = parse(v);
        let caps = if v.subgroups {
            Capabilities::SUBGROUP
        } else {
            Capabilities::empty()
        };
        let info = validate(v, &module, caps);
        assert!(
            !module.entry_points.is_empty(),
            "{}: no entry point",
            v.name
        );
        for ep in &module.entry_points {
            let entry = ep.name.as_str();
            let fail = |backend: &str, e: String| -> ! {
                panic!(
                    "kernel {} variant {} entry {entry}: {backend}: {e}",
                    v.family, v.name
                )
            };
            let (m, i) = resolve(v, &module, &info, entry);

            let spv = back::spv::Options {
                lang_version: (1, 3),
                ..Default::default()
            };
            let spv_pipeline = back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.into(),
            };
            back::spv::write_vec(&m, &i, &spv, Some(&spv_pipeline))
                .unwrap_or_else(|e| fail("SPIR-V", e.to_string()));

            let msl = back::msl::Options {
                lang_version: (2, 4),
                ..Default::default()
            };
            let msl_pipeline = back::msl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, entry.into())),
                ..Default::default()
            };
            back::msl::write_string(&m, &i, &msl, &msl_pipeline)
                .unwrap_or_else(|e| fail("MSL", e.to_string()));

            // Shader model 6.0 (DX12's wave intrinsics) for subgroups, else the oldest
            // model wgpu's DX12 back end accepts.
            let hlsl = back::hlsl::Options {
                shader_model: if v.subgroups {
                    back::hlsl::ShaderModel::V6_0
                } else {
                    back::hlsl::ShaderModel::V5_1
                },
                ..Default::default()
            };
            let hlsl_pipeline = back::hlsl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, entry.into())),
            };
            let mut out = String::new();
            back::hlsl::Writer::new(&mut out, &hlsl, &hlsl_pipeline)
                .write(&m, &i, None)
                .unwrap_or_else(|e| fail("HLSL", e.to_string()));

            // OpenGL ES 3.1 (compute shaders, no subgroups: what wgpu's GL back end
            // offers) for every variant without subgroups.
            if !v.subgroups {
                let glsl = back::glsl::Options::default();
                let glsl_pipeline = back::glsl::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: entry.into(),
                    multiview: None,
                };
                let mut out = String::new();
                back::glsl::Writer::new(
                    &mut out,
                    &m,
                    &i,
                    &glsl,
                    &glsl_pipeline,
                    naga::proc::BoundsCheckPolicies::default(),
                )
                .and_then(|mut w| w.write())
                .unwrap_or_else(|e| fail("GLSL", e.to_string()));
            }
            translations += 1;
        }
    }
    assert!(translations >= all.len());
}

#[test]
fn dump_writes_every_variant() {
    let dir = std::env::temp_dir().join(format!("isomax-shaders-{}", std::process::id()));
    let written = isomax::ops::shaders::dump(&dir).expect("dump");
    let all = variants().expect("variants");
    assert_eq!(written.len(), all.len());
    for v in &all {
        let text = std::fs::read_to_string(dir.join(format!("{}.wgsl", v.name))).expect("file");
        assert!(text.ends_with(&v.source), "{}", v.name);
        naga::front::wgsl::parse_str(&text).expect("dumped WGSL parses");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "cli")]
#[test]
fn the_command_dumps_the_same_variants() {
    let dir = std::env::temp_dir().join(format!("isomax-shaders-cli-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isomax"))
        .args(["shaders", "--dump", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = variants()
        .unwrap()
        .iter()
        .map(|v| format!("{}.wgsl", v.name))
        .collect();
    want.sort();
    assert_eq!(names, want);
    std::fs::remove_dir_all(&dir).ok();
}
