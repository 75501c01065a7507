# Every dependency through pkg-config; a missing one names the Debian package to install.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
    message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config")
endif()

# ahg_require(<target-suffix> <pkg-config module> <debian package>)
function(ahg_require name module debpkg)
    pkg_check_modules(AHGDEP_${name} QUIET IMPORTED_TARGET GLOBAL ${module})
    if(NOT AHGDEP_${name}_FOUND)
        message(FATAL_ERROR
            "missing dependency '${module}': install it with: apt-get install ${debpkg}")
    endif()
    add_library(ahg::${name} ALIAS PkgConfig::AHGDEP_${name})
    message(STATUS "AzHexGate: ${module} ${AHGDEP_${name}_VERSION}")
endfunction()

ahg_require(lws libwebsockets libwebsockets-dev)
ahg_require(ssl "openssl>=3" libssl-dev)
ahg_require(curl libcurl libcurl4-openssl-dev)
ahg_require(cjson libcjson libcjson-dev)
ahg_require(hiredis hiredis libhiredis-dev)
ahg_require(yaml yaml-0.1 libyaml-dev)
if(AHG_BUILD_TESTS)
    ahg_require(cmocka cmocka libcmocka-dev)
endif()

# Debian's libhttp-parser-dev ships no .pc file: find header and library directly.
find_path(AHG_HTTP_PARSER_INCLUDE http_parser.h)
find_library(AHG_HTTP_PARSER_LIB http_parser)
if(NOT AHG_HTTP_PARSER_INCLUDE OR NOT AHG_HTTP_PARSER_LIB)
    message(FATAL_ERROR
        "missing dependency 'http_parser': install it with: apt-get install libhttp-parser-dev")
endif()
add_library(ahg::http_parser UNKNOWN IMPORTED GLOBAL)
set_target_properties(ahg::http_parser PROPERTIES
    IMPORTED_LOCATION "${AHG_HTTP_PARSER_LIB}"
    INTERFACE_INCLUDE_DIRECTORIES "${AHG_HTTP_PARSER_INCLUDE}")

find_package(Threads REQUIRED)

# The lws build we rely on (style.md 3.0): fail loudly on a different one.
include(CheckCSourceCompiles)
set(CMAKE_REQUIRED_INCLUDES ${AHGDEP_lws_INCLUDE_DIRS})
check_c_source_compiles("
#include <lws_config.h>
#if !defined(LWS_ROLE_RAW) || !defined(LWS_WITH_TLS) || !defined(LWS_WITH_CUSTOM_HEADERS)
#error lws build lacks raw role, TLS or custom headers
#endif
#if LWS_LIBRARY_VERSION_MAJOR != 4 || LWS_LIBRARY_VERSION_MINOR != 1
#error libwebsockets 4.1 required
#endif
int main(void) { return 0; }
" AHG_LWS_BUILD_OK)
unset(CMAKE_REQUIRED_INCLUDES)
if(NOT AHG_LWS_BUILD_OK)
    message(FATAL_ERROR "libwebsockets must be Debian bookworm's 4.1 build (libwebsockets-dev)")
endif()
