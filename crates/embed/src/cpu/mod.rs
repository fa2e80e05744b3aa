//! Switchyard's own CPU forward pass for BERT-family encoders: packed-weight GEMM
//! microkernels for AVX-512 and AVX2 (with a portable fallback), chosen at run time,
//! vectorised exact GELU, layer norm and attention, and batches without padding.
//! candle still loads the weights and runs the model on CUDA; these kernels are tested
//! against candle's implementation (`tests/kernels.rs`).

mod bert;
mod gemm;
mod isa;
mod math;

pub(crate) use bert::{CpuBert, Dims, Sequence};
pub use isa::Isa;
