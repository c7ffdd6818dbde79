//! The line chart of the entropic-scale sweep: a PNG of the expected size, and clear errors.
use isomax::ood::plot::{LinePanel, lines};

#[test]
fn line_chart_writes_a_png_and_refuses_non_positive_x() {
    let dir = std::env::temp_dir().join(format!("isomax-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let panel = |x: &'static [f64]| LinePanel {
        title: "AUROC".into(),
        x_desc: "entropic scale E_s".into(),
        y_desc: "AUROC (%)".into(),
        x,
        series: vec![
            ("ES".into(), vec![(50.0, 5.0), (70.0, 2.0), (90.0, 1.0)]),
            ("MDS".into(), vec![(60.0, 0.0), (60.0, 0.0), (60.0, 0.0)]),
        ],
    };
    static X: [f64; 3] = [1.0, 3.0, 10.0];
    let png = dir.join("lines.png");
    lines(&png, &[panel(&X), panel(&X)]).unwrap();
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (2 * 560, 420));
    // Not a blank image: some pixels are neither white nor grey.
    let rgb = img.to_rgb8();
    assert!(
        rgb.pixels().any(|p| p[2] > 150 && p[0] < 100),
        "no blue series drawn"
    );
    static BAD: [f64; 2] = [0.0, 1.0];
    let err = lines(&dir.join("bad.png"), &[panel(&BAD)]).unwrap_err();
    assert!(err.contains("positive"), "{err}");
}
