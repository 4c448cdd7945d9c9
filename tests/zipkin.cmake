# Zipkin v2: the decoders (compiled straight in, as test_otlp does) and the /api/v2 query routes
# over a real store.
meshscope_unit_test(test_zipkin
  SOURCES test_zipkin.c
          ${PROJECT_SOURCE_DIR}/collector/otlp_proto.c
          ${PROJECT_SOURCE_DIR}/collector/otlp_wire.c
          ${PROJECT_SOURCE_DIR}/collector/zipkin_json.c
          ${PROJECT_SOURCE_DIR}/collector/zipkin_proto.c
          ${PROJECT_SOURCE_DIR}/collector/pbwire.c
          ${PROJECT_SOURCE_DIR}/collector/decode.c
  LIBS query storage meshscope_proto PkgConfig::JANSSON PkgConfig::PROTOBUFC)
target_include_directories(test_zipkin PRIVATE ${PROJECT_SOURCE_DIR}/collector)
