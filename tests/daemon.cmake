# The daemon's own pieces (options, decompression, queue, responses).
meshscope_unit_test(test_collector SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_collector.c
  LIBS collector_core)
