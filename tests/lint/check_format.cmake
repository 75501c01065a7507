# Runs clang-format --dry-run -Werror over every tracked C source and header.
file(GLOB_RECURSE files
    "${ROOT}/common/*.c" "${ROOT}/common/*.h"
    "${ROOT}/emulator/*.c" "${ROOT}/emulator/*.h"
    "${ROOT}/gateway/*.c" "${ROOT}/gateway/*.h"
    "${ROOT}/controller/*.c" "${ROOT}/controller/*.h"
    "${ROOT}/client/*.c" "${ROOT}/client/*.h"
    "${ROOT}/sidecar/*.c" "${ROOT}/sidecar/*.h"
    "${ROOT}/tests/*.c" "${ROOT}/tests/*.h"
    "${ROOT}/bench/*.c" "${ROOT}/bench/*.h")
list(LENGTH files n)
if(n EQUAL 0)
    message(FATAL_ERROR "no C files found under ${ROOT}")
endif()
execute_process(COMMAND ${CLANG_FORMAT} --dry-run -Werror ${files}
    RESULT_VARIABLE rc ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "clang-format would change files:\n${out}")
endif()
message(STATUS "clang-format clean: ${n} files")
