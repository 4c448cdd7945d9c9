# RED metrics (collector/red*.c): unit tests and the aggregation/render benchmark.
# Until collector/CMakeLists.txt lists the red*.c files in collector_core, add them from here
# (a target may take sources from another directory since CMake 3.13); once it does, this is a
# no-op.
get_target_property(_red_srcs collector_core SOURCES)
if(NOT "red.c" IN_LIST _red_srcs AND NOT "${PROJECT_SOURCE_DIR}/collector/red.c" IN_LIST _red_srcs)
  target_sources(collector_core PRIVATE
    ${PROJECT_SOURCE_DIR}/collector/red.c
    ${PROJECT_SOURCE_DIR}/collector/red_labels.c
    ${PROJECT_SOURCE_DIR}/collector/red_render.c)
endif()

meshscope_unit_test(test_red SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_red.c LIBS collector_core)

# bench_red: ns per span of red_observe_batch, ms per render at 10,000 series (not a test).
add_executable(bench_red ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_red.c)
target_link_libraries(bench_red PRIVATE collector_core)

# Each request once on the service graph: access-log record pairing and span coverage, in RED
# and in the edge rollups alike (collector/red.c, storage/store.c, storage/graph_pair.c).
meshscope_unit_test(test_graph_pair SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_graph_pair.c
  LIBS collector_core)
