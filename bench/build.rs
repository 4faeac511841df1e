//! Generates the one gRPC client ws-bench uses (`BizMsgService`, to push)
//! over ws-proto's messages, so the load tool does not depend on ws-api.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(["wsapi.proto", "wsgateway.proto"], ["../proto"])?;
    tonic_prost_build::configure()
        .extern_path(".wsapi", "::ws_proto::wsapi")
        .extern_path(".wsgateway", "::ws_proto::wsgateway")
        .build_server(false)
        // `rpc Connect` would clash with the generated `connect` constructor.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
