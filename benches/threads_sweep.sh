#!/usr/bin/env bash
# How training and top-K scale with threads: ials and implicit side by side at 1, 2, 4, 8 and 16
# threads (or the counts given in $THREADS), most telling runs first so that a run cut short
# still answers the main question. Writes one JSON file per run and machine.txt (lscpu, versions)
# into $1; the tables go to standard output.
#
#   bash benches/threads_sweep.sh OUTDIR
#
# Written for a borrowed 16-core machine (with IALS_DATA_DIR at a copy of the data sets when
# ../shared/data is not beside the checkout); on the 2-core development machine use THREADS="1 2".
set -uo pipefail
out=${1:?usage: threads_sweep.sh OUTDIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
threads=${THREADS:-"1 2 4 8 16"}
export PYTHONUNBUFFERED=1

{
    date -u
    lscpu
    python3 -c 'import ials, numpy, scipy; print("ials", ials.__version__, ials.simd_level(), "numpy", numpy.__version__, "scipy", scipy.__version__)'
    uptime
} >"$out/machine.txt" 2>&1

fit() {  # name, then bench_fit.py arguments (threads appended)
    local name=$1
    shift
    for t in $threads; do
        python3 "$here/bench_fit.py" "$@" --repeats 5 --threads "$t" --implicit-blas unset \
            --json "$out/${name}_t$t.json" || echo "FAILED: $name threads $t"
    done
}

fit gowalla64 --dataset gowalla --factors 64 --iterations 3
fit gowalla128 --dataset gowalla --factors 128 --iterations 3
for t in $threads; do
    python3 "$here/bench_topk.py" --factors 64 --n 10 --filter on --tasks recommend \
        --repeats 5 --threads "$t" --implicit-blas unset --json "$out/topk64_t$t.json" ||
        echo "FAILED: topk threads $t"
done
fit exact64 --dataset gowalla --factors 64 --iterations 3 --exact --alpha 10
fit synthetic64 --dataset synthetic --factors 64 --iterations 3
uptime
