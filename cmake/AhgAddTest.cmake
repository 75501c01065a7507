# ahg_add_unit_test(NAME name SOURCES a.c b.c LIBS x y)
# One cmocka executable per module, registered with ctest under the label `unit`.
function(ahg_add_unit_test)
    cmake_parse_arguments(T "" "NAME" "SOURCES;LIBS" ${ARGN})
    add_executable(${T_NAME} ${T_SOURCES})
    target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} ahg::cmocka)
    target_compile_definitions(${T_NAME} PRIVATE AHG_UNIT_TESTING
        AHG_TEST_FIXTURES="${PROJECT_SOURCE_DIR}/tests/fixtures")
    add_test(NAME ${T_NAME} COMMAND ${T_NAME})
    set_tests_properties(${T_NAME} PROPERTIES
        LABELS unit
        TIMEOUT 30
        ENVIRONMENT "ASAN_OPTIONS=abort_on_error=1:detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endfunction()
