//! A host wgpu application that embeds isomax.
//!
//! The host owns the device. Its own compute shader draws a batch of images into its own
//! RGBA8 buffer: digit-like strokes (0, 1, 4, 7) and pure colour noise. isomax classifies
//! that buffer in place and writes a result buffer, which the host binds in a second
//! compute pass of its own (counting in-distribution images) and reads back without
//! blocking. Then the same images are written as PNG files and scored through the
//! `isomax score` path (PNG decode, CPU conversion, `eval::score_dataset`); the two must
//! agree (same class, ES within 1e-4).
//!
//! ```sh
//! WGPU_BACKEND=vulkan cargo run --release --example embed [CHECKPOINT]
//! WGPU_BACKEND=gl     cargo run --release --example embed
//! ```
//! Without a checkpoint it trains a tiny IsoMax `resnet-tiny` for one epoch on the shipped
//! MNIST subset, downscaled to 14×14 to stay quick (the model's input is then 14×14).

use isomax::data::Dataset;
use isomax::nn::{Arch, HeadKind};
use isomax::optim::SgdConfig;
use isomax::train::TrainConfig;
use isomax::{Classifier, Gpu, eval};
use std::path::{Path, PathBuf};
use std::time::Instant;

type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const DIGITS: u32 = 8;
const NOISE: u32 = 4;
/// Training images for the built-in model (the shipped subset has 2000; 200 more are held out to calibrate the threshold).
const TRAIN_IMAGES: usize = 1800;

/// The host's image generator: one invocation per texel of `n` images, packed RGBA8.
const GENERATOR: &str = r#"
struct Params { width: u32, height: u32, n: u32, digits: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> texels: array<u32>;

fn hash(v: u32) -> u32 {
    var x = v * 747796405u + 2891336453u;
    x = ((x >> ((x >> 28u) + 4u)) ^ x) * 277803737u;
    return (x >> 22u) ^ x;
}

fn segment(q: vec2<f32>, a: vec2<f32>, b: vec2<f32>) -> f32 {
    let t = clamp(dot(q - a, b - a) / dot(b - a, b - a), 0.0, 1.0);
    return length(q - a - t * (b - a));
}

// Distance from q (unit square, y down) to the strokes of digit d.
fn strokes(q: vec2<f32>, d: u32) -> f32 {
    switch d {
        case 0u: { return abs(length((q - vec2(0.5)) / vec2(0.2, 0.3)) - 1.0) * 0.22; }
        case 1u: { return min(segment(q, vec2(0.52, 0.18), vec2(0.52, 0.82)),
                              segment(q, vec2(0.4, 0.3), vec2(0.52, 0.18))); }
        case 2u: { return min(segment(q, vec2(0.6, 0.18), vec2(0.6, 0.82)),
                              min(segment(q, vec2(0.6, 0.18), vec2(0.28, 0.6)),
                                  segment(q, vec2(0.28, 0.6), vec2(0.74, 0.6)))); }
        default: { return min(segment(q, vec2(0.3, 0.2), vec2(0.72, 0.2)),
                              segment(q, vec2(0.72, 0.2), vec2(0.45, 0.82))); }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let per = p.width * p.height;
    if (i >= per * p.n) { return; }
    let img = i / per;
    let x = (i % per) % p.width;
    let y = (i % per) / p.width;
    if (img >= p.digits) {
        // Pure colour noise.
        let h = hash(i ^ 0x9e3779b9u);
        texels[i] = (h & 0x00ffffffu) | 0xff000000u;
        return;
    }
    // White strokes on black, anti-aliased, shifted a little per image.
    let jitter = vec2(f32(hash(img) % 7u) - 3.0, f32(hash(img + 99u) % 7u) - 3.0) * 0.015;
    let q = (vec2(f32(x), f32(y)) + 0.5) / vec2(f32(p.width), f32(p.height)) - jitter;
    let d = strokes(q, img % 4u);
    let v = u32(round(255.0 * clamp(1.0 - (d - 0.05) / 0.04, 0.0, 1.0)));
    texels[i] = v | (v << 8u) | (v << 16u) | 0xff000000u;
}
"#;

/// The host's consumer of isomax's result rows [class, p, ES, flag]: counts flags.
const CONSUMER: &str = r#"
@group(0) @binding(0) var<storage, read> results: array<f32>;
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&results) / 4u) { return; }
    if (results[i * 4u + 3u] != 0.0) { atomicAdd(&counts[0], 1u); } else { atomicAdd(&counts[1], 1u); }
}
"#;

fn host_device() -> AnyResult<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo)> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host"),
        required_limits: wgpu::Limits::default(),
        ..Default::default()
    }))?;
    Ok((device, queue, adapter.get_info()))
}

/// A tiny IsoMax model on the shipped MNIST subset, one epoch, 14×14.
fn train_tiny(gpu: &Gpu, dir: &Path) -> AnyResult<PathBuf> {
    let spec = concat!(
        "idx:",
        env!("CARGO_MANIFEST_DIR"),
        "/assets/mnist/train-images-idx3-ubyte.gz"
    );
    let mut data = Dataset::open(spec)?;
    data.truncate(TRAIN_IMAGES + 200);
    let data = data.converted(1, 14, 14)?;
    let cfg = TrainConfig {
        arch: Arch::ResnetTiny,
        head: HeadKind::IsoMax,
        epochs: 1,
        batch_size: 32,
        sgd: SgdConfig {
            lr: 0.1,
            milestones: vec![100],
            ..SgdConfig::default()
        },
        seed: 1,
        augment: false,
        holdout: 200,
        entropic_scale: None,
        fpr: None,
        out_dir: dir.to_path_buf(),
        resume: false,
        force: true, // a scratch folder, retrained on every run
        progress: false,
        normalization: None,
    };
    let t0 = Instant::now();
    let s = isomax::train::train(gpu, &cfg, data, None)?;
    println!(
        "trained resnet-tiny/IsoMax, 1 epoch on {TRAIN_IMAGES} MNIST images at 14×14 in {:.1} s (train acc {:.1}%)",
        t0.elapsed().as_secs_f64(),
        100.0 * s.train_accuracy
    );
    Ok(s.checkpoint)
}

fn storage(
    device: &wgpu::Device,
    label: &str,
    size: u64,
    extra: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

/// One compute pass of the host's own: `entries` bound in order at 0, 1, ...
fn host_pass(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    source: &str,
    entries: &[wgpu::BindingResource<'_>],
    invocations: u32,
) {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let entries: Vec<_> = entries
        .iter()
        .enumerate()
        .map(|(i, r)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: r.clone(),
        })
        .collect();
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(invocations.div_ceil(64), 1, 1);
    }
    queue.submit(Some(enc.finish()));
}

/// The host reading its own buffer back (blocking is the host's choice, not isomax's).
fn host_read(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    src: &wgpu::Buffer,
    size: u64,
) -> AnyResult<Vec<u8>> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host staging"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
    queue.submit(Some(enc.finish()));
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let v = staging.get_mapped_range(..)?.to_vec();
    staging.unmap();
    Ok(v)
}

fn main() -> AnyResult<()> {
    let (device, queue, info) = host_device()?;
    println!("host device: {} ({:?})", info.name, info.backend);
    let gpu = Gpu::from_device(device.clone(), queue.clone())?;
    let tmp = std::env::temp_dir().join(format!("isomax-embed-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let checkpoint = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => train_tiny(&gpu, &tmp.join("model"))?,
    };
    let classifier = Classifier::load(&gpu, &checkpoint)?;
    let [c, h, w] = classifier.input_shape();
    println!(
        "classifier: {} input {c}×{h}×{w}, {} classes, ES threshold {:?}",
        checkpoint.display(),
        classifier.num_classes(),
        classifier.threshold()
    );

    // 1. The host draws its images with its own shader into its own buffer.
    let n = DIGITS + NOISE;
    let texels = n * (w * h) as u32;
    let image_bytes = u64::from(texels) * 4;
    let images = storage(
        &device,
        "host images",
        image_bytes,
        wgpu::BufferUsages::COPY_SRC,
    );
    let params = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host params"),
        size: 16,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(
        &params,
        0,
        bytemuck::cast_slice(&[w as u32, h as u32, n, DIGITS]),
    );
    host_pass(
        &device,
        &queue,
        GENERATOR,
        &[params.as_entire_binding(), images.as_entire_binding()],
        texels,
    );

    // 2. isomax classifies the buffer in place; the results stay on the GPU.
    let t0 = Instant::now();
    let out = classifier.classify_rgba8(&images, 0, n as usize, w, h)?;

    // 3. The host binds the result buffer in a pass of its own.
    let counts = storage(
        &device,
        "host counts",
        8,
        wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    );
    queue.write_buffer(&counts, 0, &[0u8; 8]);
    let results = wgpu::BufferBinding {
        buffer: out.results.buffer(),
        offset: out.results.offset(),
        size: wgpu::BufferSize::new(out.results.byte_size()),
    };
    host_pass(
        &device,
        &queue,
        CONSUMER,
        &[
            wgpu::BindingResource::Buffer(results),
            counts.as_entire_binding(),
        ],
        n,
    );

    // 4. Read the per-image results without blocking, as a render loop would each frame.
    let mut pending = out.read_async();
    let mut frames = 0u32;
    let gpu_results = loop {
        if let Some(r) = pending.try_take() {
            break r?;
        }
        frames += 1;
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    println!(
        "results ready after {frames} polls ({:.0} ms)",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let c = host_read(&device, &queue, &counts, 8)?;
    let (inside, outside) = (
        u32::from_le_bytes(c[0..4].try_into()?),
        u32::from_le_bytes(c[4..8].try_into()?),
    );
    println!(
        "host shader over isomax's result buffer: {inside} in-distribution, {outside} out-of-distribution"
    );

    // 5. The same images as PNG files, scored through the `isomax score` path.
    let bytes = host_read(&device, &queue, &images, image_bytes)?;
    let per = 4 * w * h;
    println!(
        "{:<28} {:>5} {:>7} {:>10} {:>6}   {:>5} {:>10}",
        "image", "class", "p", "ES", "in/out", "CLI", "CLI ES"
    );
    let (mut disagreements, mut max_diff) = (0, 0.0f32);
    for (i, r) in gpu_results.iter().enumerate() {
        let kind = if (i as u32) < DIGITS {
            ["zero", "one", "four", "seven"][i % 4]
        } else {
            "noise"
        };
        let path = tmp.join(format!("{i:02}-{kind}.png"));
        image::RgbaImage::from_raw(w as u32, h as u32, bytes[i * per..(i + 1) * per].to_vec())
            .ok_or("image size")?
            .save(&path)?;
        let d =
            isomax::data::folder::from_files(&path.display().to_string(), &[(path.clone(), 0)], 1)?;
        let cli = eval::score_dataset(&gpu, classifier.model(), &d, 1)?.scores[0];
        let diff = (cli.es - r.es).abs();
        max_diff = max_diff.max(diff);
        let agree = cli.prediction == r.class && diff <= 1e-4;
        disagreements += usize::from(!agree);
        println!(
            "{:<28} {:>5} {:>7.4} {:>10.5} {:>6}   {:>5} {:>10.5}{}",
            path.file_name().and_then(|f| f.to_str()).unwrap_or("?"),
            r.class,
            r.probability,
            r.es,
            if r.in_distribution { "in" } else { "OUT" },
            cli.prediction,
            cli.es,
            if agree { "" } else { "   DISAGREE" }
        );
    }
    println!("PNGs in {}", tmp.display());
    if disagreements > 0 {
        return Err(format!(
            "{disagreements} of {n} images disagree between the GPU buffer and the CLI path"
        )
        .into());
    }
    println!(
        "the GPU-buffer path and the CLI path agree on all {n} images (max |ΔES| = {max_diff:.2e})"
    );
    Ok(())
}
