#!/bin/sh
# smoke.sh: short libFuzzer runs of the OTLP, Zipkin and access-log decoders and the query
# parameters (ctest label "fuzz"); fuzz_otlp_wire also holds the one-pass OTLP/protobuf decoder to
# the protobuf-c one (same rc, same model, same error) on the OTLP seeds.
#
# Configures a separate clang build in $MESHSCOPE_BUILD/fuzz-clang (the default build is gcc,
# which has no libFuzzer), builds the fuzz_* targets, and runs each for FUZZ_SECONDS (default
# 20) over a copy of its seeds in tests/data. Fails if any finds a crash, leak, sanitizer report
# or timeout; the reproducer is kept in $MESHSCOPE_BUILD/fuzz-artifacts and, since a CI log
# keeps only its start and end, the failing target's report and the reproducer in base64 are
# repeated at the end of the output. Fails when clang or its fuzzer runtime is absent
# (.ci/deps installs them).
#
# Longer runs (e.g. an hour each, 4 workers, corpus kept between runs):
#   CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHSCOPE_FUZZ=ON
#   cmake --build build-fuzz --target fuzz_otlp_proto fuzz_otlp_json
#   mkdir -p corpus/proto corpus/json
#   build-fuzz/tests/fuzz_otlp_proto -max_total_time=3600 -rss_limit_mb=2048 -jobs=4 -workers=4 \
#       corpus/proto tests/data/otlp
#   build-fuzz/tests/fuzz_otlp_json -max_total_time=3600 -rss_limit_mb=2048 -jobs=4 -workers=4 \
#       corpus/json tests/data/otlp
# Reproduce a crash: build-fuzz/tests/fuzz_otlp_proto crash-<sha1>
set -eu

src=${MESHSCOPE_SRC:?MESHSCOPE_SRC not set}
build=${MESHSCOPE_BUILD:?MESHSCOPE_BUILD not set}
seconds=${FUZZ_SECONDS:-20}
dir=$build/fuzz-clang
artifacts=$build/fuzz-artifacts

cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
    echo "fuzz_smoke: skipped, clang not found"
    exit 1
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' |
    "$cc" -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
    echo "fuzz_smoke: skipped, $cc has no libFuzzer runtime (libclang-rt-dev)"
    exit 1
fi

echo "fuzz_smoke: configuring $dir with $cc"
CC=$cc cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHSCOPE_FUZZ=ON \
    -DMESHSCOPE_SANITIZE= >"$dir.configure.log" 2>&1 || {
    cat "$dir.configure.log"
    exit 1
}
cmake --build "$dir" --target fuzz_otlp_proto fuzz_otlp_wire fuzz_otlp_json fuzz_zipkin_proto fuzz_zipkin_json fuzz_query \
    fuzz_accesslog fuzz_otlp_logs_proto fuzz_otlp_logs_json fuzz_otlp_metrics_proto \
    fuzz_otlp_metrics_json fuzz_syslog fuzz_grpc fuzz_codec -j2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$artifacts"
status=0
failed=
for kind in otlp_proto otlp_wire otlp_json zipkin_proto zipkin_json query accesslog otlp_logs_proto otlp_logs_json \
    otlp_metrics_proto otlp_metrics_json syslog grpc codec; do
    case $kind in
    accesslog) pattern='*.ndjson' ;;
    syslog) pattern='*.txt' ;;
    grpc) pattern='*.h2' ;;
    codec) pattern='*.bin' ;;
    *_proto | otlp_wire) pattern='*.pb' ;;
    *_json) pattern='*.json' ;;
    query) pattern='*.txt' ;;
    esac
    mkdir "$work/$kind"
    for f in "$src"/tests/data/${kind%_*}/$pattern; do
        [ -e "$f" ] && cp "$f" "$work/$kind/"
    done
    echo "fuzz_smoke: fuzz_$kind for ${seconds}s"
    if ! "$dir/tests/fuzz_$kind" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/$kind-" \
        "$work/$kind" >"$work/$kind.log" 2>&1; then
        tail -n 60 "$work/$kind.log"
        echo "fuzz_smoke: fuzz_$kind FAILED; reproducer in $artifacts"
        failed="$failed $kind"
        status=1
    else
        tail -n 12 "$work/$kind.log"
    fi
done
# A CI log keeps the start and the end of the output: repeat each failure's report here, with
# its reproducer in base64 (the artifacts directory does not outlive a CI checkout).
for kind in $failed; do
    echo "fuzz_smoke: FAILED fuzz_$kind:"
    grep -E '^(==[0-9]+== ?ERROR|SUMMARY|.*runtime error:|.*Test unit written to|.*out-of-memory|.*timeout after)' \
        "$work/$kind.log" | head -n 12
    for f in $(sed -n 's/.*Test unit written to //p' "$work/$kind.log"); do
        [ -f "$f" ] || continue
        echo "fuzz_smoke: $f ($(wc -c <"$f") bytes), base64:"
        head -c 65536 "$f" | base64 -w 0
        echo
    done
done
exit $status
