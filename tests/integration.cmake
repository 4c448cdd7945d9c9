# Integration tests: the real meshscope binary on free loopback ports, driven by the OpenTelemetry
# JS SDK and raw HTTP (tests/js). One ctest per test file; each file starts its own daemons with
# their own ports and temporary databases, so ctest -j runs them in parallel.
# Needs node (>= 20.6) and tests/js/node_modules (`make deps` runs `npm ci` there). Neither is
# optional: a missing one makes these tests fail rather than vanish.
find_program(MESHSCOPE_NODE node)
if(NOT MESHSCOPE_NODE)
  set(MESHSCOPE_NODE node)
endif()
if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/js/node_modules)
  message(WARNING "tests/js/node_modules missing (run `make deps`): the js_* integration tests will fail")
endif()

foreach(name otlp_roundtrip malformed lifecycle durability security zipkin red_prometheus overload graph dashboards
    accesslog demo otlp_logs grpc)
  meshscope_script_test(js_${name} integration
    ${MESHSCOPE_NODE} --test ${CMAKE_CURRENT_SOURCE_DIR}/js/test/${name}.test.mjs)
endforeach()

# The overload test offers several times the sustainable rate for 30 s: label it "load" too, so
# the sanitizer run (make sanitize) can leave it out.
set_tests_properties(js_overload PROPERTIES LABELS "integration;load")
