//! Python binding for sealbox: the private extension module `sealbox._native`.
//!
//! The public API is the pure-Python package `sealbox` (in `python/sealbox/`), which re-exports
//! these classes, subclasses the native `Sealbox` to add the asyncio variants and defines the
//! exception classes that the `errors` module raises.

mod audit;
mod client;
mod errors;
mod memlock;
mod metadata;
mod providers;
mod rotation;
mod secret;
mod value;

use pyo3::prelude::*;

/// The smallest useful native call: takes a name and returns a new small object. Benchmarks
/// compare `Sealbox.get` on a cache hit with this call.
#[pyclass(module = "sealbox._native", name = "_Baseline", frozen)]
struct Baseline {
    #[pyo3(get)]
    name_len: usize,
}

/// Returns a small native object, for the benchmark baseline (`benches/python/bench_get.py`).
#[pyfunction]
fn _baseline(name: &str) -> Baseline {
    Baseline {
        name_len: name.len(),
    }
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    providers::register_missing();
    m.add_class::<client::PySealbox>()?;
    m.add_class::<client::OpenedClient>()?;
    m.add_class::<secret::PySecret>()?;
    m.add_class::<secret::SecretBuffer>()?;
    m.add_class::<metadata::PySecretMetadata>()?;
    m.add_class::<metadata::PyVersionInfo>()?;
    m.add_class::<audit::PyAuditReport>()?;
    m.add_class::<rotation::PyRotated>()?;
    m.add_class::<rotation::PyRolledBack>()?;
    m.add_class::<rotation::PyRotationStatus>()?;
    m.add_function(wrap_pyfunction!(audit::audit_verify, m)?)?;
    m.add_class::<Baseline>()?;
    m.add_function(wrap_pyfunction!(_baseline, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
