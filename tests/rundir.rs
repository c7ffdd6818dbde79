//! Run directories and hyper-parameters: an OUT holding a checkpoint is never overwritten by
//! accident, two runs never share one OUT, a save interrupted before its rename is recovered,
//! bad learning rates are refused, and a non-finite loss stops the run at once.
mod common;
use common::{mnist, train_config as config};
use isomax::checkpoint::{Checkpoint, tmp_path};
use isomax::nn::HeadKind;
use isomax::train::train;

fn err(r: isomax::Result<isomax::train::TrainSummary>) -> String {
    match r {
        Ok(_) => panic!("training should have failed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_out_holding_a_checkpoint_needs_resume_or_force() {
    let gpu = common::gpu();
    let data = mnist("train-images-idx3-ubyte.gz", 96);
    let mut cfg = config(HeadKind::SoftMax, 1, "refuse");
    train(&gpu, &cfg, data.clone(), None).unwrap();
    let ck = cfg.out_dir.join("checkpoint.safetensors");
    let before = std::fs::read(&ck).unwrap();
    let msg = err(train(&gpu, &cfg, data.clone(), None));
    assert_eq!(
        msg,
        format!(
            "{} already holds a checkpoint: pass --resume to continue that run, or --force to \
             overwrite it",
            cfg.out_dir.display()
        )
    );
    assert_eq!(std::fs::read(&ck).unwrap(), before, "checkpoint untouched");
    // --force starts afresh: the log holds only the new run.
    cfg.force = true;
    cfg.seed = 8;
    train(&gpu, &cfg, data, None).unwrap();
    assert_ne!(std::fs::read(&ck).unwrap(), before);
    let log = std::fs::read_to_string(cfg.out_dir.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
}

#[test]
fn a_locked_out_is_refused() {
    let gpu = common::gpu();
    let cfg = config(HeadKind::SoftMax, 1, "locked");
    std::fs::create_dir_all(&cfg.out_dir).unwrap();
    let lock = std::fs::File::create(cfg.out_dir.join(".lock")).unwrap();
    lock.try_lock().unwrap(); // another run holds the directory
    let msg = err(train(
        &gpu,
        &cfg,
        mnist("train-images-idx3-ubyte.gz", 96),
        None,
    ));
    assert_eq!(
        msg,
        format!(
            "{} is in use by another training run (lock {})",
            cfg.out_dir.display(),
            cfg.out_dir.join(".lock").display()
        )
    );
    drop(lock);
    train(&gpu, &cfg, mnist("train-images-idx3-ubyte.gz", 96), None).unwrap();
}

#[test]
fn resume_recovers_a_complete_temporary_checkpoint() {
    let gpu = common::gpu();
    let data = mnist("train-images-idx3-ubyte.gz", 96);
    let mut cfg = config(HeadKind::IsoMax, 1, "recover");
    train(&gpu, &cfg, data.clone(), None).unwrap();
    let ck = cfg.out_dir.join("checkpoint.safetensors");
    let tmp = tmp_path(&ck);
    // A kill between the write and the rename of the first save leaves only the .tmp.
    std::fs::rename(&ck, &tmp).unwrap();
    // Without --resume the directory still counts as holding a checkpoint.
    assert!(err(train(&gpu, &cfg, data.clone(), None)).contains("already holds a checkpoint"));
    // A kill after the log line of epoch 2 but before its save left that line behind.
    let log = cfg.out_dir.join("log.jsonl");
    let first = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &log,
        format!("{first}{{\"epoch\": 2, \"train_loss\": 9}}\n"),
    )
    .unwrap();
    cfg.resume = true;
    cfg.epochs = 2;
    train(&gpu, &cfg, data.clone(), None).unwrap();
    assert!(!tmp.exists());
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], first.trim_end());
    assert!(lines[1].contains("\"epoch\":2") && !lines[1].contains("\"train_loss\": 9"));
    assert_eq!(Checkpoint::load(&ck).unwrap().state.epoch, 2);
    // An incomplete temporary file (killed mid-write) is not taken.
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::remove_file(&ck).unwrap();
    std::fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();
    cfg.epochs = 3;
    let msg = err(train(&gpu, &cfg, data, None));
    assert_eq!(
        msg,
        format!(
            "nothing to resume: {} does not exist ({} is an incomplete save)",
            ck.display(),
            tmp.display()
        )
    );
}

#[test]
fn bad_learning_rates_and_weight_decays_are_refused() {
    let gpu = common::gpu();
    let data = mnist("train-images-idx3-ubyte.gz", 64);
    for (lr, wd, want) in [
        (
            -1.0,
            1e-4,
            "learning rate -1 is invalid: it must be finite and > 0",
        ),
        (
            0.0,
            1e-4,
            "learning rate 0 is invalid: it must be finite and > 0",
        ),
        (
            f32::NAN,
            1e-4,
            "learning rate NaN is invalid: it must be finite and > 0",
        ),
        (
            f32::INFINITY,
            1e-4,
            "learning rate inf is invalid: it must be finite and > 0",
        ),
        (
            0.1,
            -1.0,
            "weight decay -1 is invalid: it must be finite and >= 0",
        ),
        (
            0.1,
            f32::NAN,
            "weight decay NaN is invalid: it must be finite and >= 0",
        ),
    ] {
        let mut cfg = config(HeadKind::SoftMax, 1, "lr");
        cfg.sgd.lr = lr;
        cfg.sgd.weight_decay = wd;
        assert_eq!(err(train(&gpu, &cfg, data.clone(), None)), want);
    }
}

#[test]
fn labels_at_or_above_the_class_count_are_refused() {
    let gpu = common::gpu();
    let mut data = mnist("train-images-idx3-ubyte.gz", 64);
    data.labels[5] = 255;
    let cfg = config(HeadKind::SoftMax, 1, "labels");
    let msg = err(train(&gpu, &cfg, data, None));
    assert!(
        msg.ends_with(
            "label 255 of sample 5 is not below the class count 10 (set the class count with \
             --num-classes)"
        ),
        "{msg}"
    );
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let gpu = common::gpu();
    let data = mnist("train-images-idx3-ubyte.gz", 128);
    let mut cfg = config(HeadKind::SoftMax, 1, "nan");
    train(&gpu, &cfg, data.clone(), None).unwrap();
    let ck = cfg.out_dir.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).unwrap();
    // Resume with an absurd learning rate: the weights blow up within a few steps.
    cfg.resume = true;
    cfg.epochs = 2;
    cfg.sgd.lr = 1e30;
    let msg = err(train(&gpu, &cfg, data, None));
    assert!(
        msg.starts_with("training stopped: the loss is ")
            && msg.contains(" at epoch 2, step ")
            && msg.ends_with(&format!(
                "; {} keeps the last good state (after epoch 1)",
                ck.display()
            )),
        "{msg}"
    );
    let step: usize = msg
        .split(", step ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(step <= 3, "stopped late, at step {step}: {msg}");
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        good,
        "last good checkpoint kept"
    );
    assert_eq!(Checkpoint::load(&ck).unwrap().state.epoch, 1);
}

/// The tensors of a checkpoint file, by name, as raw bytes.
fn tensor_bytes(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn kill_9_during_training_loses_nothing_and_resumes_bit_exactly() {
    let root = std::env::temp_dir().join(format!("isomax-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let train_spec = format!(
        "idx:{}/assets/mnist/train-images-idx3-ubyte.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "train",
            "--model",
            "resnet-tiny",
            "--loss",
            "isomax",
            "--train",
            &train_spec,
            "--limit",
            "112",
            "--holdout",
            "16",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--seed",
            "3",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let run = |out: &std::path::Path, extra: &[&str]| {
        let st = std::process::Command::new(env!("CARGO_BIN_EXE_isomax"))
            .args(args(out))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    let straight = root.join("straight");
    run(&straight, &[]);

    // Kill -9 as soon as the first checkpoint is on disk: in the middle of epoch 2 (or of
    // its save), with no chance to clean up.
    let killed = root.join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isomax"))
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ck = killed.join("checkpoint.safetensors");
    let t0 = std::time::Instant::now();
    while !ck.exists() && t0.elapsed().as_secs() < 300 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        ck.exists() || tmp_path(&ck).exists(),
        "no checkpoint before the kill"
    );
    run(&killed, &["--resume"]);

    let a = tensor_bytes(&straight.join("checkpoint.safetensors"));
    let b = tensor_bytes(&ck);
    assert_eq!(a.len(), b.len());
    for ((na, sa, da), (nb, sb, db)) in a.iter().zip(&b) {
        assert_eq!((na, sa), (nb, sb));
        assert!(da == db, "{na} differs after kill -9 and resume");
    }
    assert_eq!(Checkpoint::load(&ck).unwrap().state.epoch, 3);
    // The log has each epoch once, as the uninterrupted run's.
    let epochs = |dir: &std::path::Path| -> Vec<u64> {
        std::fs::read_to_string(dir.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(epochs(&straight), [1, 2, 3]);
    assert_eq!(epochs(&killed), [1, 2, 3]);
    let _ = std::fs::remove_dir_all(&root);
}
