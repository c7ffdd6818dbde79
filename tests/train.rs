//! End to end: training on the shipped MNIST subset (downscaled so the test stays fast),
//! every head, checkpoints, exact resume, evaluation JSON.
mod common;
use common::{mnist, train_config as config};
use isomax::checkpoint::Checkpoint;
use isomax::data::Dataset;
use isomax::nn::{HeadKind, Module};
use isomax::train::{load_model, train};
use isomax::{Gpu, eval};

fn weights(gpu: &Gpu, path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let (model, _) = load_model(gpu, path).unwrap();
    let mut v = Vec::new();
    model.visit("", &mut |n, t, _| v.push((n, t.to_vec().unwrap())));
    v
}

#[test]
fn training_lowers_the_loss_and_beats_chance() {
    let gpu = common::gpu();
    let test = mnist("t10k-images-idx3-ubyte.gz", 200);
    let cfg = config(HeadKind::IsoMax, 3, "e2e");
    let s = train(
        &gpu,
        &cfg,
        mnist("train-images-idx3-ubyte.gz", 640),
        Some(&test),
    )
    .unwrap();
    let log = std::fs::read_to_string(cfg.out_dir.join("log.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 3);
    assert!(losses[2] < losses[0] * 0.8, "loss did not fall: {losses:?}");
    assert!(
        s.test_accuracy.unwrap() > 0.5,
        "test accuracy {:?}",
        s.test_accuracy
    );
    assert!(s.es_threshold.is_some());
}

#[test]
fn every_head_trains() {
    let gpu = common::gpu();
    for head in [
        HeadKind::SoftMax,
        HeadKind::IsoMax,
        HeadKind::IsoMaxPlus,
        HeadKind::DisMax,
    ] {
        let cfg = config(head, 2, &format!("{head:?}"));
        train(&gpu, &cfg, mnist("train-images-idx3-ubyte.gz", 320), None).unwrap();
        let log = std::fs::read_to_string(cfg.out_dir.join("log.jsonl")).unwrap();
        let l: Vec<f64> = log
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert!(l[1] < l[0], "{head:?}: loss did not fall: {l:?}");
    }
}

#[test]
fn checkpoint_round_trip_is_bit_exact_and_resume_equals_uninterrupted() {
    let gpu = common::gpu();
    let data = mnist("train-images-idx3-ubyte.gz", 256);
    let straight = config(HeadKind::IsoMax, 2, "straight");
    train(&gpu, &straight, data.clone(), None).unwrap();
    let mut first = config(HeadKind::IsoMax, 1, "resumed");
    train(&gpu, &first, data.clone(), None).unwrap();
    first.epochs = 2;
    first.resume = true;
    train(&gpu, &first, data, None).unwrap();
    let a = weights(&gpu, &straight.out_dir.join("checkpoint.safetensors"));
    let b = weights(&gpu, &first.out_dir.join("checkpoint.safetensors"));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "{na} differs after resume");
    }
    // Round trip: what load_model restored equals the bytes in the file.
    let ck = Checkpoint::load(&straight.out_dir.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.state.epoch, 2);
    assert!(ck.has_optimizer_state());
}

#[test]
fn holdout_zero_trains_on_everything_and_says_where_the_threshold_came_from() {
    let gpu = common::gpu();
    let mut cfg = config(HeadKind::IsoMax, 1, "holdout0");
    cfg.holdout = 0;
    cfg.entropic_scale = Some(3.0);
    let s = train(&gpu, &cfg, mnist("train-images-idx3-ubyte.gz", 96), None).unwrap();
    assert!(s.es_threshold.is_some());
    let from = s.threshold_source.unwrap();
    assert!(from.contains("96 training images"), "{from}");
    let ck = Checkpoint::load(&s.checkpoint).unwrap();
    assert_eq!(ck.state.holdout, 0);
    assert_eq!(ck.state.entropic_scale, Some(3.0));
    assert_eq!(ck.state.threshold_source.as_deref(), Some(from.as_str()));
    // Resuming with another E_s is refused.
    cfg.epochs = 2;
    cfg.resume = true;
    cfg.entropic_scale = None;
    let err = train(&gpu, &cfg, mnist("train-images-idx3-ubyte.gz", 96), None)
        .expect_err("a different entropic scale must be refused")
        .to_string();
    assert!(err.contains("entropic scale 3"), "{err}");
}

#[test]
fn fpr_is_on_for_dismax_by_default_and_refused_for_other_losses() {
    let gpu = common::gpu();
    let data = mnist("train-images-idx3-ubyte.gz", 96);
    let cfg = config(HeadKind::DisMax, 1, "fpr-on");
    let s = train(&gpu, &cfg, data.clone(), None).unwrap();
    assert!(s.final_loss.is_finite());
    assert!(Checkpoint::load(&s.checkpoint).unwrap().state.fpr);
    let mut off = config(HeadKind::DisMax, 1, "fpr-off");
    off.fpr = Some(false);
    let s = train(&gpu, &off, data.clone(), None).unwrap();
    assert!(!Checkpoint::load(&s.checkpoint).unwrap().state.fpr);
    let mut wrong = config(HeadKind::IsoMax, 1, "fpr-wrong");
    wrong.fpr = Some(true);
    let err = train(&gpu, &wrong, data, None)
        .expect_err("FPR is DisMax's")
        .to_string();
    assert!(err.contains("DisMax"), "{err}");
}

#[test]
fn checkpoints_from_before_the_entropic_scale_was_stored_read_as_the_default() {
    let old = r#"{"epoch":1,"epochs":1,"sgd":{"lr":0.1,"momentum":0.9,"nesterov":true,
        "weight_decay":0.0001,"milestones":[],"gamma":0.1},"batch_size":32,"seed":0,
        "es_threshold":-2.3,"train_data":"x","augment":false,"holdout":16}"#;
    let state: isomax::checkpoint::TrainState = serde_json::from_str(old).unwrap();
    assert_eq!(state.entropic_scale, None);
    assert_eq!(state.entropic_scale(HeadKind::IsoMax), 10.0);
    assert_eq!(state.entropic_scale(HeadKind::SoftMax), 1.0);
    assert!(!state.fpr);
}

#[test]
fn eval_report_json_has_the_documented_schema() {
    let gpu = common::gpu();
    let cfg = config(HeadKind::SoftMax, 1, "json");
    let s = train(&gpu, &cfg, mnist("train-images-idx3-ubyte.gz", 256), None).unwrap();
    let (model, _) = load_model(&gpu, &s.checkpoint).unwrap();
    let inside =
        eval::score_dataset(&gpu, &model, &mnist("t10k-images-idx3-ubyte.gz", 100), 64).unwrap();
    let fashion = format!(
        "idx:{}/assets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut f = Dataset::open(&fashion).unwrap();
    f.truncate(100);
    let outside = eval::score_dataset(&gpu, &model, &f, 64).unwrap();
    let rep = eval::report(HeadKind::SoftMax, &inside, &[("fashion".into(), outside)]).unwrap();
    let j = rep.to_json();
    assert!(j["accuracy"].as_f64().unwrap() >= 0.0);
    for score in ["mps", "es"] {
        let m = &j["ood"]["fashion"][score];
        for key in ["tnr_at_tpr95", "auroc", "dtacc", "auin", "auout"] {
            let v = m[key]
                .as_f64()
                .unwrap_or_else(|| panic!("missing {score}.{key}"));
            assert!((0.0..=100.0).contains(&v), "{score}.{key} = {v}");
        }
    }
}
