# Query module: Jaeger API parameter rules, rendering, and end-to-end over a temp store.
meshscope_unit_test(test_query SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_query.c LIBS query storage PkgConfig::JANSSON)
