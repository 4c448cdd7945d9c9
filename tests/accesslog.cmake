# Access logs (Envoy/Istio JSON): decoder, store, /api/logs and RED mapping in one cmocka test.
meshscope_unit_test(test_accesslog SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_accesslog.c
  LIBS collector_core PkgConfig::SQLITE)
# OTLP logs (POST /v1/logs): decoders, mapping, response, stored fields, /api/logs, RED.
meshscope_unit_test(test_otlp_logs SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_otlp_logs.c
  LIBS collector_core)
