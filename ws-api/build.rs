//! Generates ws-api's server and client code from ../proto with protox and
//! tonic-prost-build, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(["wsapi.proto", "wsgateway.proto"], ["../proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        // `rpc Connect` would clash with the generated `connect` constructor.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
