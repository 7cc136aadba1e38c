//! Compile `proto/` with the pure-Rust `protox` compiler: no system `protoc` needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut files: Vec<PathBuf> = [
        "mesos",
        "scheduler",
        "agent",
        "executor",
        "quota",
        "master",
        "agent_operator",
    ]
    .iter()
    .map(|name| root.join(format!("agora/v1/{name}.proto")))
    .collect();
    // Mesos' own v0 messages (proto2), spoken across JNI by `libmesos.so`.
    files.push(root.join("mesos/v0/mesos.proto"));
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    // compile_fds emits no rerun-if-changed of its own, and proto/ is outside the crate.
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
