# Storage module tests (label unit) and the storage-only throughput program (not a test).
meshscope_unit_test(test_storage SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_storage.c LIBS storage)

# bench_store: writes synthetic mesh spans through store_put_batches and prints spans/s and
# bytes/span on disk. Run it from a Release build; it is not registered with CTest.
add_executable(bench_store ${CMAKE_CURRENT_SOURCE_DIR}/bench_store.c)
target_link_libraries(bench_store PRIVATE storage)
