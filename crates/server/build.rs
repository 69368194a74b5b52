//! Generates the gRPC API's code from `proto/switchyard.proto` with protox, a protobuf compiler
//! in Rust, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/switchyard.proto");
    let descriptors = protox::compile(["proto/switchyard.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(descriptors)?;
    Ok(())
}
