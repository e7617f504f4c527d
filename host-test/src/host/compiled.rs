//! The component as wasmtime runs it: compiled once per build, not once per process.
//!
//! Compiling the 1.4 MB component takes about a second with an optimised Cranelift and tens of
//! seconds of CPU with the test profile's unoptimised one, and every tool run, test process and
//! CLI subprocess (the live tests start several) needs it. So the compiled code is kept beside
//! the `.wasm` as `<name>-<key>.cwasm`, where the key is the SHA-256 of the `.wasm` and
//! wasmtime's own compatibility hash of the engine's settings: a changed component, wasmtime
//! version or setting gets a new file, and wasmtime checks the file's engine again when it
//! loads it (an incompatible one is compiled afresh). Files are written to a temporary name
//! and renamed, so a reader never sees half of one; older keys are removed when a new one is
//! written.
//!
//! Loading compiled code trusts the file (`Component::deserialize_file` is `unsafe`): it is
//! this build's own artifact under `target/`, written only here.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The component at `wasm`, compiled for `engine`: from the cache when it holds this build's
/// code, else compiled and cached (a cache that cannot be written is only a slower start).
///
/// Errors: the `.wasm` cannot be read or does not compile.
pub fn component(engine: &Engine, wasm: &str, use_cache: bool) -> Result<Component> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading component {wasm}"))?;
    if !use_cache {
        return compile(engine, wasm, &bytes);
    }
    let cached = cache_path(engine, Path::new(wasm), &bytes);
    if cached.exists() {
        // SAFETY: the file is this build's own compiled code (see the module docs); wasmtime
        // refuses one compiled by another version or with other settings.
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &cached) } {
            return Ok(c);
        }
    }
    let component = compile(engine, wasm, &bytes)?;
    if let Ok(code) = component.serialize() {
        let _ = store(&cached, &code);
    }
    Ok(component)
}

fn compile(engine: &Engine, wasm: &str, bytes: &[u8]) -> Result<Component> {
    Component::new(engine, bytes).map_err(|e| anyhow::anyhow!("loading component {wasm}: {e:?}"))
}

/// `<dir>/<stem>-<key>.cwasm` for this `.wasm` and engine.
fn cache_path(engine: &Engine, wasm: &Path, bytes: &[u8]) -> PathBuf {
    let mut settings = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let digest = Sha256::digest(bytes);
    let key: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let stem = wasm.file_stem().unwrap_or_default().to_string_lossy();
    wasm.with_file_name(format!("{stem}-{key}-{:016x}.cwasm", settings.finish()))
}

/// Writes `code` to `path` through a temporary file, then removes the other keys of the stem.
fn store(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // A temporary name of this writer's own (process and a count within it: threads of one
    // process compile at once when a test asks for two runtimes before the first is stored).
    static WRITERS: AtomicU64 = AtomicU64::new(0);
    let writer = WRITERS.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}-{writer}.tmp", std::process::id()));
    std::fs::write(&tmp, code)?;
    std::fs::rename(&tmp, path)?;
    let stem = name.split('-').next().unwrap_or_default().to_string();
    if let Some(dir) = path.parent() {
        for entry in std::fs::read_dir(dir)?.flatten() {
            let other = entry.file_name().to_string_lossy().into_owned();
            if other != name && other.starts_with(&format!("{stem}-")) && other.ends_with(".cwasm")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_component_or_engine_setting_gets_another_cache_file() {
        let engine = Engine::default();
        let wasm = Path::new("/x/component.wasm");
        let a = cache_path(&engine, wasm, b"one");
        assert_eq!(a, cache_path(&engine, wasm, b"one"));
        assert_ne!(a, cache_path(&engine, wasm, b"two"));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(a, cache_path(&other, wasm, b"one"));
        assert!(a.to_string_lossy().starts_with("/x/component-"));
    }
}
