# Benchmarks (make bench, tests/bench/run.sh): programs, not tests, but for bench_smoke below.
# meshscope-loadgen: OTLP/HTTP (protobuf, JSON) and Zipkin JSON load generator.
add_executable(meshscope-loadgen
  ${CMAKE_CURRENT_SOURCE_DIR}/bench/loadgen.c
  ${CMAKE_CURRENT_SOURCE_DIR}/bench/loadgen_encode.c)
target_link_libraries(meshscope-loadgen PRIVATE Threads::Threads PkgConfig::ZLIB PkgConfig::ZSTD)

# meshscope-grpc-loadgen: OTLP/gRPC (TraceService/Export) load generator, same templates.
add_executable(meshscope-grpc-loadgen
  ${CMAKE_CURRENT_SOURCE_DIR}/bench/grpc_loadgen.c
  ${CMAKE_CURRENT_SOURCE_DIR}/bench/loadgen_encode.c)
target_link_libraries(meshscope-grpc-loadgen PRIVATE Threads::Threads PkgConfig::ZLIB PkgConfig::ZSTD
  PkgConfig::NGHTTP2)

# test_loadgen: the templates read back with the daemon's decoders, before and after patching.
meshscope_unit_test(test_loadgen
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_loadgen.c ${CMAKE_CURRENT_SOURCE_DIR}/bench/loadgen_encode.c
  LIBS collector_core)
target_include_directories(test_loadgen PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/bench)

# bench_query: fills a store with millions of spans (cached) and times queries through
# query_handle.
add_executable(bench_query ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_query.c)
target_link_libraries(bench_query PRIVATE query storage)

# bench_smoke: `make bench` in a few seconds' version (tests/bench/run.sh with BENCH_SMOKE=1), so
# the benchmark keeps working; it asserts nothing about the figures. Labelled "load" as well so
# the sanitizer run leaves it out (timings under ASan mean nothing).
meshscope_script_test(bench_smoke integration
  env BENCH_SMOKE=1 ${CMAKE_CURRENT_SOURCE_DIR}/bench/run.sh ${PROJECT_BINARY_DIR})
set_tests_properties(bench_smoke PROPERTIES LABELS "integration;load" TIMEOUT 300)
