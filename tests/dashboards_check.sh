#!/usr/bin/env bash
# dashboards_check.sh: the static half of the dashboards/ proof (the live half, against a real
# Prometheus scraping meshscope, is tests/js/test/dashboards.test.mjs).
#
#   - promtool check config dashboards/prometheus.yml (and the rule files it names);
#   - promtool check rules dashboards/rules/*.yml; promtool test rules dashboards/rules/tests/*.yml;
#   - every alert fires in a unit test and is checked silent in one; every alert has summary,
#     description and a runbook_url whose anchor exists in dashboards/README.md;
#   - every Grafana dashboard is valid JSON with unique panel ids, a `datasource` variable of type
#     prometheus, every panel, query and query variable on ${datasource}, no data source UID, no
#     host or URL; every PromQL expression (variables filled in) parses (offline: promtool checks
#     them as recording rules), and so does every query of tests/data/istio_dashboard_queries.json;
#   - the Grafana provisioning files define the Prometheus, Jaeger and Zipkin data sources and
#     their exemplar and trace-to-metrics links.
# Needs promtool (Debian's prometheus package) and python3 with PyYAML.
set -euo pipefail
src=${MESHSCOPE_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
dash=$src/dashboards
fail() { echo "dashboards_check: $*" >&2; exit 1; }
command -v promtool >/dev/null || fail "promtool not found (apt-get install prometheus)"
python3 -c 'import yaml' 2>/dev/null || fail "python3 with PyYAML needed (apt-get install python3-yaml)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== promtool check config"
promtool check config "$dash/prometheus.yml"
echo "== promtool check rules"
promtool check rules "$dash"/rules/*.yml
echo "== promtool test rules"
(cd "$dash/rules/tests" && promtool test rules ./*.yml)

echo "== structure"
python3 - "$dash" "$src/tests/data/istio_dashboard_queries.json" "$tmp/exprs.yml" <<'EOF'
import json, os, re, sys, yaml
dash, fixture_path, exprs_out = sys.argv[1:4]
errors = []
def err(msg): errors.append(msg)

# ---- rules: annotations, runbooks, unit-test coverage
alerts = [r for g in yaml.safe_load(open(f"{dash}/rules/alerts.yml"))["groups"] for r in g["rules"] if "alert" in r]
readme = open(f"{dash}/README.md").read()
fired, silent = set(), set()
for t in sorted(os.listdir(f"{dash}/rules/tests")):
    if not t.endswith(".yml"): continue
    for test in yaml.safe_load(open(f"{dash}/rules/tests/{t}")).get("tests", []):
        for a in test.get("alert_rule_test", []) or []:
            (fired if a.get("exp_alerts") else silent).add(a["alertname"])
for a in alerts:
    name = a["alert"]
    ann = a.get("annotations", {})
    for k in ("summary", "description", "runbook_url"):
        if not ann.get(k): err(f"alert {name}: no {k} annotation")
    m = re.fullmatch(r"dashboards/README\.md#([a-z0-9-]+)", ann.get("runbook_url", ""))
    if not m: err(f"alert {name}: runbook_url {ann.get('runbook_url')!r}")
    elif f'<a id="{m.group(1)}"></a>' not in readme: err(f"alert {name}: no runbook anchor {m.group(1)} in dashboards/README.md")
    if name not in fired: err(f"alert {name}: no unit test fires it")
    if name not in silent: err(f"alert {name}: no unit test checks it stays silent")
    if a.get("labels", {}).get("severity") not in ("critical", "warning", "info"): err(f"alert {name}: severity")

# ---- dashboards
DS = {"type": "prometheus", "uid": "${datasource}"}
VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "$namespace": ".*", "$instance": ".*", "$service": "reviews"}
def fill(expr, variables):
    for k in sorted(variables, key=len, reverse=True): expr = expr.replace(k, variables[k])
    return expr
exprs = []
files = sorted(f for f in os.listdir(f"{dash}/grafana") if f.endswith(".json"))
if files != ["mesh-overview.json", "meshscope-health.json", "service-detail.json"]: err(f"dashboards: {files}")
uids = set()
for f in files:
    try:
        d = json.load(open(f"{dash}/grafana/{f}"))
    except ValueError as e:
        err(f"{f}: not JSON: {e}"); continue
    for k in ("uid", "title", "panels", "templating", "schemaVersion"):
        if k not in d: err(f"{f}: no {k}")
    if d.get("uid") in uids: err(f"{f}: dashboard uid {d.get('uid')} used twice")
    uids.add(d.get("uid"))
    variables = d.get("templating", {}).get("list", [])
    dsv = [v for v in variables if v.get("name") == "datasource"]
    if len(dsv) != 1 or dsv[0].get("type") != "datasource" or dsv[0].get("query") != "prometheus":
        err(f"{f}: needs one variable `datasource` of type datasource, query prometheus")
    for v in variables:
        if v.get("type") == "query" and v.get("datasource") != DS: err(f"{f}: variable {v.get('name')} not on ${{datasource}}")
    # No data source UID but the variable, no host, no URL, anywhere in the file.
    def walk(x, where):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "datasource" and v != DS: err(f"{f}: {where}.datasource = {v!r}, not the ${{datasource}} variable")
                if k == "uid" and where != "" and v != "${datasource}": err(f"{f}: {where}.uid = {v!r}")
                walk(v, f"{where}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x): walk(v, f"{where}[{i}]")
        elif isinstance(x, str):
            if re.search(r"[a-z]+://|localhost|\b\d{1,3}(\.\d{1,3}){3}\b|:\d{4,5}\b", x): err(f"{f}: {where}: host or URL in {x!r}")
    walk(d, "")
    ids = []
    def panels(ps):
        for p in ps or []:
            yield p
            yield from panels(p.get("panels"))
    for p in panels(d.get("panels")):
        ids.append(p.get("id"))
        if "gridPos" not in p: err(f"{f}: panel {p.get('title')!r} has no gridPos")
        if p.get("type") in ("row", "text"): continue
        if p.get("datasource") != DS: err(f"{f}: panel {p.get('title')!r} not on ${{datasource}}")
        targets = p.get("targets") or []
        if not targets: err(f"{f}: panel {p.get('title')!r} has no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs: err(f"{f}: panel {p.get('title')!r}: refIds {refs}")
        for t in targets:
            if t.get("datasource") != DS: err(f"{f}: panel {p.get('title')!r} query {t.get('refId')} not on ${{datasource}}")
            if not t.get("expr", "").strip(): err(f"{f}: panel {p.get('title')!r} query {t.get('refId')} has no expr"); continue
            q = fill(t["expr"], VARS)
            if re.search(r"\$[A-Za-z_]", q): err(f"{f}: panel {p.get('title')!r}: unknown variable in {q}")
            exprs.append((f"{f} / {p.get('title')} / {t.get('refId')}", q))
        if p.get("type") == "table":
            for t in targets:
                if t.get("format") != "table" or not t.get("instant"): err(f"{f}: table {p.get('title')!r}: query {t.get('refId')} not an instant table query")
    if len(ids) != len(set(ids)) or None in ids: err(f"{f}: panel ids not unique: {ids}")

# ---- Istio fixture
fx = json.load(open(fixture_path))
seen = set()
for item in fx["queries"]:
    if item["id"] in seen: err(f"fixture: duplicate id {item['id']}")
    seen.add(item["id"])
    for k in ("dashboard", "panel", "expr"):
        if not item.get(k): err(f"fixture {item['id']}: no {k}")
    exprs.append((f"istio fixture {item['id']}", fill(item["expr"], fx["variables"])))

# ---- provisioning
ds = yaml.safe_load(open(f"{dash}/grafana/provisioning/datasources/meshscope.yml"))
by_type = {d["type"]: d for d in ds.get("datasources", [])}
if sorted(by_type) != ["jaeger", "prometheus", "zipkin"]: err(f"provisioning: data source types {sorted(by_type)}")
else:
    p, j, z = by_type["prometheus"], by_type["jaeger"], by_type["zipkin"]
    for x in (p, j, z):
        if not x.get("uid") or not x.get("url") or not x.get("name"): err(f"provisioning: {x.get('type')}: name, uid and url needed")
    dest = p.get("jsonData", {}).get("exemplarTraceIdDestinations", [])
    if not any(e.get("name") == "trace_id" and e.get("datasourceUid") == j["uid"] for e in dest):
        err("provisioning: Prometheus exemplarTraceIdDestinations must send trace_id to the Jaeger data source")
    for x in (j, z):
        t2m = x.get("jsonData", {}).get("tracesToMetrics", {})
        if t2m.get("datasourceUid") != p["uid"] or not t2m.get("queries"): err(f"provisioning: {x['type']}: tracesToMetrics to the Prometheus data source")
        for qq in t2m.get("queries", []):
            if "$__tags" in qq["query"].replace("$$__tags", ""): err(f"provisioning: {x['type']}: write $$__tags (Grafana expands $VAR in provisioning files)")
    if j.get("url") != z.get("url") or not j.get("url", "").endswith(":16686"): err("provisioning: Jaeger and Zipkin both on meshscope's query port")
prov = yaml.safe_load(open(f"{dash}/grafana/provisioning/dashboards/meshscope.yml"))
if not any(pr.get("type") == "file" and pr.get("options", {}).get("path") for pr in prov.get("providers", [])): err("provisioning: dashboard provider of type file with a path")

# Every PromQL expression as a recording rule: promtool parses them offline.
with open(exprs_out, "w") as out:
    yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": [{"record": f"dashboard_expr_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}]}, out)
with open(exprs_out + ".where", "w") as out:
    out.write("\n".join(f"dashboard_expr_{i}: {w}" for i, (w, _) in enumerate(exprs)) + "\n")
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"{len(alerts)} alerts, {len(files)} dashboards, {len(exprs)} PromQL expressions: structure ok")
EOF

echo "== PromQL of the dashboards and the Istio fixture parses"
if ! promtool check rules "$tmp/exprs.yml" >"$tmp/parse.log" 2>&1; then
  cat "$tmp/parse.log" >&2
  echo "(expression numbers: see below)" >&2
  cat "$tmp/exprs.yml.where" >&2
  fail "a dashboard or fixture expression does not parse"
fi
grep -m1 SUCCESS "$tmp/parse.log"
echo "dashboards_check: ok"
