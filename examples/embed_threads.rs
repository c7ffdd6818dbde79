//! isomax on a worker thread of a multi-threaded host.
//!
//! The host thread owns the wgpu device and keeps submitting its own work (here: a buffer
//! rewritten and copied every "frame"); a worker thread owns a [`Classifier`] on the same
//! device and classifies the frames the host sends it over a channel. `Gpu`, `Tensor`,
//! `Model` and `Classifier` are `Send + Sync`, so this needs no locking by the host.
//!
//! ```sh
//! cargo run --release --example embed_threads [CHECKPOINT]
//! ```
//! Without a checkpoint the worker uses an untrained IsoMax `resnet-tiny` (28×28 gray), so
//! the verdicts are meaningless but the plumbing is the same.

use isomax::nn::{Arch, HeadKind, Model, ModelConfig};
use isomax::{Classifier, Gpu, Tensor};
use std::path::PathBuf;
use std::sync::mpsc;

fn main() -> isomax::Result<()> {
    let gpu = Gpu::new()?;
    println!("{}", gpu.report());
    let checkpoint = std::env::args().nth(1).map(PathBuf::from);
    let (frames_tx, frames_rx) = mpsc::channel::<Vec<f32>>();
    let (results_tx, results_rx) = mpsc::channel();

    let worker_gpu = gpu.clone();
    let worker = std::thread::spawn(move || -> isomax::Result<()> {
        let classifier = match checkpoint {
            Some(path) => Classifier::load(&worker_gpu, &path)?,
            None => {
                let cfg = ModelConfig {
                    arch: Arch::ResnetTiny,
                    head: HeadKind::IsoMax,
                    in_channels: 1,
                    height: 28,
                    width: 28,
                    num_classes: 10,
                    mean: vec![0.1307],
                    std: vec![0.3081],
                };
                Classifier::new(&worker_gpu, Model::new(&worker_gpu, cfg, 1)?, None)?
            }
        };
        let [c, h, w] = classifier.input_shape();
        for pixels in frames_rx {
            let n = pixels.len() / (c * h * w);
            let x = Tensor::from_slice(classifier.gpu(), &pixels, &[n, c, h, w])?;
            // Recorded and submitted on the shared device; `read` waits for this batch only.
            results_tx.send(classifier.classify(&x)?.read()?).ok();
        }
        Ok(())
    });

    // The host's own per-frame GPU work on the same device and queue.
    let (device, queue) = (gpu.device(), gpu.queue());
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let desc = |label| wgpu::BufferDescriptor {
        label: Some(label),
        size: 1 << 20,
        usage,
        mapped_at_creation: false,
    };
    let (src, dst) = (
        device.create_buffer(&desc("src")),
        device.create_buffer(&desc("dst")),
    );
    for frame in 0..8u32 {
        queue.write_buffer(&src, 0, &frame.to_le_bytes());
        let mut enc = device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&src, 0, &dst, 0, 1 << 20);
        queue.submit(Some(enc.finish()));
        if frame % 2 == 0 {
            // Every other frame, hand four 28×28 images to the worker.
            let pixels = (0..4 * 28 * 28)
                .map(|i| ((i as u32 * 2654435761u32).wrapping_add(frame) >> 24) as f32 / 255.0)
                .collect();
            frames_tx.send(pixels).ok();
        }
        while let Ok(results) = results_rx.try_recv() {
            for r in results {
                println!(
                    "frame {frame}: class {} p={:.3} ES={:.4} in={}",
                    r.class, r.probability, r.es, r.in_distribution
                );
            }
        }
    }
    drop(frames_tx);
    worker.join().expect("worker thread")?;
    for r in results_rx.into_iter().flatten() {
        println!(
            "late: class {} p={:.3} ES={:.4} in={}",
            r.class, r.probability, r.es, r.in_distribution
        );
    }
    Ok(())
}
