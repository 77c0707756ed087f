"""Generated CRI protobuf/gRPC stubs; regenerate with scripts/gen_protos.py, do not edit."""
