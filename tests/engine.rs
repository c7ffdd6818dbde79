//! Engine behaviour: a host-owned device and buffer, no allocation in steady state, one
//! submit per training step, async readback, clear errors.
mod common;
use isomax::nn::{Arch, HeadKind, Model, ModelConfig};
use isomax::optim::{Sgd, SgdConfig};
use isomax::{Gpu, Tensor};

#[test]
fn host_device_and_host_buffer_work_with_engine_ops() {
    // The host application creates its own instance, adapter, device and buffer.
    let adapter = common::host_adapter();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let data: Vec<f32> = (0..10).map(|i| i as f32 - 4.5).collect();
    let host_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host data"),
        size: 40,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    queue.write_buffer(&host_buf, 0, bytemuck::cast_slice(&data));
    let gpu = Gpu::from_device(device.clone(), queue.clone()).unwrap();
    let x = Tensor::from_buffer(&gpu, &host_buf, 0, &[2, 5]).unwrap();
    let y = x.relu().unwrap();
    let want: Vec<f32> = data.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(y.to_vec().unwrap(), want);
    // The result is a buffer the host can bind.
    assert!(y.buffer().usage().contains(wgpu::BufferUsages::STORAGE));
    assert_eq!(y.byte_size(), 40);
}

#[test]
fn host_buffers_that_cannot_work_are_rejected_before_gpu_work() {
    let gpu = common::gpu();
    let b = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 64,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let e = Tensor::from_buffer(&gpu, &b, 0, &[4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("STORAGE"), "{e}");
    let b = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let e = Tensor::from_buffer(&gpu, &b, 0, &[5, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("80 bytes"), "{e}");
    let e = Tensor::from_buffer(&gpu, &b, 4, &[1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("alignment"), "{e}");
    // STORAGE alone: usable by kernels, but neither readable nor writable from the host.
    let t = Tensor::from_buffer(&gpu, &b, 0, &[4]).unwrap();
    let e = t.to_vec().unwrap_err().to_string();
    assert!(e.contains("COPY_SRC") && e.contains("read back"), "{e}");
    let mut pending = t.read_async();
    let e = pending.try_take().unwrap().unwrap_err().to_string();
    assert!(e.contains("COPY_SRC"), "{e}");
    let e = t.write(&[1.0; 4]).unwrap_err().to_string();
    assert!(e.contains("COPY_DST") && e.contains("written"), "{e}");
    // Kernels still run on it.
    assert_eq!(t.scale(2.0).unwrap().to_vec().unwrap(), vec![0.0; 4]);
}

#[test]
fn training_steps_allocate_nothing_new_and_submit_once() {
    let gpu = common::gpu();
    let cfg = ModelConfig {
        arch: Arch::ResnetTiny,
        head: HeadKind::IsoMax,
        in_channels: 1,
        height: 9,
        width: 9,
        num_classes: 4,
        mean: vec![0.0],
        std: vec![1.0],
    };
    let model = Model::new(&gpu, cfg, 3).unwrap();
    let mut opt = Sgd::new(model.params(), SgdConfig::default()).unwrap();
    let x = Tensor::randn(&gpu, &[5, 1, 9, 9], 0.0, 1.0, 1).unwrap();
    let y = Tensor::from_slice(&gpu, &[0.0, 1.0, 2.0, 3.0, 1.0], &[5]).unwrap();
    let step = |opt: &mut Sgd| {
        let loss = model
            .forward(&x, true)
            .unwrap()
            .cross_entropy(&y, 10.0)
            .unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 0.01).unwrap();
        loss.read_async().wait().unwrap()[0]
    };
    for _ in 0..2 {
        step(&mut opt);
    }
    let (buffers, submits) = (gpu.memory().buffers_created, gpu.submit_count());
    let loss = step(&mut opt);
    assert!(loss.is_finite());
    assert_eq!(
        gpu.memory().buffers_created,
        buffers,
        "steady-state step created GPU buffers"
    );
    assert_eq!(
        gpu.submit_count() - submits,
        1,
        "a training step is one submit"
    );
}

#[test]
fn engine_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<isomax::Gpu>();
    assert_send_sync::<Tensor>();
    assert_send_sync::<Model>();
    assert_send_sync::<isomax::Classifier>();
    assert_send_sync::<isomax::Gradients>();
}

#[test]
fn dropping_model_graph_and_gradients_returns_every_buffer() {
    // The graph lives in the tensors (results point at inputs, never back): once the
    // model, the loss and the gradients are gone, every pooled buffer is idle again.
    let gpu = common::gpu();
    let base = gpu.memory().in_use;
    {
        let cfg = ModelConfig {
            arch: Arch::DensenetTiny,
            head: HeadKind::IsoMaxPlus,
            in_channels: 1,
            height: 8,
            width: 8,
            num_classes: 3,
            mean: vec![0.0],
            std: vec![1.0],
        };
        let model = Model::new(&gpu, cfg, 3).unwrap();
        let mut opt = Sgd::new(model.params(), SgdConfig::default()).unwrap();
        let x = Tensor::randn(&gpu, &[2, 1, 8, 8], 0.0, 1.0, 1).unwrap();
        let y = Tensor::from_slice(&gpu, &[0.0, 2.0], &[2]).unwrap();
        let loss = model
            .forward(&x, true)
            .unwrap()
            .cross_entropy(&y, 1.0)
            .unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 0.01).unwrap();
        // A forward that is never backpropagated must not leak either.
        let _unused = model.forward(&x, true).unwrap().sum().unwrap();
        // Evaluation builds no graph at all.
        let logits = model.forward(&x, false).unwrap();
        assert!(!logits.requires_grad(), "evaluation recorded a graph");
        gpu.sync().unwrap();
    }
    assert_eq!(gpu.memory().in_use, base, "buffers still held after drop");
}

#[test]
fn async_readback_does_not_block_and_completes() {
    let gpu = common::gpu();
    let t = Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0], &[3])
        .unwrap()
        .scale(2.0)
        .unwrap();
    let mut pending = t.read_async();
    let mut got = None;
    // Poll without blocking, as a host's frame loop would; give a loaded CI machine time.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(60) {
        if let Some(r) = pending.try_take() {
            got = Some(r.unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        &got.expect("readback never completed")[..3],
        &[2.0, 4.0, 6.0]
    );
}

#[test]
fn model_input_shape_mismatch_names_both_shapes() {
    let gpu = common::gpu();
    let cfg = ModelConfig {
        arch: Arch::ResnetTiny,
        head: HeadKind::SoftMax,
        in_channels: 1,
        height: 8,
        width: 8,
        num_classes: 3,
        mean: vec![0.0],
        std: vec![1.0],
    };
    let model = Model::new(&gpu, cfg, 0).unwrap();
    let x = Tensor::zeros(&gpu, &[2, 3, 8, 8]).unwrap();
    let e = model.forward(&x, false).unwrap_err().to_string();
    assert!(
        e.contains("[2, 3, 8, 8]") && e.contains("[B, 1, 8, 8]"),
        "{e}"
    );
}

#[test]
fn paper_models_have_the_published_parameter_counts() {
    let gpu = common::gpu();
    let count = |arch, head| {
        let cfg = ModelConfig {
            arch,
            head,
            in_channels: 3,
            height: 32,
            width: 32,
            num_classes: 10,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        };
        Model::new(&gpu, cfg, 0).unwrap().num_params()
    };
    // ResNet-34 (CIFAR form, linear 512→10): 21,282,122 as counted by PyTorch.
    assert_eq!(count(Arch::Resnet34, HeadKind::SoftMax), 21_282_122);
    // IsoMax replaces the linear layer (5,130) by prototypes (5,120).
    assert_eq!(count(Arch::Resnet34, HeadKind::IsoMax), 21_282_112);
    // DenseNet-BC-100 (k = 12, linear 342→10): 769,162.
    assert_eq!(count(Arch::Densenet100, HeadKind::SoftMax), 769_162);
}

#[test]
fn densenet_block_buffer_path_matches_plain_concatenation() {
    // The memory-efficient DenseNet (each block one taped op over one buffer, prefix batch norm
    // with batch statistics cached per channel, BN-ReLU-conv recomputed in backward, gradients
    // accumulated in place, several layers' batch-norm gradients added in one deferred pass)
    // must compute exactly what concat + BN + ReLU + conv computes: features, every parameter
    // gradient, every running statistic after the step, and the eval-mode features. Under
    // every tuning (the real-GPU split reductions too), with an odd spatial size (no vec4
    // kernels), batch 1, and an even one; DenseNet-tiny (2 layers per block: fewer layers than
    // the deferred pass takes) and 6 layers per block (a full deferred pass, then a partial one).
    use isomax::nn::densenet::DenseNet;
    use isomax::nn::layers::Seeds;
    let gpu = common::gpu();
    for tuning in common::tunings(&gpu) {
        for (hw, batch, layers) in [(8, 3, 2), (9, 1, 2), (5, 2, 2), (9, 1, 6), (6, 2, 6)] {
            isomax::ops::with_tuning(tuning, || {
                let net = DenseNet::new(&gpu, 2, 4, layers, &mut Seeds::new(5)).unwrap();
                densenet_paths_case(&gpu, &net, hw, batch)
            });
        }
    }

    fn densenet_paths_case(gpu: &Gpu, net: &DenseNet, hw: usize, batch: usize) {
        use isomax::nn::{Module, Role};
        let tensors = |role: Role| {
            let mut v = Vec::new();
            net.visit("", &mut |_, t, r| {
                if r == role {
                    v.push(t.clone())
                }
            });
            v
        };
        let initial: Vec<Vec<f32>> = tensors(Role::Buffer)
            .iter()
            .map(|t| t.to_vec().unwrap())
            .collect();
        let params = tensors(Role::Param);
        let x = Tensor::randn(gpu, &[batch, 2, hw, hw], 0.0, 1.0, 9).unwrap();
        let run = |fast: bool| {
            for (t, v) in tensors(Role::Buffer).iter().zip(&initial) {
                t.write(v).unwrap();
            }
            let f = if fast {
                net.forward(&x, true)
            } else {
                net.forward_reference(&x, true)
            }
            .unwrap();
            let w = Tensor::randn(gpu, f.shape(), 0.0, 1.0, 4).unwrap();
            let grads = f.mul(&w).unwrap().sum().unwrap().backward().unwrap();
            let grads: Vec<Vec<f32>> = params
                .iter()
                .filter_map(|p| grads.get(p).cloned())
                .map(|g| g.to_vec().unwrap())
                .collect();
            let running: Vec<Vec<f32>> = tensors(Role::Buffer)
                .iter()
                .map(|t| t.to_vec().unwrap())
                .collect();
            let eval = isomax::no_grad(|| {
                if fast {
                    net.forward(&x, false)
                } else {
                    net.forward_reference(&x, false)
                }
            })
            .unwrap();
            (f.to_vec().unwrap(), grads, running, eval.to_vec().unwrap())
        };
        let (f1, g1, r1, e1) = run(true);
        let (f2, g2, r2, e2) = run(false);
        common::assert_close(&f1, &f2, 1e-4, 1e-5);
        // Every parameter got a gradient on both paths.
        assert_eq!(g1.len(), params.len());
        assert_eq!(g2.len(), params.len());
        for (a, b) in g1.iter().zip(&g2) {
            common::assert_close(a, b, 1e-3, 1e-4);
        }
        assert_eq!(r1.len(), r2.len());
        assert!(r1.len() > 10);
        for ((a, b), init) in r1.iter().zip(&r2).zip(&initial) {
            // The step moved every running statistic, the same way on both paths.
            assert_ne!(a, init);
            common::assert_close(a, b, 1e-5, 1e-6);
        }
        common::assert_close(&e1, &e2, 1e-4, 1e-5);
    }
}

#[test]
fn residual_network_gradient_matches_finite_differences() {
    // Composition check: every op is verified alone; this checks that they chain correctly
    // through a residual network (training-mode BN, skip connection, stride-2 and 1×1
    // convolutions, pooling, linear, scaled cross-entropy). No ReLU, so the function is
    // smooth and central differences are accurate in f32.
    use isomax::ops::batchnorm::BatchNormStats;
    let gpu = common::gpu();
    let p = |shape: &[usize], seed| common::param(&gpu, shape, seed);
    let (w1, w2, w3, wl) = (
        p(&[4, 4, 3, 3], 1),
        p(&[6, 4, 3, 3], 2),
        p(&[6, 4, 1, 1], 3),
        p(&[3, 6], 4),
    );
    let (g1, b1, g2, b2) = (p(&[4], 5), p(&[4], 6), p(&[6], 7), p(&[6], 8));
    let x = common::tensor(&gpu, &[3, 4, 6, 6], 9);
    let y = Tensor::from_slice(&gpu, &[0.0, 2.0, 1.0], &[3]).unwrap();
    let rs: Vec<Tensor> = (0..6).map(|_| Tensor::zeros(&gpu, &[6]).unwrap()).collect();
    let loss_fn = || {
        let st = |k: usize| BatchNormStats {
            running_mean: &rs[k],
            running_var: &rs[k + 1],
            momentum: 0.1,
            eps: 1e-5,
        };
        let (rm4, rv4) = (
            Tensor::zeros(&gpu, &[4]).unwrap(),
            Tensor::ones(&gpu, &[4]).unwrap(),
        );
        let st4 = BatchNormStats {
            running_mean: &rm4,
            running_var: &rv4,
            momentum: 0.1,
            eps: 1e-5,
        };
        let h = x
            .conv2d(&w1, None, 1, 1)
            .unwrap()
            .batch_norm(&g1, &b1, &st4, true)
            .unwrap()
            .add(&x)
            .unwrap();
        let a = h
            .conv2d(&w2, None, 2, 1)
            .unwrap()
            .batch_norm(&g2, &b2, &st(0), true)
            .unwrap();
        let s = h.conv2d(&w3, None, 2, 0).unwrap().add(&a).unwrap();
        s.global_avg_pool()
            .unwrap()
            .linear(&wl, None)
            .unwrap()
            .cross_entropy(&y, 10.0)
            .unwrap()
    };
    let grads = loss_fn().backward().unwrap();
    let mut bad = Vec::new();
    for (name, t) in [
        ("w1", &w1),
        ("w2", &w2),
        ("w3", &w3),
        ("wl", &wl),
        ("g1", &g1),
        ("b1", &b1),
        ("g2", &g2),
    ] {
        let g = grads.get(t).cloned().unwrap().to_vec().unwrap();
        let mut v = t.to_vec().unwrap();
        for k in [0, v.len() / 3, v.len() - 1] {
            let orig = v[k];
            let eps = 1e-2;
            v[k] = orig + eps;
            t.write(&v).unwrap();
            let hi = gpu.no_grad(|| loss_fn().item().unwrap()) as f64;
            v[k] = orig - eps;
            t.write(&v).unwrap();
            let lo = gpu.no_grad(|| loss_fn().item().unwrap()) as f64;
            v[k] = orig;
            t.write(&v).unwrap();
            let num = (hi - lo) / (2.0 * eps as f64);
            if (num - g[k] as f64).abs() > 2e-3 + 0.02 * num.abs() {
                bad.push(format!("{name}[{k}]: backward {} vs numeric {num}", g[k]));
            }
        }
    }
    assert!(bad.is_empty(), "gradient mismatches:\n{}", bad.join("\n"));
}

#[test]
fn shape_errors_are_typed_with_op_expected_and_got() {
    let gpu = common::gpu();
    let a = Tensor::zeros(&gpu, &[2, 3]).unwrap();
    let b = Tensor::zeros(&gpu, &[3, 2]).unwrap();
    match a.add(&b) {
        Err(isomax::Error::Shape { op, expected, got }) => {
            assert_eq!(
                (op, expected.as_str(), got.as_str()),
                ("axpby", "[2, 3]", "[3, 2]")
            );
        }
        other => panic!("expected a typed shape mismatch, got {other:?}"),
    }
    let e = Tensor::from_slice(&gpu, &[1.0; 5], &[2, 3]).unwrap_err();
    assert!(
        matches!(
            e,
            isomax::Error::Shape {
                op: "from_slice",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("expected 6 values"), "{e}");
}
