//! Generates the CRI v1 client (RuntimeService, ImageService) with tonic/prost, using the
//! vendored `protoc`. It lives here rather than in keel-proto so that only the agent rebuilds
//! when the CRI definition changes, and the master never carries the node's protocol.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_with_config(config, &["proto/runtime/v1/api.proto"], &["proto"])?;
    Ok(())
}
