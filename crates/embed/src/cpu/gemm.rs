//! `y = x·Wᵀ + b (+ residual)` for the encoder's dense layers, with the weights packed once at
//! load into panels of [`Isa::panel_width`] output columns.
//!
//! The work is split into column ranges of whole panels, one per thread; each thread walks
//! groups of panels that fit in L2 and, for each block of [`Isa::tile_rows`] input rows, runs
//! the microkernel on every panel of the group, broadcasting inputs straight from the rows
//! (packing them cost more than it saved). The microkernel keeps the whole output tile in registers over
//! the full k loop and adds the bias (and the residual) on the way out, so each output is
//! written once.

#![expect(
    unsafe_code,
    reason = "SIMD intrinsics, and threads writing disjoint column ranges of one output; \
              every pointer's extent is stated where the tile is built"
)]

use std::ops::Range;

use super::{Isa, math};

/// Bytes of packed weights one thread keeps hot while it sweeps the row blocks.
const L2_BUDGET: usize = 1 << 20;

/// Products with at least this many rows per thread split their rows across threads;
/// smaller ones split their columns.
const ROWS_PER_THREAD_MIN: usize = 96;

/// Below this many multiply-adds a product runs on the calling thread alone.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// 16 floats on a 64-byte boundary: the packed panels are aligned for full-width loads.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Block([f32; 16]);

/// A right-hand matrix `B` (`k × n`) packed into panels of [`Isa::panel_width`] columns:
/// panel `p` holds `k` rows of the panel's columns, zero-padded past `n`, 64-byte aligned.
pub(crate) struct Panels {
    isa: Isa,
    n: usize,
    k: usize,
    data: Vec<Block>,
}

impl std::fmt::Debug for Panels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Panels")
            .field("isa", &self.isa)
            .field("n", &self.n)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

/// A raw output pointer handed to worker threads that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);

// SAFETY: whoever shares one hands each thread a disjoint part (see `Panels::multiply`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(out: &mut [f32]) -> Self {
        Self(out.as_mut_ptr())
    }

    /// The pointer `count` floats further (still to be used within the same output).
    pub(crate) fn offset(self, count: usize) -> Self {
        Self(self.0.wrapping_add(count))
    }

    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// The left-hand side and the output of one product with [`Panels`].
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    /// `rows` rows of at least `k` inputs, `lda` apart.
    pub(crate) a: &'a [f32],
    pub(crate) lda: usize,
    pub(crate) rows: usize,
    /// Added to every output row: at least the padded width of the panels, or none.
    pub(crate) bias: Option<&'a [f32]>,
    /// Added to the output, laid out like it, or none.
    pub(crate) residual: Option<&'a [f32]>,
    /// Exact GELU on each output tile while it is still in L1, instead of a second pass
    /// over the whole output.
    pub(crate) gelu: bool,
    /// The output: `rows` rows `ldc` apart, of which columns `0..n` are written.
    pub(crate) out: SharedOut,
    pub(crate) ldc: usize,
}

/// One microkernel call: `rows × cols` outputs from `rows` input rows and one panel.
struct Tile {
    /// First input row; rows are `lda` apart.
    a: *const f32,
    lda: usize,
    k: usize,
    /// The panel, `k × panel_width`, 64-byte aligned.
    b: *const f32,
    /// `panel_width` bias values (zero-padded past `n`), or null.
    bias: *const f32,
    /// First output of the tile; rows are `ldc` apart.
    c: *mut f32,
    ldc: usize,
    /// Residual laid out like the output, or null.
    residual: *const f32,
    /// Valid output columns of this panel (`<= panel_width`).
    cols: usize,
}

impl Panels {
    /// Packs `B[kk][col] = value(kk, col)` for `kk < k`, `col < n`.
    pub(crate) fn pack(isa: Isa, k: usize, n: usize, value: impl Fn(usize, usize) -> f32) -> Self {
        let nr = isa.panel_width();
        let mut data = vec![Block([0.0; 16]); n.div_ceil(nr) * k * nr / 16];
        for (panel, chunk) in data.chunks_exact_mut(k * nr / 16).enumerate() {
            let cols = nr.min(n - panel * nr);
            for kk in 0..k {
                for j in 0..cols {
                    let at = kk * nr + j;
                    chunk[at / 16].0[at % 16] = value(kk, panel * nr + j);
                }
            }
        }
        Self { isa, n, k, data }
    }

    pub(crate) fn count(&self) -> usize {
        self.n.div_ceil(self.isa.panel_width())
    }

    /// Panels per group that one thread keeps hot in L2 while it sweeps the rows.
    fn group(&self) -> usize {
        (L2_BUDGET / (self.k * self.isa.panel_width() * 4)).max(1)
    }

    /// `out[.., panel columns] = a·B (+ bias) (+ residual)` for every row and the panels in
    /// `panels`.
    ///
    /// # Safety
    /// `op.out` must be valid for writes of `op.rows` rows `op.ldc` apart, each `n` wide,
    /// that no other thread touches while this runs (other threads may write other
    /// panels' columns); `op.ldc >= n`.
    pub(crate) unsafe fn multiply(&self, op: &Operands<'_>, panels: Range<usize>) {
        let (nr, mr) = (self.isa.panel_width(), self.isa.tile_rows());
        let mut start = panels.start;
        while start < panels.end {
            let end = (start + self.group()).min(panels.end);
            for row in (0..op.rows).step_by(mr) {
                let rows = mr.min(op.rows - row);
                for panel in start..end {
                    let col = panel * nr;
                    let first = row * op.ldc + col;
                    // Extents: rows `row..row + rows` of `a` (checked by the slice), the
                    // panel's `k × nr` floats, `nr` bias values from `col` (padded), and
                    // `rows` output and residual rows from `first`, `cols` wide.
                    let tile = Tile {
                        a: op.a[row * op.lda..(row + rows - 1) * op.lda + self.k].as_ptr(),
                        lda: op.lda,
                        k: self.k,
                        b: self.data[panel * self.k * nr / 16..].as_ptr().cast::<f32>(),
                        bias: op
                            .bias
                            .map_or(std::ptr::null(), |b| b[col..col + nr].as_ptr()),
                        // SAFETY: inside the output, by the caller's contract.
                        c: unsafe { op.out.ptr().add(first) },
                        ldc: op.ldc,
                        residual: op.residual.map_or(std::ptr::null(), |r| {
                            r[first..first + (rows - 1) * op.ldc + nr.min(self.n - col)].as_ptr()
                        }),
                        cols: nr.min(self.n - col),
                    };
                    // SAFETY: the extents above.
                    unsafe { self.tile(rows, &tile) };
                    if op.gelu {
                        for i in 0..rows {
                            // SAFETY: row `i` of the tile just written, `cols` wide, which
                            // this call alone touches.
                            let out = unsafe {
                                std::slice::from_raw_parts_mut(tile.c.add(i * op.ldc), tile.cols)
                            };
                            math::gelu_in_place(self.isa, out);
                        }
                    }
                }
            }
            start = end;
        }
    }

    /// # Safety
    /// `t` describes memory as [`Panels::multiply`] builds it, `rows <= tile_rows`.
    unsafe fn tile(&self, rows: usize, t: &Tile) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx512` is only chosen when the CPU reports AVX-512F.
            Isa::Avx512 => unsafe { x86::avx512(rows, t) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2` is only chosen when the CPU reports AVX2 and FMA.
            Isa::Avx2 => unsafe { x86::avx2(rows, t) },
            // SAFETY: forwarded.
            _ => unsafe { portable(rows, t) },
        }
    }
}

/// A dense layer (PyTorch's `Linear`: weight `n × k`, bias `n`) packed for one [`Isa`].
#[derive(Debug)]
pub(crate) struct Linear {
    panels: Panels,
    bias: Vec<f32>,
}

impl Linear {
    /// Packs `weight` (`n × k`, row-major, as stored by PyTorch) and `bias` (`n`).
    pub(crate) fn new(isa: Isa, weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        debug_assert_eq!(weight.len(), n * k);
        let panels = Panels::pack(isa, k, n, |kk, col| weight[col * k + kk]);
        let mut bias = bias.to_vec();
        bias.resize(panels.count() * isa.panel_width(), 0.0);
        Self { panels, bias }
    }

    /// `out = x·Wᵀ + b (+ residual)`, where `x` holds `m` rows of `k` and `out` (and
    /// `residual`) `m` rows of `n`. Large products split their panels across the pool.
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32], residual: Option<&[f32]>) {
        self.forward_with(x, out, residual, false);
    }

    /// `out = GELU(x·Wᵀ + b)`, the activation applied tile by tile.
    pub(crate) fn forward_gelu(&self, x: &[f32], out: &mut [f32]) {
        self.forward_with(x, out, None, true);
    }

    /// [`Self::forward`] (with the GELU when `gelu`) on the calling thread alone.
    pub(crate) fn forward_here(
        &self,
        x: &[f32],
        out: &mut [f32],
        residual: Option<&[f32]>,
        gelu: bool,
    ) {
        let op = self.operands(x, out, residual, gelu);
        // SAFETY: `out` is `m × n` (checked by `operands`), borrowed mutably for this call.
        unsafe { self.panels.multiply(&op, 0..self.panels.count()) };
    }

    /// The operands of `x·Wᵀ + b` into `out`, sizes checked.
    fn operands<'a>(
        &'a self,
        x: &'a [f32],
        out: &mut [f32],
        residual: Option<&'a [f32]>,
        gelu: bool,
    ) -> Operands<'a> {
        let (n, k) = (self.panels.n, self.panels.k);
        let m = x.len() / k;
        assert_eq!(out.len(), m * n, "output size");
        if let Some(r) = residual {
            assert_eq!(r.len(), out.len(), "residual size");
        }
        Operands {
            a: x,
            lda: k,
            rows: m,
            bias: Some(&self.bias),
            residual,
            gelu,
            out: SharedOut::new(out),
            ldc: n,
        }
    }

    fn forward_with(&self, x: &[f32], out: &mut [f32], residual: Option<&[f32]>, gelu: bool) {
        let (n, k) = (self.panels.n, self.panels.k);
        let m = x.len() / k;
        let op = self.operands(x, out, residual, gelu);
        let panels = self.panels.count();
        let threads = rayon::current_num_threads().min(panels).max(1);
        if threads == 1 || m * n * k < PARALLEL_MIN_WORK {
            // SAFETY: `out` is `m × n`, borrowed mutably for this call.
            unsafe { self.panels.multiply(&op, 0..panels) };
            return;
        }
        if m >= threads * ROWS_PER_THREAD_MIN {
            self.split_rows(&op, threads);
        } else {
            self.split_panels(&op, threads);
        }
    }

    /// Each thread takes a contiguous block of rows and all panels: the weights are read by
    /// every thread (from the shared cache), the activations by one.
    fn split_rows(&self, op: &Operands<'_>, threads: usize) {
        let (n, k, mr) = (self.panels.n, self.panels.k, self.panels.isa.tile_rows());
        let blocks = op.rows.div_ceil(mr);
        let part = |t: usize| {
            let (r0, r1) = (
                (blocks * t / threads * mr).min(op.rows),
                (blocks * (t + 1) / threads * mr).min(op.rows),
            );
            Operands {
                a: &op.a[r0 * k..r1 * k],
                rows: r1 - r0,
                residual: op.residual.map(|r| &r[r0 * n..r1 * n]),
                out: op.out.offset(r0 * n),
                ..*op
            }
        };
        let panels = self.panels.count();
        rayon::scope(|s| {
            for t in 1..threads {
                let part = part(t);
                // SAFETY: each thread writes its own rows of `out` (`m × n`, borrowed
                // mutably by the caller until the scope ends).
                s.spawn(move |_| unsafe { self.panels.multiply(&part, 0..panels) });
            }
            // SAFETY: as above.
            unsafe { self.panels.multiply(&part(0), 0..panels) };
        });
    }

    /// Each thread takes a contiguous range of panels and all rows: for few rows, where
    /// streaming the weights is the cost, each thread streams its share once.
    fn split_panels(&self, op: &Operands<'_>, threads: usize) {
        let panels = self.panels.count();
        let share = |t: usize| panels * t / threads..panels * (t + 1) / threads;
        rayon::scope(|s| {
            for t in 1..threads {
                // SAFETY: the threads' panel ranges are disjoint, and the scope ends before
                // the caller's borrow of `out` does.
                s.spawn(move |_| unsafe { self.panels.multiply(op, share(t)) });
            }
            // SAFETY: as above.
            unsafe { self.panels.multiply(op, share(0)) };
        });
    }
}

/// `match rows { 1 => f::<1>(t), …, _ => f::<MAX>(t) }`.
macro_rules! by_rows {
    ($f:ident, $rows:expr, $t:expr, $($r:literal)+; $max:literal) => {
        match $rows {
            $($r => $f::<$r>($t),)+
            _ => $f::<$max>($t),
        }
    };
}

/// # Safety
/// `t` must describe memory as [`Panels::multiply`] states, with `rows <= 4`.
unsafe fn portable(rows: usize, t: &Tile) {
    // SAFETY: forwarded.
    unsafe { by_rows!(portable_tile, rows, t, 1 2 3; 4) }
}

/// # Safety
/// See [`portable`]; `R` is the tile's row count.
unsafe fn portable_tile<const R: usize>(t: &Tile) {
    let mut acc = [[0.0f32; 16]; R];
    for p in 0..t.k {
        // SAFETY: the panel holds `k` aligned groups of 16; `a` holds `R` rows of `k`.
        let b = unsafe { *t.b.add(p * 16).cast::<[f32; 16]>() };
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let a = unsafe { *t.a.add(i * t.lda + p) };
            for j in 0..16 {
                acc[j] += a * b[j];
            }
        }
    }
    // SAFETY: the bias (when present) is padded to 16.
    let bias = (!t.bias.is_null()).then(|| unsafe { *t.bias.cast::<[f32; 16]>() });
    for (i, acc) in acc.iter().enumerate() {
        for (j, &v) in acc.iter().enumerate().take(t.cols) {
            // SAFETY: row `i < R` and column `j < cols` of the tile.
            unsafe {
                let mut v = v + bias.map_or(0.0, |b| b[j]);
                if !t.residual.is_null() {
                    v += *t.residual.add(i * t.ldc + j);
                }
                *t.c.add(i * t.ldc + j) = v;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, __mmask16, _mm256_add_ps, _mm256_broadcast_ss, _mm256_cmpgt_epi32,
        _mm256_fmadd_ps, _mm256_load_ps, _mm256_loadu_ps, _mm256_maskload_ps, _mm256_maskstore_ps,
        _mm256_set1_epi32, _mm256_setr_epi32, _mm256_setzero_ps, _mm512_add_ps, _mm512_fmadd_ps,
        _mm512_load_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };

    use super::Tile;

    /// # Safety
    /// The CPU supports AVX-512F; `t` as in [`super::Panels::multiply`], `rows <= 12`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(rows: usize, t: &Tile) {
        // SAFETY: forwarded.
        unsafe { by_rows!(avx512_tile, rows, t, 1 2 3 4 5 6 7 8 9 10 11; 12) }
    }

    fn lane_mask(cols: usize) -> __mmask16 {
        if cols >= 16 {
            0xFFFF
        } else {
            (1u16 << cols) - 1
        }
    }

    /// # Safety
    /// See [`avx512`]; `R` is the tile's row count.
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_tile<const R: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for p in 0..t.k {
            // SAFETY: the panel's row `p` is 32 floats on a 64-byte boundary; the block
            // holds `R × k` values.
            unsafe {
                let b0 = _mm512_load_ps(t.b.add(p * 32));
                let b1 = _mm512_load_ps(t.b.add(p * 32 + 16));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*t.a.add(i * t.lda + p));
                    acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
                }
            }
        }
        let masks = [lane_mask(t.cols), lane_mask(t.cols.saturating_sub(16))];
        for (i, acc) in acc.iter().enumerate() {
            for (half, &mask) in masks.iter().enumerate() {
                let at = i * t.ldc + half * 16;
                // SAFETY: the bias is padded to 32; masked lanes stay inside `cols`.
                unsafe {
                    let mut v = acc[half];
                    if !t.bias.is_null() {
                        v = _mm512_add_ps(v, _mm512_loadu_ps(t.bias.add(half * 16)));
                    }
                    if !t.residual.is_null() {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, t.residual.add(at)));
                    }
                    _mm512_mask_storeu_ps(t.c.add(at), mask, v);
                }
            }
        }
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA; `t` as in [`super::Panels::multiply`], `rows <= 6`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(rows: usize, t: &Tile) {
        // SAFETY: forwarded.
        unsafe { by_rows!(avx2_tile, rows, t, 1 2 3 4 5; 6) }
    }

    #[target_feature(enable = "avx2")]
    fn lane_masks(cols: usize) -> [__m256i; 2] {
        let limit = _mm256_set1_epi32(i32::try_from(cols).unwrap_or(16));
        [
            _mm256_cmpgt_epi32(limit, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
            _mm256_cmpgt_epi32(limit, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)),
        ]
    }

    /// # Safety
    /// See [`avx2`]; `R` is the tile's row count.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_tile<const R: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for p in 0..t.k {
            // SAFETY: the panel's row `p` is 16 floats on a 64-byte boundary; the block
            // holds `R × k` values.
            unsafe {
                let b0 = _mm256_load_ps(t.b.add(p * 16));
                let b1 = _mm256_load_ps(t.b.add(p * 16 + 8));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_broadcast_ss(&*t.a.add(i * t.lda + p));
                    acc[0] = _mm256_fmadd_ps(a, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(a, b1, acc[1]);
                }
            }
        }
        let masks = lane_masks(t.cols);
        for (i, acc) in acc.iter().enumerate() {
            for (half, &mask) in masks.iter().enumerate() {
                let at = i * t.ldc + half * 8;
                // SAFETY: the bias is padded to 16; masked lanes stay inside `cols`.
                unsafe {
                    let mut v = acc[half];
                    if !t.bias.is_null() {
                        v = _mm256_add_ps(v, _mm256_loadu_ps(t.bias.add(half * 8)));
                    }
                    if !t.residual.is_null() {
                        v = _mm256_add_ps(v, _mm256_maskload_ps(t.residual.add(at), mask));
                    }
                    _mm256_maskstore_ps(t.c.add(at), mask, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        r: Option<&[f32]>,
        n: usize,
        k: usize,
    ) -> Vec<f64> {
        let m = x.len() / k;
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| f64::from(x[i * k + p]) * f64::from(w[j * k + p]))
                    .sum();
                out[i * n + j] = dot + f64::from(b[j]) + r.map_or(0.0, |r| f64::from(r[i * n + j]));
            }
        }
        out
    }

    #[test]
    fn every_isa_matches_a_plain_product_on_ragged_shapes() {
        for isa in Isa::supported() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (2, 7, 3),
                (5, 33, 17),
                (13, 64, 64),
                (40, 100, 96),
                (27, 384, 384),
                (300, 48, 40),
            ] {
                let (x, w, b, r) = (
                    values(m * k, 1),
                    values(n * k, 2),
                    values(n, 3),
                    values(m * n, 4),
                );
                let layer = Linear::new(isa, &w, &b, n, k);
                for residual in [None, Some(r.as_slice())] {
                    let mut out = vec![f32::NAN; m * n];
                    layer.forward(&x, &mut out, residual);
                    let want = reference(&x, &w, &b, residual, n, k);
                    let worst = out
                        .iter()
                        .zip(&want)
                        .map(|(&g, &w)| (f64::from(g) - w).abs())
                        .fold(0.0, f64::max);
                    assert!(
                        worst < 1e-4 * (k as f64).sqrt(),
                        "{isa} m={m} n={n} k={k} residual={}: max error {worst}",
                        residual.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn threads_split_rows_or_columns_without_overlap() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let (n, k) = (200, 128);
        let (w, b) = (values(n * k, 6), values(n, 7));
        for (isa, m) in Isa::supported()
            .into_iter()
            .flat_map(|isa| [(isa, 50), (isa, 400)])
        {
            let x = values(m * k, 5);
            let layer = Linear::new(isa, &w, &b, n, k);
            let mut single = vec![0.0; m * n];
            one.install(|| layer.forward(&x, &mut single, None));
            let mut parallel = vec![f32::NAN; m * n];
            pool.install(|| layer.forward(&x, &mut parallel, None));
            assert_eq!(single, parallel, "{isa}, {m} rows");
        }
    }
}
