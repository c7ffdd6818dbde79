//! Scratch probe: matmul with A rows shared through subgroupBroadcast.
use std::time::Instant;

fn shader(tm: u32, tn: u32, wx: u32, sg: u32) -> String {
    let mut s = format!(
        "
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
struct P {{ m: u32, nq: u32, kq: u32, pad: u32 }};
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size({wx})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {{
  let m0 = wid.y * {tm}u;
  let q0 = wid.x * {wx}u * {tn}u + lid.x;
"
    );
    let groups = tm / sg;
    for g in 0..groups {
        s += &format!("  let ra{g} = (wid.y * {groups}u + {g}u) * p.kq * {sg}u + sl;\n");
    }
    for j in 0..tn {
        s += &format!(
            "  let c{j} = q0 + {j}u * {wx}u;\n  let pb{j} = wid.x * p.kq * 4u * {wx}u * {tn}u + lid.x + {j}u * {wx}u;\n"
        );
    }
    for i in 0..tm {
        for j in 0..tn {
            s += &format!("  var acc{i}_{j} = vec4<f32>(0.0);\n");
        }
    }
    s += "  for (var kv = 0u; kv < p.kq; kv++) {\n";
    for g in 0..groups {
        s += &format!("    let ag{g} = a4[ra{g} + kv * {sg}u];\n");
    }
    for (t, e) in ["x", "y", "z", "w"].iter().enumerate() {
        for j in 0..tn {
            s += &format!("    let b{j}_{t} = b4[pb{j} + (kv * 4u + {t}u) * {wx}u * {tn}u];\n");
        }
        for i in 0..tm {
            s += &format!(
                "    let a{i}_{t} = subgroupBroadcast(ag{}.{e}, {}u);\n",
                i / sg,
                i % sg
            );
            for j in 0..tn {
                s += &format!("    acc{i}_{j} = fma(vec4<f32>(a{i}_{t}), b{j}_{t}, acc{i}_{j});\n");
            }
        }
    }
    s += "  }\n";
    for i in 0..tm {
        for j in 0..tn {
            s += &format!("  c[(m0 + {i}u) * p.nq + c{j}] = acc{i}_{j};\n");
        }
    }
    s += "}\n";
    s
}

fn main() {
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::VULKAN))
        .into_iter()
        .next()
        .unwrap();
    let (dev, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: wgpu::Features::SUBGROUP,
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (tm, tn, wx) = (args[0], args[1], args[2]);
    let reps: u32 = std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    for n in [512u32, 1024] {
        let (m, k) = (n, n);
        let mk = |len: u32, seed: u32, usage| {
            let data: Vec<f32> = (0..len).map(|i| ((i * seed) % 7) as f32 - 3.0).collect();
            let b = dev.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: len as u64 * 4,
                usage: usage | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            queue.write_buffer(&b, 0, bytemuck::cast_slice(&data));
            (b, data)
        };
        let (a, ad) = mk(m * k, 3, wgpu::BufferUsages::STORAGE);
        let (b, bd) = mk(k * n, 5, wgpu::BufferUsages::STORAGE);
        let c = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (m * n * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let rb = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (m * n * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pbuf = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&pbuf, 0, bytemuck::cast_slice(&[m, n / 4, k / 4, 0u32]));
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(shader(tm, tn, wx, 8).into()),
        });
        let pipe = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: a.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: b.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: c.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: pbuf.as_entire_binding(),
                },
            ],
        });
        let run = |reps: u32| {
            let mut enc = dev.create_command_encoder(&Default::default());
            for _ in 0..reps {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(n / 4 / (wx * tn), m / tm, 1);
            }
            queue.submit(Some(enc.finish()));
            dev.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        };
        run(1);
        let t = Instant::now();
        run(reps);
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "sg matmul {n} tile ({tm},{tn},{wx}): {:.2} GFLOP/s",
            2.0 * (n as f64).powi(3) / s / 1e9
        );
        let mut enc = dev.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&c, 0, &rb, 0, (m * n * 4) as u64);
        queue.submit(Some(enc.finish()));
        rb.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        dev.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let out: Vec<f32> =
            bytemuck::cast_slice(&rb.slice(..).get_mapped_range().unwrap()[..]).to_vec();
        let mut bad = 0;
        for (i, j) in [(m as usize - 3, n as usize - 5), (1, 2), (9, 17), (17, 9)] {
            let want: f32 = (0..k as usize)
                .map(|t| ad[i * k as usize + t] * bd[t * n as usize + j])
                .sum();
            if (out[i * n as usize + j] - want).abs() > 1e-3 {
                bad += 1;
                println!("  c[{i},{j}] = {} want {}", out[i * n as usize + j], want);
            }
        }
        if bad == 0 {
            println!("  check ok");
        }
    }
}
