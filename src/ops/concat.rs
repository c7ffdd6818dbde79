//! Concatenation along channels (DenseNet) and channel slices, each the other's gradient.

use super::{groups_1d, kernel};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, kernel_params, u};
use crate::tensor::Tensor;

const COPY_CHANNELS: KernelSpec = kernel!("concat", "copy_channels", 1, 1);
const COPY_PLANES: KernelSpec = kernel!("concat", "copy_planes", 1, 1);
const COPY_PLANES_VEC4: KernelSpec = kernel!("concat", "copy_planes_vec4", 1, 1);

/// The largest workgroup count of one grid dimension.
const MAX_GROUPS: usize = 65535;

kernel_params! {
    /// `Params` of `shaders/concat.wgsl`.
    struct ConcatParams => "Params" {
        n: u32,
        hw: u32,
        channels: u32,
        src_c: u32,
        src_off: u32,
        dst_c: u32,
        dst_off: u32,
    }
}

/// `[N, C, rest...]` → (N, C, product of rest).
fn nchw(t: &Tensor, op: &'static str) -> Result<(usize, usize, usize)> {
    let s = t.shape();
    if s.len() < 2 {
        return Err(Error::shape(op, format!("expected [N, C, ...], got {s:?}")));
    }
    Ok((s[0], s[1], s[2..].iter().product()))
}

/// Record `dst[:, dst_off..dst_off+channels] = src[:, src_off..src_off+channels]` (not
/// taped: the caller handles gradients).
pub(crate) fn copy(
    src: &Tensor,
    src_off: usize,
    dst: &Tensor,
    dst_off: usize,
    channels: usize,
) -> Result<()> {
    let (n, src_c, hw) = nchw(src, "copy_channels")?;
    let (_, dst_c, _) = nchw(dst, "copy_channels")?;
    let params = ConcatParams {
        n: u(n),
        hw: u(hw),
        channels: u(channels),
        src_c: u(src_c),
        src_off: u(src_off),
        dst_c: u(dst_c),
        dst_off: u(dst_off),
    };
    let per = if hw.is_multiple_of(4) { 4 } else { 1 };
    let x_groups = hw.div_ceil(per * 64);
    let (spec, grid) = if n <= MAX_GROUPS && channels <= MAX_GROUPS && x_groups <= MAX_GROUPS {
        let spec = if per == 4 {
            &COPY_PLANES_VEC4
        } else {
            &COPY_PLANES
        };
        (spec, [x_groups as u32, channels as u32, n as u32])
    } else {
        (&COPY_CHANNELS, groups_1d(n * channels * hw, 256))
    };
    src.gpu()
        .dispatch(spec, &[], &params, &[src.binding(), dst.binding()], grid)
}

impl Tensor {
    /// Concatenate `[N, C_i, H, W]` tensors along channels.
    pub fn concat_channels(parts: &[&Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::shape("concat_channels", "no tensors given"))?;
        let mut total = 0;
        let mut widths = Vec::with_capacity(parts.len());
        for t in parts {
            let (s, f) = (t.shape(), first.shape());
            if s.len() != f.len() || s.len() < 2 || s[0] != f[0] || s[2..] != f[2..] {
                return Err(Error::shape(
                    "concat_channels",
                    format!("{s:?} vs {f:?}: only channels may differ"),
                ));
            }
            widths.push(s[1]);
            total += s[1];
        }
        let mut shape = first.shape().to_vec();
        shape[1] = total;
        let out = Tensor::empty(first.gpu(), &shape)?;
        let mut off = 0;
        for (t, w) in parts.iter().zip(&widths) {
            copy(t, 0, &out, off, *w)?;
            off += w;
        }
        first.gpu().record(&out, parts, move |g| {
            let mut off = 0;
            let mut grads = Vec::with_capacity(widths.len());
            for w in &widths {
                grads.push(Some(g.slice_channels(off, *w)?));
                off += w;
            }
            Ok(grads)
        });
        Ok(out)
    }

    /// Channels `start..start + len` of `[N, C, ...]`.
    pub fn slice_channels(&self, start: usize, len: usize) -> Result<Tensor> {
        let (_, c, _) = nchw(self, "slice_channels")?;
        if len == 0 || start + len > c {
            return Err(Error::shape(
                "slice_channels",
                format!("channels {start}..{} of {:?}", start + len, self.shape()),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape[1] = len;
        let out = Tensor::empty(self.gpu(), &shape)?;
        copy(self, start, &out, 0, len)?;
        let full = self.shape().to_vec();
        self.gpu().record(&out, &[self], move |g| {
            let dx = Tensor::zeros(g.gpu(), &full)?;
            copy(g, 0, &dx, start, len)?;
            Ok(vec![Some(dx)])
        });
        Ok(out)
    }
}
