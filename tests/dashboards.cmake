# dashboards/: promtool config/rules checks and rule unit tests, the Grafana JSON's structure and
# PromQL syntax (tests/dashboards_check.sh). The live check against a real Prometheus scraping
# meshscope is js_dashboards (integration.cmake, tests/js/test/dashboards.test.mjs).
meshscope_script_test(dashboards_check integration bash ${CMAKE_CURRENT_SOURCE_DIR}/dashboards_check.sh)
