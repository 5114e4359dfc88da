//! Generates the etcd v3 API and keel peer protocol code with tonic/prost,
//! using the vendored `protoc` so no system protobuf compiler is needed.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(
            config,
            &[
                "proto/etcd/mvccpb/kv.proto",
                "proto/etcd/authpb/auth.proto",
                "proto/etcd/etcdserverpb/rpc.proto",
                "proto/keel/peer.proto",
                "proto/keel/api.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
