//! Generates ws-api's gRPC services (server and client) from ../proto with
//! protox and tonic-prost-build, so building needs no system `protoc`. The
//! messages are ws-proto's (`extern_path`): generated once for the workspace.
//! The descriptor set is written too, for server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(["wsapi.proto", "wsgateway.proto"], ["../proto"])?;
    // For gRPC server reflection (grpcurl and its kind discover the services).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("wsapi_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .extern_path(".wsapi", "::ws_proto::wsapi")
        .extern_path(".wsgateway", "::ws_proto::wsgateway")
        // `rpc Connect` would clash with the generated `connect` constructor.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
