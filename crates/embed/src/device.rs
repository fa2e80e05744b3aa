//! Resolving the user's [`DeviceSpec`] into a candle device, once, at load time.

use candle_core::Device;
use switchyard_core::DeviceSpec;

use crate::LoadError;

/// Turns `auto | cpu | cuda[:N]` into a device, and logs the choice.
///
/// `auto` takes CUDA device 0 when this build has the `cuda` feature and a GPU answers,
/// otherwise the CPU. An explicit `cuda` in a CPU-only build is an error, never a silent
/// fallback.
pub fn resolve_device(spec: DeviceSpec) -> Result<Device, LoadError> {
    let device = match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Auto => {
            if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                cuda(0)?
            } else {
                Device::Cpu
            }
        }
        DeviceSpec::Cuda(ordinal) => {
            if !cfg!(feature = "cuda") {
                return Err(LoadError::CudaNotCompiled);
            }
            cuda(ordinal)?
        }
    };
    tracing::info!(
        requested = %spec,
        resolved = describe(&device),
        threads = candle_core::utils::get_num_threads(),
        "encoder device"
    );
    Ok(device)
}

fn cuda(ordinal: usize) -> Result<Device, LoadError> {
    Device::new_cuda(ordinal).map_err(|e| LoadError::CudaUnavailable {
        ordinal,
        reason: e.to_string(),
    })
}

fn describe(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_resolves() {
        assert!(matches!(resolve_device(DeviceSpec::Cpu), Ok(Device::Cpu)));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_in_a_cpu_build_is_a_clear_error() {
        let err = resolve_device(DeviceSpec::Cuda(0)).unwrap_err();
        assert!(matches!(err, LoadError::CudaNotCompiled));
        assert!(err.to_string().contains("--features cuda"));
        // `auto` never fails in a CPU build.
        assert!(matches!(resolve_device(DeviceSpec::Auto), Ok(Device::Cpu)));
    }
}
