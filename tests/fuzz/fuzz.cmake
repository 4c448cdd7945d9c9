# libFuzzer targets for the OTLP (traces, logs), Zipkin and access-log decoders, the syslog
# parsers, the gRPC framing layer and the stored chunk codec.
#
# fuzz_otlp_wire is differential: it holds otlp_decode_traces_proto to otlp_decode_traces_protoc.
#
# With clang (and MESHSCOPE_FUZZ), fuzz_otlp_{proto,json} and fuzz_zipkin_{proto,json} are built with
# -fsanitize=fuzzer,address,undefined. Every source they run (decoders, span model, logger, the
# protobuf-c generated code) is compiled into each executable so that all of it carries the
# sanitizer and coverage instrumentation, whatever flags the libraries were built with.
#
# With gcc (the default build), the fuzz_smoke script test (label fuzz) configures its own clang
# build dir, builds the targets and runs each for a short, bounded time.
if(NOT MESHSCOPE_FUZZ)
  return()
endif()

if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  get_target_property(fuzz_proto_srcs meshscope_proto SOURCES)
  # Generated code is not ours to lint (same as proto/CMakeLists.txt, whose setting is
  # directory-scoped and so does not reach this directory).
  set_source_files_properties(${fuzz_proto_srcs} PROPERTIES COMPILE_OPTIONS "-Wno-error;-w")
  set(fuzz_common_srcs
    ${PROJECT_SOURCE_DIR}/storage/model.c
    ${PROJECT_SOURCE_DIR}/storage/log.c
    ${PROJECT_SOURCE_DIR}/collector/otlp_proto.c
    ${PROJECT_SOURCE_DIR}/collector/otlp_wire.c
    ${PROJECT_SOURCE_DIR}/collector/otlp_json.c
    ${PROJECT_SOURCE_DIR}/collector/zipkin_json.c
    ${PROJECT_SOURCE_DIR}/collector/zipkin_proto.c
    ${PROJECT_SOURCE_DIR}/collector/accesslog.c
    ${PROJECT_SOURCE_DIR}/collector/syslog_parse.c
    ${PROJECT_SOURCE_DIR}/collector/otlp_logs.c
    ${PROJECT_SOURCE_DIR}/query/json_out.c
    ${PROJECT_SOURCE_DIR}/collector/pbwire.c
    ${PROJECT_SOURCE_DIR}/collector/decode.c
    # OTLP metrics: decoders and store (whose text buffer is red_render.c's, hence RED's files)
    ${PROJECT_SOURCE_DIR}/collector/otlp_metrics.c
    ${PROJECT_SOURCE_DIR}/collector/otel_metrics.c
    ${PROJECT_SOURCE_DIR}/collector/red.c
    ${PROJECT_SOURCE_DIR}/collector/red_labels.c
    ${PROJECT_SOURCE_DIR}/collector/red_render.c
    ${PROJECT_SOURCE_DIR}/storage/graph_pair.c # RED's service-graph pairing of access-log records
    ${fuzz_proto_srcs})
  foreach(t fuzz_otlp_proto fuzz_otlp_wire fuzz_otlp_json fuzz_zipkin_proto fuzz_zipkin_json fuzz_accesslog
      fuzz_otlp_logs_proto fuzz_otlp_logs_json fuzz_otlp_metrics_proto fuzz_otlp_metrics_json
      fuzz_syslog)
    add_executable(${t} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${t}.c ${fuzz_common_srcs})
    add_dependencies(${t} meshscope_proto) # runs protoc-c first
    target_include_directories(${t} PRIVATE
      ${PROJECT_SOURCE_DIR}/storage ${PROJECT_SOURCE_DIR}/collector ${PROJECT_SOURCE_DIR}/query
      ${PROJECT_BINARY_DIR}/proto)
    target_compile_options(${t} PRIVATE
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer -g)
    target_link_options(${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${t} PRIVATE PkgConfig::JANSSON PkgConfig::PROTOBUFC PkgConfig::ZLIB
      Threads::Threads m)
  endforeach()
  # fuzz_codec: the chunk codec alone (with the model and the logger).
  add_executable(fuzz_codec ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_codec.c
    ${PROJECT_SOURCE_DIR}/storage/codec.c ${PROJECT_SOURCE_DIR}/storage/model.c
    ${PROJECT_SOURCE_DIR}/storage/log.c)
  target_include_directories(fuzz_codec PRIVATE ${PROJECT_SOURCE_DIR}/storage)
  target_compile_options(fuzz_codec PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  target_link_options(fuzz_codec PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_codec PRIVATE Threads::Threads m)

  # fuzz_accesslog also round-trips every record through the stored encoding.
  target_sources(fuzz_accesslog PRIVATE ${PROJECT_SOURCE_DIR}/storage/access_log.c
    ${PROJECT_SOURCE_DIR}/storage/codec.c)

  # The gRPC framing layer: grpc.c on a real nghttp2 session, with everything it calls
  # (selfmetrics.c renders store statistics and options.c parses durations: the rest of storage/
  # and query/ comes in for them).
  file(GLOB fuzz_grpc_extra_srcs ${PROJECT_SOURCE_DIR}/storage/*.c ${PROJECT_SOURCE_DIR}/query/*.c)
  list(REMOVE_ITEM fuzz_grpc_extra_srcs ${PROJECT_SOURCE_DIR}/storage/model.c
    ${PROJECT_SOURCE_DIR}/storage/log.c ${PROJECT_SOURCE_DIR}/storage/graph_pair.c
    ${PROJECT_SOURCE_DIR}/query/json_out.c)
  add_executable(fuzz_grpc ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_grpc.c ${fuzz_common_srcs}
    ${PROJECT_SOURCE_DIR}/collector/grpc.c ${PROJECT_SOURCE_DIR}/collector/envoy_als.c
    ${PROJECT_SOURCE_DIR}/collector/envoy_metrics.c
    ${PROJECT_SOURCE_DIR}/collector/queue.c ${PROJECT_SOURCE_DIR}/collector/decompress.c
    ${PROJECT_SOURCE_DIR}/collector/auth.c ${PROJECT_SOURCE_DIR}/collector/otlp_response.c
    ${PROJECT_SOURCE_DIR}/collector/selfmetrics.c ${PROJECT_SOURCE_DIR}/collector/options.c
    ${fuzz_grpc_extra_srcs})
  add_dependencies(fuzz_grpc meshscope_proto)
  target_include_directories(fuzz_grpc PRIVATE
    ${PROJECT_SOURCE_DIR}/storage ${PROJECT_SOURCE_DIR}/collector ${PROJECT_SOURCE_DIR}/query
    ${PROJECT_BINARY_DIR}/proto)
  target_compile_options(fuzz_grpc PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  target_link_options(fuzz_grpc PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_grpc PRIVATE PkgConfig::JANSSON PkgConfig::PROTOBUFC PkgConfig::NGHTTP2
    PkgConfig::SQLITE
    PkgConfig::GNUTLS
    PkgConfig::ZSTD PkgConfig::ZLIB Threads::Threads m)

  # The query APIs' parameter parsing and rendering, against a small real store: every source
  # of storage/ and query/ compiled in, for the same reason as above.
  file(GLOB fuzz_query_srcs ${PROJECT_SOURCE_DIR}/storage/*.c ${PROJECT_SOURCE_DIR}/query/*.c)
  add_executable(fuzz_query ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_query.c ${fuzz_query_srcs})
  target_include_directories(fuzz_query PRIVATE ${PROJECT_SOURCE_DIR}/storage ${PROJECT_SOURCE_DIR}/query)
  target_compile_options(fuzz_query PRIVATE
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  target_link_options(fuzz_query PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_query PRIVATE PkgConfig::JANSSON PkgConfig::SQLITE PkgConfig::ZSTD
    Threads::Threads m)
else()
  meshscope_script_test(fuzz_smoke fuzz ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/smoke.sh)
  # No skip code: .ci/deps installs clang and its fuzzer runtime, so a missing one is a failure.
endif()
