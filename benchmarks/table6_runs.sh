#!/usr/bin/env bash
# The paper's Table 6 on the CIFAR-10 JPEG copy: ResNet-20, 32, 44, 56 and 110
# (option A) trained one after another with one recipe, the paper's plus weight
# decay 5e-4, label smoothing 0.1 and weight EMA 0.999, in mixed_bfloat16.
# Rerun the same command to resume: each net continues from its newest
# checkpoint, and finished nets are skipped: those with a results.json in
# their model_dir or committed under benchmarks/results/table6/ (a net that
# ships, on a machine that no longer holds its run). A net still training
# continues from the checkpoint that table6_report.py committed beside its
# metrics and log (resnet<depth>/checkpoints/) unless this machine holds a newer
# one, so a run outlives the machine it started on. The cheapest net goes
# first; DEPTHS="56 110" picks others. SEED=2 trains the same recipe from
# another seed, committed under benchmarks/results/table6_seed2/, to size how
# far one seed's figures move:
#
#   nohup benchmarks/table6_runs.sh /work/runs/table6 >> /work/runs/table6/driver.log 2>&1 &
#   mkdir -p /work/runs/table6_seed2 && SEED=2 DEPTHS="20 32" nohup \
#       benchmarks/table6_runs.sh /work/runs/table6_seed2 >> /work/runs/table6_seed2/driver.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-/work/runs/table6}
data=${DATA:-../shared/datasets/cifar10-jpeg.tar.gz}
seed=${SEED:-1}
committed=${COMMITTED:-benchmarks/results/table6$([[ $seed == 1 ]] || echo "_seed$seed")}
mkdir -p "$base"
for depth in ${DEPTHS:-20 32 44 56 110}; do
  dir=$base/resnet$depth
  copy=$committed/resnet$depth
  for file in "$dir/results.json" "$copy/results.json"; do
    if [[ -f $file ]]; then
      echo "$(date -u +%FT%TZ) resnet$depth finished already ($file)"
      continue 2
    fi
  done
  # Zero-padded steps: the names sort as the steps do.
  checkpoint=$(ls "$copy"/checkpoints/ckpt-*.keras 2> /dev/null | tail -1 || true)
  here=$(ls "$dir"/checkpoints/ckpt-*.keras 2> /dev/null | tail -1 || true)
  if [[ -n $checkpoint && $(basename "$checkpoint") > $(basename "${here:-ckpt-}") ]]; then
    mkdir -p "$dir/checkpoints"
    cp "$checkpoint" "$dir/checkpoints/"
    cp "$copy/metrics.jsonl" "$copy/run_config.json" "$dir/"
    cp "$copy/train.log" "$dir.log"
    echo "$(date -u +%FT%TZ) resnet$depth continues from the committed $checkpoint"
  fi
  echo "$(date -u +%FT%TZ) resnet$depth starts (log: $dir.log)"
  python -m keras_resnet.trainers.train --model=resnet$depth --dataset=cifar10 --data_dir="$data" \
      --mixed_precision=mixed_bfloat16 --weight_decay=5e-4 --label_smoothing=0.1 \
      --ema_decay=0.999 --seed="$seed" --model_dir="$dir" >> "$dir.log" 2>&1
  echo "$(date -u +%FT%TZ) resnet$depth done"
done
