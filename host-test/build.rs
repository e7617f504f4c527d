//! Builds the component (`--profile component`, wasm32-wasip2) so `cargo test` at the root tests the real
//! `.wasm`. A nested cargo with its own target dir: sharing the outer one deadlocks on its lock.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        return; // host-test itself is native-only
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for path in [
        "src",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    // A target dir shared by several checkouts (git worktrees) keys this package by its
    // workspace-relative path, so only the working directory tells them apart: without this,
    // one checkout's tests would run another checkout's component.
    println!("cargo:rerun-if-env-changed=PWD");
    let target_dir = root.join("target").join("component");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "component",
            "--target",
            "wasm32-wasip2",
            "-p",
            "entra-zenqms",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host, not for the component.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "RUSTC",
        "RUSTDOC",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running the nested cargo build");
    assert!(status.success(), "building the component failed");
    let wasm = target_dir.join("wasm32-wasip2/component/entra_zenqms.wasm");
    println!("cargo:rustc-env=COMPONENT_WASM={}", wasm.display());
}
