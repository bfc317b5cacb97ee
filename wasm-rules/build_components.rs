// Included (`include!`) by `collector/build.rs` and `agent/build.rs`: builds
// WebAssembly components of this workspace for `wasm32-wasip2` with a nested
// cargo (its own target dir under OUT_DIR, so it never waits on the outer
// build's lock) and copies each `.wasm` into OUT_DIR when it changed.

/// Builds `packages` ((package, file stem)) of the workspace at `root` with
/// cargo profile `profile` into `out/<target>` and copies `<stem>.wasm` to
/// `out`; `what` names them in the failure message.
fn build_components(
    root: &std::path::Path,
    out: &std::path::Path,
    target: &str,
    profile: &str,
    packages: &[(&str, &str)],
    what: &str,
) {
    let target_dir = out.join(target);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", "wasm32-wasip2", "--profile", profile, "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in packages {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the
    // host target; the components are built plainly.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    if profile == "edge" {
        // Edge filters scan text on every batch: WebAssembly SIMD lets
        // memchr and regex search 16 bytes at a time (wasmtime compiles it
        // on every x86-64 and aarch64 host).
        cmd.env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-Ctarget-feature=+simd128",
        );
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the {what}: {e}"));
    assert!(
        status.success(),
        "building the {what} failed; is the target installed? (`rustup target add wasm32-wasip2`)"
    );
    let built = target_dir.join("wasm32-wasip2").join(profile);
    for (_, file) in packages {
        let from = built.join(format!("{file}.wasm"));
        let to = out.join(format!("{file}.wasm"));
        let bytes =
            std::fs::read(&from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
        if std::fs::read(&to).ok().as_deref() != Some(bytes.as_slice()) {
            std::fs::write(&to, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
        }
    }
}
