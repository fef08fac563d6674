//! Generates the gRPC code from `proto/quiver/v1`. protoc comes from protoc-bin-vendored
//! unless `PROTOC` is set, so a fresh machine needs no manual install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PROTOC");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["types", "registry", "features", "admin", "raft", "offline", "monitoring"]
        .map(|name| root.join(format!("quiver/v1/{name}.proto")));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    // Server reflection answers from the descriptors of every file.
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("quiver_descriptor.bin");
    tonic_prost_build::configure().file_descriptor_set_path(descriptors).compile_with_config(
        config,
        &files,
        &[root],
    )?;
    Ok(())
}
