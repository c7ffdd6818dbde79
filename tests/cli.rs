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
}

#[test]
fn info_describes_the_adapter() {
    let (ok, out, err) = isomax(&["info"]);
    assert!(ok, "{err}");
    assert!(out.contains("adapter:") && out.contains("limits:"), "{out}");
}
