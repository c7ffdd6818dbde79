//! The `isomax` command: errors on bad input, the metrics command, info.
use std::process::Command;

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

fn temp(name: &str, content: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("isomax-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn metrics_command_prints_and_writes_json() {
    let a = temp("in.txt", "0.9\n0.8\n# comment\n0.7\n");
    let b = temp("out.txt", "0.1\n0.75\n");
    let j = std::env::temp_dir().join(format!("isomax-cli-{}-m.json", std::process::id()));
    let (ok, out, err) = isomax(&[
        "metrics",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("AUROC"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    // P(in > out) = (3 + 2 + 0... ) : pairs in>out: 0.9>both, 0.8>both, 0.7>0.1 only -> 5/6
    assert!(
        (v["auroc"].as_f64().unwrap() - 500.0 / 6.0).abs() < 1e-6,
        "{v}"
    );
    for k in ["tnr_at_tpr95", "auroc", "dtacc", "auin", "auout"] {
        assert!(v[k].is_number(), "{k}");
    }
}

#[test]
fn metrics_command_names_file_and_line_of_bad_scores() {
    let a = temp("bad.txt", "0.5\nabc\n");
    let b = temp("ok.txt", "0.1\n");
    let (ok, _, err) = isomax(&["metrics", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.txt:2") && err.contains("abc"), "{err}");
    let e = temp("empty.txt", "\n");
    let (ok, _, err) = isomax(&["metrics", e.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(
        !ok && err.contains("empty.txt") && err.contains("no scores"),
        "{err}"
    );
    let n = temp("nan.txt", "NaN\n");
    let (ok, _, err) = isomax(&["metrics", n.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(!ok && err.contains("nan.txt:1"), "{err}");
}

#[test]
fn train_reports_missing_and_malformed_data() {
    let (ok, _, err) = isomax(&[
        "train",
        "--train",
        "idx:/nonexistent/train-images-idx3-ubyte.gz",
        "--out",
        "/tmp/x",
    ]);
    assert!(!ok && err.contains("/nonexistent"), "{err}");
    let junk = temp("junk-images-idx3-ubyte", "not an idx file at all");
    let (ok, _, err) = isomax(&[
        "train",
        "--train",
        &format!("idx:{}", junk.display()),
        "--out",
        "/tmp/x",
    ]);
    assert!(!ok && err.contains("junk-images-idx3-ubyte"), "{err}");
    let (ok, _, err) = isomax(&["train", "--train", "foo:bar", "--out", "/tmp/x"]);
    assert!(!ok && err.contains("foo"), "{err}");
}

#[test]
fn bad_flags_and_unknown_models_are_rejected() {
    let (ok, _, err) = isomax(&["train", "--no-such-flag"]);
    assert!(!ok && err.contains("--no-such-flag"), "{err}");
    let (ok, _, err) = isomax(&[
        "eval",
        "--checkpoint",
        "/nonexistent.safetensors",
        "--test",
        "x",
    ]);
    assert!(!ok && err.contains("/nonexistent.safetensors"), "{err}");
    let not_ck = temp("fake.safetensors", "hello");
    let (ok, _, err) = isomax(&["score", "--checkpoint", not_ck.to_str().unwrap(), "x.png"]);
    assert!(!ok && err.contains("fake.safetensors"), "{err}");
    let train = format!(
        "idx:{}/assets/mnist/train-images-idx3-ubyte.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::env::temp_dir().join(format!("isomax-cli-{}-bad", std::process::id()));
    let base = ["train", "--train", &train, "--limit", "64", "--epochs", "4"];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        isomax(&args)
    };
    let (ok, _, err) = run(&["--milestones", "0,2"]);
    assert!(!ok && err.contains("milestone 0"), "{err}");
    let (ok, _, err) = run(&["--milestones", "2,4"]);
    assert!(!ok && err.contains("milestone 4"), "{err}");
    let (ok, _, err) = run(&["--loss", "softmax", "--entropic-scale", "3"]);
    assert!(!ok && err.contains("entropic scale"), "{err}");
    let (ok, _, err) = run(&["--entropic-scale", "0"]);
    assert!(!ok && err.contains("entropic scale 0"), "{err}");
    let (ok, _, err) = run(&["--augment", "--no-augment"]);
    assert!(!ok && err.contains("--no-augment"), "{err}");
    let (ok, _, err) = run(&["--classes", "3,12"]);
    assert!(!ok && err.contains("class 12"), "{err}");
}

#[test]
fn info_describes_the_adapter() {
    let (ok, out, err) = isomax(&["info"]);
    assert!(ok, "{err}");
    assert!(out.contains("adapter:") && out.contains("limits:"), "{out}");
}

#[test]
fn train_eval_score_round_trip_through_the_command_line() {
    let dir = std::env::temp_dir().join(format!("isomax-cli-{}-run", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
    let mnist_train = format!("idx:{assets}/mnist/train-images-idx3-ubyte.gz");
    let mnist_test = format!("idx:{assets}/mnist/t10k-images-idx3-ubyte.gz");
    let fashion = format!("idx:{assets}/fashion-mnist/t10k-images-idx3-ubyte.gz");
    let out = dir.to_str().unwrap();
    let (ok, stdout, err) = isomax(&[
        "train",
        "--model",
        "resnet-tiny",
        "--loss",
        "isomax",
        "--train",
        &mnist_train,
        "--limit",
        "96",
        "--holdout",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--entropic-scale",
        "3",
        "--out",
        out,
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("ES threshold") && stdout.contains("16 held-out training images"),
        "{stdout}"
    );
    // One epoch trains at the given rate (no milestone at 0), and E_s is stored.
    let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!((line["lr"].as_f64().unwrap() - 0.05).abs() < 1e-9, "{line}");
    let ck = dir.join("checkpoint.safetensors");
    let state = isomax::checkpoint::Checkpoint::load(&ck).unwrap().state;
    assert_eq!(state.entropic_scale, Some(3.0));
    assert!(state.sgd.milestones.is_empty(), "{:?}", state.sgd);
    let (json, csv, png) = (dir.join("e.json"), dir.join("s.csv"), dir.join("f.png"));
    let (ok, stdout, err) = isomax(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--test",
        &mnist_test,
        "--ood",
        &fashion,
        "--limit",
        "40",
        "--json",
        json.to_str().unwrap(),
        "--dump-scores",
        csv.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("accuracy") && stdout.contains("TNR95"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let set = v["ood"].as_object().unwrap().values().next().unwrap();
    assert!(set["es"]["auroc"].is_number(), "{v}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 40 + 40, "header + in + out rows");
    assert!(rows.starts_with("set,distribution,label,prediction,mps,es"));
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    // score: a real image and a missing one -> results for the first, an error for the second.
    let img = dir.join("digit.png");
    image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y * 3) % 256) as u8]))
        .save(&img)
        .unwrap();
    let (ok, stdout, err) = isomax(&[
        "score",
        "--checkpoint",
        ck.to_str().unwrap(),
        img.to_str().unwrap(),
        "/nonexistent.png",
    ]);
    assert!(!ok, "a missing image must fail the command");
    assert!(
        stdout.contains("digit.png: class") && stdout.contains("ES="),
        "{stdout}"
    );
    assert!(err.contains("/nonexistent.png"), "{err}");
}

#[test]
fn seeds_train_separately_and_eval_reports_mean_and_std() {
    let dir = std::env::temp_dir().join(format!("isomax-cli-{}-seeds", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
    let mnist_train = format!("idx:{assets}/mnist/train-images-idx3-ubyte.gz");
    let mnist_test = format!("idx:{assets}/mnist/t10k-images-idx3-ubyte.gz");
    let fashion = format!("idx:{assets}/fashion-mnist/t10k-images-idx3-ubyte.gz");
    let (ok, stdout, err) = isomax(&[
        "train",
        "--loss",
        "softmax",
        "--train",
        &mnist_train,
        "--test",
        &mnist_test,
        "--limit",
        "64",
        "--holdout",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--seeds",
        "1,2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("over 2 seeds"), "{stdout}");
    let cks: Vec<String> = [1, 2]
        .iter()
        .map(|s| {
            let p = dir.join(format!("seed-{s}/checkpoint.safetensors"));
            assert!(p.is_file(), "{}", p.display());
            p.display().to_string()
        })
        .collect();
    let json = dir.join("seeds.json");
    let (ok, stdout, err) = isomax(&[
        "eval",
        "--checkpoint",
        &cks[0],
        &cks[1],
        "--test",
        &mnist_test,
        "--ood",
        &fashion,
        "--limit",
        "40",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("mean ± std over 2 runs"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["runs"], 2);
    let acc = &v["accuracy"];
    let vals: Vec<f64> = acc["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(vals.len(), 2);
    let mean = (vals[0] + vals[1]) / 2.0;
    let std = (vals[0] - vals[1]).abs() / 2f64.sqrt();
    assert!((acc["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{acc}");
    assert!((acc["std"].as_f64().unwrap() - std).abs() < 1e-9, "{acc}");
    let set = v["ood"].as_object().unwrap().values().next().unwrap();
    assert!(set["mps"]["auroc"]["mean"].is_number(), "{v}");
    assert_eq!(set["mps"]["auroc"]["values"].as_array().unwrap().len(), 2);
    // Two seeds give two different models.
    let w = |p: &str| std::fs::read(p).unwrap();
    assert_ne!(w(&cks[0]), w(&cks[1]));
}
