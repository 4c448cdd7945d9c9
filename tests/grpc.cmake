# gRPC server in process (an nghttp2 client session on an in-memory connection): commit-gated
# Export, status table, a stream held by a full queue, the Envoy access-log mapping.
meshscope_unit_test(test_grpc SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_grpc.c
  LIBS collector_core PkgConfig::NGHTTP2)
