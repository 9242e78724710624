//! Generates the Rust code of every `.proto` under `itsm/` with tonic-prost-build, using the
//! protoc that ships in `protoc-bin-vendored` (no system protoc), and writes the encoded file
//! descriptor set that the servers embed for reflection.

use std::io;
use std::path::{Path, PathBuf};

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut protos = Vec::new();
    collect_protos(&root.join("itsm"), &mut protos)?;
    protos.sort();

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `prost::Name` on every message: event types are the payload's full name.
    config.enable_type_names();

    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("itsm_descriptor.bin"))
        .include_file("itsm.rs")
        // Services grow RPC by RPC; an RPC not built yet answers UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_with_config(config, &protos, &[root.clone(), well_known])?;

    println!("cargo:rerun-if-changed=itsm");
    Ok(())
}
