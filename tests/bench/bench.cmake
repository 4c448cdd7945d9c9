# meshscope-loadgen: OTLP/HTTP load generator (make bench, README figures).
add_executable(meshscope-loadgen ${CMAKE_CURRENT_SOURCE_DIR}/bench/loadgen.c)
target_link_libraries(meshscope-loadgen PRIVATE Threads::Threads)
