# Syslog receiver (--syslog): the parsers in one cmocka test; the sockets end to end with raw
# frames and HAProxy fixtures (js_syslog) and behind a real nginx (js_nginx: Debian's
# nginx-light, .ci/deps). Included after integration.cmake, which finds node.
meshscope_unit_test(test_syslog SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_syslog.c
  LIBS collector_core)
foreach(name syslog nginx)
  meshscope_script_test(js_${name} integration
    ${MESHSCOPE_NODE} --test ${CMAKE_CURRENT_SOURCE_DIR}/js/test/${name}.test.mjs)
endforeach()
