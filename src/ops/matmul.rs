//! Matrix products (with optional transposes) and the linear layer's forward.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, KernelSpec, ParamBuilder};
use crate::tensor::Tensor;

const MATMUL_COMMON: &str = include_str!("../../shaders/matmul.wgsl");

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
    KernelSpec { family: "matmul", source, entry: "matmul", reads: 2, writes: 1 }
}

fn matmul_entry(tm: u32, tn: u32) -> String {

    use std::fmt::Write;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "@compute @workgroup_size(WX)");
    let _ = writeln!(w, "fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{");
    let _ = writeln!(w, "    let m0 = wid.y * {tm}u;");
    let _ = writeln!(w, "    let n0 = wid.x * WX * {tn}u + lid.x;");
    for i in 0..tm {
        let _ = writeln!(w, "    let r{i} = min(m0 + {i}u, p.m - 1u);");
    }
    for j in 0..tn {
        let _ = writeln!(w, "    let c{j} = min(n0 + {j}u * WX, p.n - 1u);");
    }
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(w, "    var acc{i}_{j} = 0.0;");
        }
    }
    let _ = writeln!(w, "    for (var kk = 0u; kk < p.k; kk++) {{");
    for j in 0..tn {
        let _ = writeln!(w, "        let b{j} = load_b(kk, c{j});");
    }
    for i in 0..tm {
        let _ = writeln!(w, "        let a{i} = load_a(r{i}, kk);");
        for j in 0..tn {
            let _ = writeln!(w, "        acc{i}_{j} = fma(a{i}, b{j}, acc{i}_{j});");
        }
    }
    let _ = writeln!(w, "    }}");
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(w, "    if (m0 + {i}u < p.m && n0 + {j}u * WX < p.n) {{ store(m0 + {i}u, n0 + {j}u * WX, acc{i}_{j}); }}");
        }
    }
    let _ = writeln!(w, "}}");
    s
}

/// Register-tile shape (rows, strided columns, workgroup width) for this adapter.
fn tile(gpu: &Gpu) -> (u32, u32, u32) {
    if let Ok(s) = std::env::var("ISOMAX_MATMUL_TILE") {
        let v: Vec<u32> = s.split(',').filter_map(|x| x.parse().ok()).collect();
        if let [tm, tn, wx] = v[..] {
            return (tm, tn, wx);
        }
    }
    if gpu.is_cpu() { (4, 4, 8) } else { (8, 2, 64) }
}

/// Record `c = op(a) · op(b)` where `a` is `[m, k]` (or `[k, m]` when `trans_a`) and `b` is
/// `[k, n]` (or `[n, k]`). `c` must be `[m, n]`.
pub(crate) fn matmul_into(a: &Tensor, b: &Tensor, c: &Tensor, trans_a: bool, trans_b: bool, accumulate: bool) -> Result<()> {
    let gpu = a.gpu();
    let (m, k) = if trans_a { (a.shape()[1], a.shape()[0]) } else { (a.shape()[0], a.shape()[1]) };
    let n = c.shape()[1];
    let (tm, tn, wx) = tile(gpu);
    let cols_per_group = (wx * tn) as usize;
    let consts = [
        ("WX", wx as f64),
        ("TRANS_A", trans_a as u32 as f64),
        ("TRANS_B", trans_b as u32 as f64),
        ("ACCUMULATE", accumulate as u32 as f64),
    ];
    let groups = [n.div_ceil(cols_per_group) as u32, m.div_ceil(tm as usize) as u32, 1];
    gpu.dispatch(
        &matmul_spec(tm, tn),
        &consts,
        ParamBuilder::new().u(m).u(n).u(k).f(1.0).f(1.0),
        &[a.binding(), b.binding(), c.binding()],
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
        matmul_into(self, other, &out, trans_a, trans_b, false)?;
        let (a, b) = (self.clone(), other.clone());
        self.gpu().record(&out, &[self, other], move |g| {
            // C = op(A)·op(B): dA = g·op(B)ᵀ (transposed back if A was), dB likewise.
            let da = if trans_a { b.matmul_t(g, trans_b, true)? } else { g.matmul_t(&b, false, !trans_b)? };
            let db = if trans_b { g.matmul_t(&a, true, trans_a)? } else { a.matmul_t(g, !trans_a, false)? };
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
                c[i * n + j] = (0..k).map(|t| a[i * k + t] as f64 * b[t * n + j] as f64).sum::<f64>() as f32;
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

