//! Compile `proto/` with the pure-Rust `protox` compiler: no system `protoc` needed.
use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut files: Vec<PathBuf> = [
        "mesos",
        "scheduler",
        "agent",
        "executor",
        "supervisor",
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
    // The compiled descriptors, for reflection (the Mesos JSON mapping in
    // `agora-mesos-http`): exposed as `FILE_DESCRIPTOR_SET`.
    std::fs::write(out_dir.join("file_descriptor_set.bin"), fds.encode_to_vec())?;
    // `prost::Name` on every message, so reflection can find a type's descriptor.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .codec_path("crate::codec::SmallBufferCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(fds, config)?;
    // compile_fds emits no rerun-if-changed of its own, and proto/ is outside the crate.
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
