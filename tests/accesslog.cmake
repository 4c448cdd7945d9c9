# Access logs (Envoy/Istio JSON): decoder, store, /api/logs and RED mapping in one cmocka test.
meshscope_unit_test(test_accesslog SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_accesslog.c
  LIBS collector_core PkgConfig::SQLITE)
# OTLP logs (POST /v1/logs): decoders, mapping, response, stored fields, /api/logs, RED.
meshscope_unit_test(test_otlp_logs SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_otlp_logs.c
  LIBS collector_core)

# bench_accesslog: ns per access-log line of decode, RED and storage, in process (not a test;
# make bench and the BENCHMARKS.md instruction counts use it).
add_executable(bench_accesslog ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_accesslog.c)
target_link_libraries(bench_accesslog PRIVATE collector_core)
