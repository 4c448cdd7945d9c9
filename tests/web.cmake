# The dashboard (web/) end to end in headless Chromium: Debian's chromium package, driven by
# playwright-core from web/node_modules (`make deps` installs both). Label "browser".
find_program(MESHSCOPE_NODE node)
if(NOT MESHSCOPE_NODE)
  set(MESHSCOPE_NODE node)
endif()
meshscope_script_test(web_dashboard browser
  ${MESHSCOPE_NODE} --test ${PROJECT_SOURCE_DIR}/web/tests/dashboard.test.mjs)
