//! Regression tests for hostile inputs and faults through the command line and the public API:
//! each ends in one clear message naming the file (or the value) at fault, never in a panic,
//! an abort, a hang or a silent overwrite. The parsers' own cases live next to them
//! (src/data/*.rs, src/ood/metrics.rs); tests/fuzz.rs throws mutated inputs at all of them.
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the command; returns (success, stdout, stderr).
fn isomax(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_isomax"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A fresh directory for one test.
fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("isomax-malformed-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The command failed and its last stderr line is exactly `error: {want}`.
#[track_caller]
fn fails_with(args: &[&str], want: &str) {
    let (ok, _, err) = isomax(args);
    assert!(!ok, "should fail: {args:?}");
    let last = err.lines().last().unwrap_or("");
    assert_eq!(last, format!("error: {want}"), "stderr:\n{err}");
}

fn mnist(file: &str) -> String {
    format!("idx:{}/assets/mnist/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x803, count, rows, cols] {
        b.extend_from_slice(&u32::to_be_bytes(v));
    }
    b.extend_from_slice(pixels);
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x801, labels.len() as u32] {
        b.extend_from_slice(&u32::to_be_bytes(v));
    }
    b.extend_from_slice(labels);
    b
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn idx_with_zero_rows_names_the_file() {
    let d = dir("idx-zero");
    let images = d.join("train-images-idx3-ubyte");
    std::fs::write(&images, idx_images(3, 0, 28, &[])).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[1, 2, 3])).unwrap();
    fails_with(
        &[
            "train",
            "--train",
            &format!("idx:{}", s(&images)),
            "--out",
            s(&d.join("o")),
        ],
        &format!(
            "{}: image size 0x28 in the header (rows and columns must be in 1..=8192)",
            images.display()
        ),
    );
}

#[test]
fn gzip_bomb_stops_at_the_size_the_header_announces() {
    let d = dir("bomb");
    let images = d.join("train-images-idx3-ubyte.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&idx_images(2, 2, 2, &[0; 8])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        e.write_all(&zeros).unwrap(); // 256 MiB of zeros after the announced 8 bytes
    }
    std::fs::write(&images, e.finish().unwrap()).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[1, 2])).unwrap();
    fails_with(
        &[
            "train",
            "--train",
            &format!("idx:{}", s(&images)),
            "--out",
            s(&d.join("o")),
        ],
        &format!(
            "{}: more data than the header announces (unexpected bytes after the data)",
            images.display()
        ),
    );
}

#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_not_read() {
    let d = dir("dev");
    fails_with(
        &[
            "train",
            "--train",
            "idx:/dev/zero",
            "--out",
            s(&d.join("o")),
        ],
        "/dev/zero: not a regular file (devices, FIFOs and sockets cannot be read as data)",
    );
    let ok = d.join("ok.txt");
    std::fs::write(&ok, "0.5\n").unwrap();
    fails_with(
        &["metrics", "/dev/zero", s(&ok)],
        "/dev/zero: not a regular file (devices, FIFOs and sockets cannot be read as scores)",
    );
    fails_with(
        &[
            "eval",
            "--checkpoint",
            "/dev/zero",
            "--test",
            &mnist("t10k-images-idx3-ubyte.gz"),
        ],
        "checkpoint /dev/zero: not a regular file (devices, FIFOs and sockets cannot be read)",
    );
    let fifo = d.join("scores.fifo");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|st| st.success())
    {
        // Opening it would block until a writer comes: the command must return at once.
        fails_with(
            &["metrics", s(&fifo), s(&ok)],
            &format!(
                "{}: not a regular file (devices, FIFOs and sockets cannot be read as scores)",
                fifo.display()
            ),
        );
    }
}

#[test]
fn labels_at_or_above_the_class_count_do_not_grow_the_model() {
    let d = dir("labels");
    let images = d.join("train-images-idx3-ubyte");
    std::fs::write(&images, idx_images(3, 2, 2, &[7; 12])).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_labels(&[1, 255, 0])).unwrap();
    let spec = format!("idx:{}", s(&images));
    fails_with(
        &["train", "--train", &spec, "--out", s(&d.join("o"))],
        &format!(
            "{}: label 255 of sample 1 is not below the class count 10 (set the class count \
             with --num-classes)",
            images.display()
        ),
    );
}

#[test]
fn bad_learning_rate_and_weight_decay_are_refused() {
    let d = dir("lr");
    let train = mnist("train-images-idx3-ubyte.gz");
    let out = d.join("o");
    for (flag, want) in [
        (
            "--lr=-1",
            "learning rate -1 is invalid: it must be finite and > 0",
        ),
        (
            "--lr=NaN",
            "learning rate NaN is invalid: it must be finite and > 0",
        ),
        (
            "--lr=inf",
            "learning rate inf is invalid: it must be finite and > 0",
        ),
        (
            "--weight-decay=-0.1",
            "weight decay -0.1 is invalid: it must be finite and >= 0",
        ),
    ] {
        fails_with(
            &[
                "train",
                "--train",
                &train,
                "--limit",
                "64",
                "--out",
                s(&out),
                flag,
            ],
            want,
        );
    }
    assert!(!out.join("checkpoint.safetensors").exists());
}

#[test]
fn a_finished_run_is_not_overwritten_without_resume_or_force() {
    let d = dir("finished");
    let out = d.join("run");
    std::fs::create_dir_all(&out).unwrap();
    let ck = out.join("checkpoint.safetensors");
    std::fs::write(&ck, b"a trained model").unwrap();
    let train = mnist("train-images-idx3-ubyte.gz");
    fails_with(
        &[
            "train",
            "--train",
            &train,
            "--limit",
            "64",
            "--out",
            s(&out),
        ],
        &format!(
            "{} already holds a checkpoint: pass --resume to continue that run, or --force to \
             overwrite it",
            out.display()
        ),
    );
    assert_eq!(std::fs::read(&ck).unwrap(), b"a trained model");
    // --resume and --force together make no sense.
    let (ok, _, err) = isomax(&[
        "train",
        "--train",
        &train,
        "--out",
        s(&out),
        "--resume",
        "--force",
    ]);
    assert!(
        !ok && err.contains("--force") && err.contains("--resume"),
        "{err}"
    );
}

/// Writes a checkpoint whose config has `field` set to `value` and returns its path.
fn checkpoint_with(d: &Path, name: &str, field: &str, value: serde_json::Value) -> PathBuf {
    let mut config = common::config_json();
    config[field] = value;
    let p = d.join(name);
    let bytes =
        common::checkpoint_bytes(&config.to_string(), &common::state_json().to_string(), &[]);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn checkpoint_configs_are_checked_before_anything_is_built() {
    let d = dir("config");
    let test = mnist("t10k-images-idx3-ubyte.gz");
    let cases = [
        (
            "in_channels",
            serde_json::json!(2),
            "2 channels (images must have 1 (gray) or 3 (RGB))",
        ),
        (
            "mean",
            serde_json::json!([]),
            "normalization has 0 means and 1 stds for 1 channels",
        ),
        (
            "std",
            serde_json::json!([0.0]),
            "normalization std of channel 0 is 0 (must be finite and > 0)",
        ),
        (
            "height",
            serde_json::json!(30000),
            "image size 30000x12 (height and width must be in 1..=8192)",
        ),
        (
            "num_classes",
            serde_json::json!(0),
            "0 classes (must be in 1..=1048576)",
        ),
    ];
    for (field, value, want) in cases {
        let ck = checkpoint_with(&d, &format!("{field}.safetensors"), field, value);
        let want = format!("checkpoint {}: bad model config: {want}", ck.display());
        fails_with(&["eval", "--checkpoint", s(&ck), "--test", &test], &want);
        fails_with(&["score", "--checkpoint", s(&ck), "x.png"], &want);
    }
    // 30000 x 30000 images: refused by the size check, no 45 GB allocation, no abort.
    let mut config = common::config_json();
    config["height"] = 30000.into();
    config["width"] = 30000.into();
    let huge = d.join("huge.safetensors");
    let bytes =
        common::checkpoint_bytes(&config.to_string(), &common::state_json().to_string(), &[]);
    std::fs::write(&huge, bytes).unwrap();
    fails_with(
        &[
            "eval",
            "--checkpoint",
            s(&huge),
            "--test",
            &test,
            "--ood",
            &test,
        ],
        &format!(
            "checkpoint {}: bad model config: image size 30000x30000 (height and width must be \
             in 1..=8192)",
            huge.display()
        ),
    );
}

#[test]
fn missing_and_misshaped_tensors_name_the_checkpoint() {
    let d = dir("tensors");
    let empty = checkpoint_with(&d, "empty.safetensors", "num_classes", 10.into());
    let (ok, _, err) = isomax(&[
        "eval",
        "--checkpoint",
        s(&empty),
        "--test",
        &mnist("t10k-images-idx3-ubyte.gz"),
    ]);
    let last = err.lines().last().unwrap_or("");
    assert!(
        !ok && last.starts_with(&format!(
            "error: checkpoint {}: no tensor '",
            empty.display()
        )) && last.ends_with("' (the file does not match its own model config)"),
        "{err}"
    );
}

#[test]
fn metrics_compares_scores_in_f64() {
    let d = dir("f64");
    let a = d.join("in.txt");
    let b = d.join("out.txt");
    // As f32 all four are 1.0 (ties: AUROC 0); as f64 they separate perfectly.
    std::fs::write(&a, "1.000000003\n1.000000004\n").unwrap();
    std::fs::write(&b, "1.000000001\n1.000000002\n").unwrap();
    let j = d.join("m.json");
    let (ok, _, err) = isomax(&["metrics", s(&a), s(&b), "--json", s(&j)]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["auroc"].as_f64().unwrap(), 100.0, "{v}");
}

#[test]
fn library_misuse_is_an_error_not_a_panic() {
    use isomax::data::{Dataset, Loader, Normalization};
    use isomax::nn::{HeadKind, Model};
    let gpu = common::gpu();
    // A head whose kind no longer matches its parameters.
    let mut config: isomax::nn::ModelConfig =
        serde_json::from_value(common::config_json()).unwrap();
    config.head = HeadKind::IsoMax;
    let mut model = Model::new(&gpu, config, 1).unwrap();
    model.head.kind = HeadKind::SoftMax;
    let x = isomax::Tensor::zeros(&gpu, &[2, 1, 12, 12]).unwrap();
    let msg = match model.forward(&x, false) {
        Ok(_) => panic!("an invalid head must not run"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        msg,
        "invalid SoftMax head: it has no linear layer (was `kind` changed after Head::new?)"
    );
    // A loader over a set whose normalisation does not fit.
    let data = Dataset {
        name: "set".into(),
        images: vec![0; 8],
        labels: vec![0, 1],
        channels: 1,
        height: 2,
        width: 2,
        num_classes: 2,
    };
    let norm = Normalization {
        mean: vec![],
        std: vec![],
    };
    let msg = Loader::new(&data, 2, false, 0, None, norm, false)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "set: normalization has 0 means and 0 stds for 1 channels"
    );
    assert_eq!(
        isomax::ood::threshold_at_tpr(&[], 0.95)
            .unwrap_err()
            .to_string(),
        "no in-distribution scores"
    );
}
