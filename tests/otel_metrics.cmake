# OTLP metrics (collector/otlp_metrics.c, collector/otel_metrics.c): decoders, store, naming and
# expiry in one cmocka test; the JS SDK exporters against the real binary and Prometheus.
meshscope_unit_test(test_otel_metrics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_otel_metrics.c
  LIBS collector_core)
meshscope_script_test(js_otlp_metrics integration
  ${MESHSCOPE_NODE} --test ${CMAKE_CURRENT_SOURCE_DIR}/js/test/otlp_metrics.test.mjs)
