//! Which SIMD instruction set the CPU kernels use, chosen once at load time.

use std::fmt;

/// The instruction set of Switchyard's own CPU kernels. [`Isa::detect`] picks the widest
/// the CPU runs; a narrower one can be asked for (benchmarks, tests, a CPU whose AVX-512
/// clocks down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust the compiler vectorises for the baseline target (SSE2 on x86-64, NEON on
    /// aarch64): runs anywhere.
    Portable,
    /// x86-64 AVX2 with FMA: 16-float tiles, 6 rows × 16 columns per microkernel step.
    Avx2,
    /// x86-64 AVX-512F: 32-float tiles, 12 rows × 32 columns per microkernel step.
    Avx512,
}

impl Isa {
    /// The widest instruction set this CPU supports.
    #[must_use]
    pub fn detect() -> Self {
        Self::supported()
            .into_iter()
            .max()
            .unwrap_or(Self::Portable)
    }

    /// Every instruction set this CPU can run, narrowest first.
    #[must_use]
    pub fn supported() -> Vec<Self> {
        let mut out = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                out.push(Self::Avx2);
                if is_x86_feature_detected!("avx512f") {
                    out.push(Self::Avx512);
                }
            }
        }
        out
    }

    /// Parses `portable`, `avx2` or `avx512`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" => Some(Self::Portable),
            "avx2" => Some(Self::Avx2),
            "avx512" | "avx-512" => Some(Self::Avx512),
            _ => None,
        }
    }

    /// Output columns per packed weight panel (the microkernel's tile width).
    pub(crate) fn panel_width(self) -> usize {
        match self {
            Self::Avx512 => 32,
            Self::Avx2 | Self::Portable => 16,
        }
    }

    /// Input rows per microkernel call (the tile height).
    pub(crate) fn tile_rows(self) -> usize {
        match self {
            Self::Avx512 => 12,
            Self::Avx2 => 6,
            Self::Portable => 4,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        })
    }
}
