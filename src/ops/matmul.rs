//! Matrix products (with optional transposes) and the linear layer's forward.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSpec, ParamBuilder};
use crate::tensor::Tensor;

const MATMUL_COMMON: &str = include_str!("../../shaders/matmul.wgsl");
const PACK_A: KernelSpec = super::kernel!("matmul", "pack_a", 1, 1);
const PACK_B: KernelSpec = super::kernel!("matmul", "pack_b", 1, 1);

/// The matmul entry point for a `tm × tn` register tile, unrolled into scalars.
/// Generated once per tile shape and kept for the life of the process.
fn matmul_spec(tm: u32, tn: u32) -> KernelSpec {
    thread_local! {
        static SOURCES: std::cell::RefCell<std::collections::HashMap<(u32, u32), &'static str>> =
            Default::default();
    }
    let source = SOURCES.with(|s| {
        *s.borrow_mut().entry((tm, tn)).or_insert_with(|| {
            Box::leak(format!("{MATMUL_COMMON}\n{}", matmul_entry(tm, tn)).into_boxed_str())
        })
    });
    KernelSpec {
        family: "matmul",
        source,
        entry: "matmul",
        reads: 2,
        writes: 1,
    }
}

/// Emit `line` once per i in 0..n (and j in 0..m when m > 0), substituting `{i}` / `{j}`.
fn each(out: &mut String, n: u32, m: u32, line: &str) {
    for i in 0..n {
        for j in 0..m.max(1) {
            out.push_str("    ");
            out.push_str(
                &line
                    .replace("{i}", &i.to_string())
                    .replace("{j}", &j.to_string()),
            );
            out.push('\n');
        }
    }
}

/// Each invocation: `tm` rows × `tn` vec4 column groups (4·tn columns), groups WX apart.
fn matmul_entry(tm: u32, tn: u32) -> String {
    let mut s = String::from(
        "@compute @workgroup_size(WX)\nfn matmul(@builtin(workgroup_id) wid: vec3<u32>, \
         @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {\n",
    );
    let w = &mut s;
    each(w, 1, 0, &format!("let m0 = wid.y * {tm}u;"));
    each(
        w,
        1,
        0,
        &format!("let q0 = (wid.x + wid.z * nwg.x) * WX * {tn}u + lid.x;"),
    );
    each(w, tm, 0, "let r{i} = min(m0 + {i}u, p.m - 1u) * p.tiles;");
    each(w, tn, 0, "let c{i} = min(q0 + {i}u * WX, p.nq - 1u);");
    each(w, tm, tn, "var acc{i}_{j} = vec4<f32>(0.0);");
    each(w, 1, 0, "for (var kv = 0u; kv < p.tiles; kv++) {");
    each(w, tm, 0, "let av{i} = a4[r{i} + kv];");
    for (t, e) in ["x", "y", "z", "w"].iter().enumerate() {
        each(
            w,
            tn,
            0,
            &format!("let b{{i}}_{t} = b4[(kv * 4u + {t}u) * p.nq + c{{i}}];"),
        );
        each(
            w,
            tm,
            tn,
            &format!("acc{{i}}_{{j}} = fma(vec4<f32>(av{{i}}.{e}), b{{j}}_{t}, acc{{i}}_{{j}});"),
        );
    }
    each(w, 1, 0, "}");
    each(
        w,
        tm,
        tn,
        "if (m0 + {i}u < p.m && q0 + {j}u * WX < p.nq) { store4(m0 + {i}u, q0 + {j}u * WX, acc{i}_{j}); }",
    );
    s.push_str("}\n");
    s
}

/// Register-tile shape (rows, strided columns, workgroup width) for this adapter;
/// `ISOMAX_MATMUL_TILE=rows,cols,width` overrides it for tuning.
fn tile(gpu: &Gpu) -> (u32, u32, u32) {
    if let Ok(s) = std::env::var("ISOMAX_MATMUL_TILE") {
        let v: Vec<u32> = s.split(',').filter_map(|x| x.parse().ok()).collect();
        if let [tm, tn, wx] = v[..]
            && (1..=16).contains(&tm)
            && (1..=16).contains(&tn)
            && (1..=256).contains(&wx)
        {
            return (tm, tn, wx);
        }
    }
    if gpu.is_cpu() { (8, 4, 8) } else { (4, 1, 64) }
}

/// Record `c = op(a) · op(b)` where `a` is `[m, k]` (or `[k, m]` when `trans_a`) and `b` is
/// `[k, n]` (or `[n, k]`). `c` must be `[m, n]`.
pub(crate) fn matmul_into(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<()> {
    let gpu = a.gpu();
    let (m, k) = if trans_a {
        (a.shape()[1], a.shape()[0])
    } else {
        (a.shape()[0], a.shape()[1])
    };
    let n = c.shape()[1];
    let (tiles, nq) = (k.div_ceil(4), n.div_ceil(4));
    let params = || {
        ParamBuilder::new()
            .u(m)
            .u(n)
            .u(k)
            .u(tiles)
            .u(trans_a as usize)
            .u(trans_b as usize)
            .u(nq)
    };
    let pa = Tensor::empty(gpu, &[m, tiles * 4])?;
    gpu.dispatch(
        &PACK_A,
        &[],
        params(),
        &[a.binding(), pa.binding()],
        super::groups_1d(m * tiles * 4, 256),
    )?;
    let pb = Tensor::empty(gpu, &[tiles * 4, nq * 4])?;
    gpu.dispatch(
        &PACK_B,
        &[],
        params(),
        &[b.binding(), pb.binding()],
        super::groups_1d(tiles * 4 * nq * 4, 256),
    )?;
    let (tm, tn, wx) = tile(gpu);
    let consts = [("WX", wx as f64)];
    let col_groups = nq.div_ceil((wx * tn) as usize);
    // Column groups beyond 65535 spill into z (the kernel folds it back into x).
    let (gx, gz) = if col_groups <= 65535 {
        (col_groups, 1)
    } else {
        (65535, col_groups.div_ceil(65535))
    };
    let groups = [gx as u32, m.div_ceil(tm as usize) as u32, gz as u32];
    gpu.dispatch(
        &matmul_spec(tm, tn),
        &consts,
        params(),
        &[pa.binding(), pb.binding(), c.binding()],
        groups,
    )
}

fn dims2(t: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    match t.shape() {
        [r, c] => Ok((*r, *c)),
        s => Err(Error::shape(op, format!("expected a matrix, got {s:?}"))),
    }
}

impl Tensor {
    /// Matrix product `self [m, k] · other [k, n]`.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_t(other, false, false)
    }

    /// Matrix product with optional transposes of either side.
    pub fn matmul_t(&self, other: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        let (ar, ac) = dims2(self, "matmul")?;
        let (br, bc) = dims2(other, "matmul")?;
        let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                format!(
                    "{:?}{} · {:?}{}: inner dimensions {k} and {k2} differ",
                    self.shape(),
                    if trans_a { "ᵀ" } else { "" },
                    other.shape(),
                    if trans_b { "ᵀ" } else { "" }
                ),
            ));
        }
        let out = Tensor::empty(self.gpu(), &[m, n])?;
        matmul_into(self, other, &out, trans_a, trans_b)?;
        let (a, b) = (self.clone(), other.clone());
        self.gpu().record(&out, &[self, other], move |g| {
            // C = op(A)·op(B): dA = g·op(B)ᵀ (transposed back if A was), dB likewise.
            let da = if trans_a {
                b.matmul_t(g, trans_b, true)?
            } else {
                g.matmul_t(&b, false, !trans_b)?
            };
            let db = if trans_b {
                g.matmul_t(&a, true, trans_a)?
            } else {
                a.matmul_t(g, !trans_a, false)?
            };
            Ok(vec![Some(da), Some(db)])
        });
        Ok(out)
    }

    /// Linear layer: `self [B, in] · weightᵀ (+ bias)`, weight `[out, in]`, bias `[out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let y = self.matmul_t(weight, false, true)?;
        match bias {
            Some(b) => y.add_along(b, 1),
            None => Ok(y),
        }
    }
}

/// Plain-Rust references for the tests.
pub mod cpu {
    /// `a [m, k] · b [k, n]` in f64 accumulation.
    pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }
    /// Transpose of a `[r, c]` matrix.
    pub fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = a[i * c + j];
            }
        }
        t
    }
}
