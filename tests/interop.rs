//! Models in and out of PyTorch (`isomax import` / `isomax export`, src/interop.rs): round
//! trips in both namings, an imported PyTorch state scores the parity fixture's batch like
//! PyTorch did, and bad files give errors naming the tensor and the file.
mod common;

use isomax::interop::{self, Naming, StateDict};
use isomax::nn::{Arch, HeadKind, Model, ModelConfig, Module};
use isomax::{Gpu, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

type State = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("isomax-interop-{}-{name}", std::process::id()))
}

/// The PyTorch state after training (the `final.` tensors of a parity fixture), as
/// `state_dict` names → values.
fn pytorch_state(model: &str) -> State {
    StateDict::read(&fixtures().join(format!("{model}.safetensors")))
        .unwrap()
        .tensors
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("final.").map(|k| (k.to_string(), v)))
        .collect()
}

fn write_safetensors(path: &Path, state: &State) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = state
        .iter()
        .map(|(k, (s, v))| (k.clone(), s.clone(), bytemuck::cast_slice(v).to_vec()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

fn model_state(model: &Model) -> State {
    let mut s = BTreeMap::new();
    model.visit("", &mut |n, t, _| {
        s.insert(n, (t.shape().to_vec(), t.to_vec().unwrap()));
    });
    s
}

fn import(gpu: &Gpu, path: &Path, arch: Arch, head: HeadKind) -> isomax::Result<Model> {
    interop::import(gpu, path, arch, head, (14, 14), None)
}

#[test]
fn imported_pytorch_model_scores_like_pytorch() {
    let gpu = common::gpu();
    for (name, arch, head) in [
        (
            "resnet-tiny-isomaxplus",
            Arch::ResnetTiny,
            HeadKind::IsoMaxPlus,
        ),
        (
            "densenet-tiny-softmax",
            Arch::DensenetTiny,
            HeadKind::SoftMax,
        ),
    ] {
        let file = temp(&format!("{name}.safetensors"));
        write_safetensors(&file, &pytorch_state(name));
        let model = import(&gpu, &file, arch, head).unwrap();
        assert_eq!(model.config.in_channels, 1);
        assert_eq!(model.config.num_classes, 10);
        let batches = StateDict::read(&fixtures().join("batches.safetensors")).unwrap();
        let (shape, images) = &batches.tensors["eval_images"];
        let x = Tensor::from_slice(&gpu, images, shape).unwrap();
        let got = gpu
            .no_grad(|| model.forward(&x, false))
            .unwrap()
            .to_vec()
            .unwrap();
        let fixture = StateDict::read(&fixtures().join(format!("{name}.safetensors"))).unwrap();
        common::assert_close(&got, &fixture.tensors["eval.logits"].1, 1e-4, 1e-4);
    }
}

#[test]
fn export_then_import_is_exact_in_both_namings() {
    let gpu = common::gpu();
    for (name, arch, head, naming) in [
        (
            "resnet-tiny-dismax",
            Arch::ResnetTiny,
            HeadKind::DisMax,
            Naming::Reference,
        ),
        (
            "densenet-tiny-isomax",
            Arch::DensenetTiny,
            HeadKind::IsoMax,
            Naming::Official,
        ),
        (
            "densenet-tiny-softmax",
            Arch::DensenetTiny,
            HeadKind::SoftMax,
            Naming::Official,
        ),
    ] {
        let src = temp(&format!("{name}-src.safetensors"));
        write_safetensors(&src, &pytorch_state(name));
        let a = import(&gpu, &src, arch, head).unwrap();
        let out = temp(&format!("{name}-{naming:?}.safetensors"));
        interop::export(&a, &out, naming).unwrap();
        let written = StateDict::read(&out).unwrap();
        assert_eq!(written.naming(), naming);
        if naming == Naming::Official {
            for key in [
                "conv1.weight",
                "block1.layer.1.conv2.weight",
                "trans2.bn1.running_var",
                "bn1.bias",
            ] {
                assert!(written.tensors.contains_key(key), "{name}: no {key}");
            }
            let head_key = match head {
                HeadKind::SoftMax => "classifier.weights",
                _ => "classifier.prototypes",
            };
            assert!(
                written.tensors.contains_key(head_key),
                "{name}: no {head_key}"
            );
        }
        // PyTorch's strict load wants the batch-norm counters: one per batch norm.
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let counters = st
            .names()
            .into_iter()
            .filter(|n| n.ends_with("num_batches_tracked"))
            .count();
        let bns = written
            .tensors
            .keys()
            .filter(|k| k.ends_with("running_mean"))
            .count();
        assert_eq!(counters, bns);
        let b = import(&gpu, &out, arch, head).unwrap();
        assert_eq!(model_state(&a), model_state(&b), "{name} {naming:?}");
    }
}

fn import_error(gpu: &Gpu, state: &State, tag: &str) -> String {
    let file = temp(&format!("bad-{tag}.safetensors"));
    write_safetensors(&file, state);
    let e = import(gpu, &file, Arch::ResnetTiny, HeadKind::IsoMax)
        .err()
        .unwrap_or_else(|| panic!("{tag}: imported"))
        .to_string();
    assert!(
        e.contains(file.to_str().unwrap()),
        "{tag}: no file name in: {e}"
    );
    e
}

#[test]
fn bad_tensors_are_named_with_the_file() {
    let gpu = common::gpu();
    let good = pytorch_state("resnet-tiny-isomax");

    let mut missing = good.clone();
    missing.remove("backbone.block1.bn2.running_var");
    let e = import_error(&gpu, &missing, "missing");
    assert!(
        e.contains("missing tensor 'backbone.block1.bn2.running_var'"),
        "{e}"
    );

    let mut unknown = good.clone();
    unknown.insert(
        "backbone.block9.conv1.weight".into(),
        (vec![2], vec![0.0, 1.0]),
    );
    let e = import_error(&gpu, &unknown, "unknown");
    assert!(
        e.contains("unknown tensor 'backbone.block9.conv1.weight'"),
        "{e}"
    );

    let mut shaped = good.clone();
    shaped.get_mut("backbone.block0.conv2.weight").unwrap().0 = vec![16, 16, 9];
    let e = import_error(&gpu, &shaped, "shape");
    assert!(
        e.contains("'backbone.block0.conv2.weight' has shape [16, 16, 9]")
            && e.contains("[16, 16, 3, 3]"),
        "{e}"
    );

    // A SoftMax file read as an IsoMax model: the head tensors do not match.
    let softmax = pytorch_state("resnet-tiny-softmax");
    let file = temp("softmax-as-isomax.safetensors");
    write_safetensors(&file, &softmax);
    let e = import(&gpu, &file, Arch::ResnetTiny, HeadKind::IsoMax)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("head.prototypes") && e.contains(file.to_str().unwrap()),
        "{e}"
    );

    let e = import(
        &gpu,
        Path::new("/nonexistent/model.safetensors"),
        Arch::ResnetTiny,
        HeadKind::IsoMax,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("/nonexistent/model.safetensors"), "{e}");
}

#[test]
fn cli_import_export_round_trip() {
    let src = temp("cli-src.safetensors");
    write_safetensors(&src, &pytorch_state("densenet-tiny-dismax"));
    let ck = temp("cli-checkpoint.safetensors");
    let out = temp("cli-out.safetensors");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_isomax"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "import",
        "--pytorch",
        src.to_str().unwrap(),
        "--model",
        "densenet-tiny",
        "--loss",
        "dismax",
        "--size",
        "14",
        "--out",
        ck.to_str().unwrap(),
    ]);
    run(&[
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--pytorch",
        out.to_str().unwrap(),
    ]);
    let a = StateDict::read(&src).unwrap().tensors;
    let b = StateDict::read(&out).unwrap().tensors;
    assert_eq!(a, b);
    // The checkpoint is a normal one: its config says what was imported.
    let ck = isomax::checkpoint::Checkpoint::load(&ck).unwrap();
    assert_eq!(
        ck.config,
        ModelConfig {
            arch: Arch::DensenetTiny,
            head: HeadKind::DisMax,
            in_channels: 1,
            height: 14,
            width: 14,
            num_classes: 10,
            mean: vec![0.0],
            std: vec![1.0],
        }
    );
    let o = Command::new(env!("CARGO_BIN_EXE_isomax"))
        .args([
            "import",
            "--pytorch",
            src.to_str().unwrap(),
            "--model",
            "resnet-tiny",
            "--loss",
            "dismax",
            "--out",
            "/tmp/x",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains(src.to_str().unwrap()),
        "{err}"
    );
}
