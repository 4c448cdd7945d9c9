# Service-graph API (/api/graph) end to end over a temp store.
meshscope_unit_test(test_graph SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_graph.c LIBS query storage PkgConfig::JANSSON)
