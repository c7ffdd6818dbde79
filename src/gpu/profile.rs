//! Per-kernel GPU timings from timestamp queries written at the start and end of each
//! compute pass, so optimisation can be chosen from data.

use super::Gpu;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Query slots per profiling window (two per dispatch).
pub(crate) const QUERIES: u32 = 4096;

pub(crate) struct Profiler {
    pub(crate) set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    pub(crate) labels: Vec<&'static str>,
}

/// Time spent per kernel entry point over a profiling window.
#[derive(Debug, Clone, Default)]
pub struct KernelTimes {
    /// entry point → (dispatches, total milliseconds)
    pub kernels: BTreeMap<&'static str, (usize, f64)>,
}

impl KernelTimes {
    /// Sum over all kernels, in milliseconds.
    pub fn total_ms(&self) -> f64 {
        self.kernels.values().map(|v| v.1).sum()
    }
}

impl std::fmt::Display for KernelTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total_ms();
        let mut rows: Vec<_> = self.kernels.iter().collect();
        rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        writeln!(f, "{:<28} {:>6} {:>10} {:>6}", "kernel", "calls", "ms", "%")?;
        for (name, (n, ms)) in rows {
            writeln!(
                f,
                "{name:<28} {n:>6} {ms:>10.2} {:>5.1}%",
                100.0 * ms / total.max(1e-9)
            )?;
        }
        write!(f, "{:<28} {:>6} {:>10.2}", "total", "", total)
    }
}

impl Gpu {
    /// Start recording per-kernel timestamps (needs the adapter's timestamp queries).
    pub fn start_profiling(&self) -> Result<()> {
        if !self
            .device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return Err(Error::Device(format!(
                "{} does not support timestamp queries",
                self.report().name
            )));
        }
        let set = self.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("isomax profiler"),
            ty: wgpu::QueryType::Timestamp,
            count: QUERIES,
        });
        let resolve = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("isomax profiler resolve"),
            size: QUERIES as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        self.flush();
        self.0.recorder.lock().profiler = Some(Profiler {
            set,
            resolve,
            labels: Vec::new(),
        });
        Ok(())
    }

    /// Stop profiling and return the per-kernel times since [`Gpu::start_profiling`]
    /// (dispatches beyond the first 2048 are not timed).
    pub fn stop_profiling(&self) -> Result<KernelTimes> {
        let prof = self.0.recorder.lock().profiler.take();
        let Some(prof) = prof else {
            return Err(Error::Device("profiling was not started".into()));
        };
        let n = prof.labels.len() as u32 * 2;
        if n == 0 {
            return Ok(KernelTimes::default());
        }
        {
            let mut rec = self.0.recorder.lock();
            let enc = rec.encoder(self.device());
            enc.resolve_query_set(&prof.set, 0..n, &prof.resolve, 0);
        }
        let raw = self
            .read_async(super::Binding {
                buffer: &prof.resolve,
                offset: 0,
                size: n as u64 * 8,
            })
            .wait()?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        let period = self.queue().get_timestamp_period() as f64;
        let mut times = KernelTimes::default();
        for (i, label) in prof.labels.iter().enumerate() {
            let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period / 1e6;
            let e = times.kernels.entry(label).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += dt;
        }
        Ok(times)
    }
}
