//! Channel concatenation and slicing, forward and gradients.
mod common;
use common::*;
use isomax::Tensor;

#[test]
fn concat_then_slice_round_trips_and_gradients_route_back() {
    // Odd planes (scalar kernel), planes of a multiple of 4 (vec4 kernel), batch 1.
    for (n, h, w) in [(3, 5, 7), (1, 4, 6), (2, 2, 2), (1, 1, 1)] {
        round_trip_case(n, h, w);
    }
}

fn round_trip_case(n: usize, h: usize, w: usize) {
    let gpu = gpu();
    let widths = [1, 4, 3];
    let parts: Vec<Tensor> = widths
        .iter()
        .enumerate()
        .map(|(i, c)| param(&gpu, &[n, *c, h, w], i as u64))
        .collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    let cat = Tensor::concat_channels(&refs).unwrap();
    assert_eq!(cat.shape(), &[n, 8, h, w]);
    let host = cat.to_vec().unwrap();
    // CPU reference of the layout: channel block i of sample b is part i's sample b.
    let mut off = 0;
    for (p, c) in parts.iter().zip(widths) {
        let pv = p.to_vec().unwrap();
        for b in 0..n {
            let got = &host[(b * 8 + off) * h * w..(b * 8 + off + c) * h * w];
            assert_eq!(got, &pv[b * c * h * w..(b + 1) * c * h * w]);
        }
        off += c;
    }
    let middle = cat.slice_channels(1, 4).unwrap();
    assert_eq!(middle.to_vec().unwrap(), parts[1].to_vec().unwrap());
    let (loss, wl) = weighted_sum(&middle, 9);
    let grads = loss.backward().unwrap();
    assert_eq!(grads.get(&parts[1]).cloned().unwrap().to_vec().unwrap(), wl);
    assert_eq!(
        grads.get(&parts[0]).cloned().unwrap().to_vec().unwrap(),
        vec![0.0; n * h * w]
    );
    assert_eq!(
        grads.get(&parts[2]).cloned().unwrap().to_vec().unwrap(),
        vec![0.0; n * 3 * h * w]
    );
}

#[test]
fn concat_spatial_mismatch_is_an_error() {
    let gpu = gpu();
    let a = Tensor::zeros(&gpu, &[2, 3, 4, 4]).unwrap();
    let b = Tensor::zeros(&gpu, &[2, 3, 5, 4]).unwrap();
    let e = Tensor::concat_channels(&[&a, &b]).unwrap_err().to_string();
    assert!(
        e.contains("[2, 3, 5, 4]") && e.contains("[2, 3, 4, 4]"),
        "{e}"
    );
}
