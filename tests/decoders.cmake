# OTLP decoder tests. The decoders are compiled straight in (not via collector_core) so this test
# builds and runs without the rest of the daemon.
meshscope_unit_test(test_otlp
  SOURCES test_otlp.c
          ${PROJECT_SOURCE_DIR}/collector/otlp_proto.c
          ${PROJECT_SOURCE_DIR}/collector/otlp_wire.c
          ${PROJECT_SOURCE_DIR}/collector/otlp_json.c
          ${PROJECT_SOURCE_DIR}/collector/pbwire.c
          ${PROJECT_SOURCE_DIR}/collector/decode.c
  LIBS storage meshscope_proto PkgConfig::JANSSON PkgConfig::PROTOBUFC)
target_include_directories(test_otlp PRIVATE ${PROJECT_SOURCE_DIR}/collector)
