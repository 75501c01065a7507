# Warning set of docs/style.md section 2; -Werror through AHG_WERROR (always on in CI).
set(AHG_WARNING_FLAGS
    -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wold-style-definition -Wpointer-arith -Wcast-align -Wwrite-strings -Wformat=2
    -Wundef -Wimplicit-fallthrough -Wvla -fno-common)
add_compile_options(${AHG_WARNING_FLAGS})
if(AHG_WERROR)
    add_compile_options(-Werror)
endif()

# ahg_strict_conversion(target): -Wconversion for targets that are clean with it.
function(ahg_strict_conversion target)
    target_compile_options(${target} PRIVATE -Wconversion -Wsign-conversion)
endfunction()
