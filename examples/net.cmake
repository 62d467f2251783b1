# Programs on the public agent API (tide/net.h): fanout, a line broadcaster that keeps
# received buffers and sends each line to every subscriber from the same buffers.
if(TARGET tide_net)
  add_executable(fanout fanout.c)
  target_link_libraries(fanout PRIVATE tide::net)
  if(BUILD_TESTING)
    # Driven by socat (Debian's), the way a user would try it from two terminals.
    add_test(NAME example_fanout
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test-fanout.sh $<TARGET_FILE:fanout>)
    set_tests_properties(example_fanout PROPERTIES LABELS "net;threads" TIMEOUT 60
                         SKIP_RETURN_CODE 77)
  endif()
endif()

# http, an HTTP/1.1 responder (keep-alive, pipelining, zero-copy bodies), driven by curl,
# python3 (pipelined and split requests) and a short wrk run.
if(TARGET tide_net)
  add_executable(http http.c)
  target_link_libraries(http PRIVATE tide::net)
  if(BUILD_TESTING)
    add_test(NAME example_http COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test-http.sh
                                       $<TARGET_FILE:http>)
    set_tests_properties(example_http PROPERTIES LABELS "net;threads" TIMEOUT 90
                         SKIP_RETURN_CODE 77)
  endif()
endif()
