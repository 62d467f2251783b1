# The relay's operator features (tools/relay, library tide-relay-ops): one program per file
# there. unit: single-process, fast, also run under Valgrind; threads: also under TSan.
# interop and the unit-file check run real programs (nginx, haproxy, promtool,
# systemd-analyze) and skip (77) where they are missing.
if(TARGET tide-relay-ops)
  function(relay_ops_test name)
    cmake_parse_arguments(R "" "" "LABELS" ${ARGN})
    tide_test(${name} SOURCES relay/${name}.c LIBS tide-relay-ops LABELS "${R_LABELS}")
    target_compile_definitions(${name} PRIVATE
      TIDE_SOURCE_DIR="${PROJECT_SOURCE_DIR}" TIDE_VERSION_STRING_T="${PROJECT_VERSION}")
  endfunction()
  relay_ops_test(test_relay_options LABELS unit)
  relay_ops_test(test_relay_log LABELS "unit;threads")
  relay_ops_test(test_proxy_protocol LABELS unit)
  relay_ops_test(test_relay_balance LABELS "unit;threads")
  relay_ops_test(test_relay_health LABELS "unit;threads")
  relay_ops_test(test_relay_notify LABELS unit)
  relay_ops_test(test_relay_privdrop LABELS unit)
  relay_ops_test(test_relay_peer_limit LABELS "unit;threads")
  relay_ops_test(test_relay_sockopt LABELS unit)
  relay_ops_test(test_relay_metrics LABELS unit)
  relay_ops_test(test_relay_reload LABELS "unit;threads")
  relay_ops_test(test_relay_signals LABELS unit)
  relay_ops_test(test_proxy_interop LABELS relay-interop)
  add_test(NAME test_relay_unit_file
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/relay/check_unit_file.sh
                   ${PROJECT_BINARY_DIR}/tools/relay/tide-relay.service
                   ${PROJECT_BINARY_DIR}/tools/tide-relay)
  set_tests_properties(test_relay_unit_file PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 60
                       LABELS relay-interop)
endif()
